package kernels

// Relu writes max(x, 0) into dst (len(dst) >= len(x)).
func Relu(dst, x []float32) {
	dst = dst[:len(x)]
	for i, v := range x {
		dst[i] = max(v, 0)
	}
}

// ReluInPlace replaces every x[i] with max(x[i], 0).
func ReluInPlace(x []float32) { Relu(x, x) }

// ReluBackward writes dy where x > 0 and 0 elsewhere into dx, where x is
// the Relu input (or output: both have the same sign pattern for x > 0).
func ReluBackward(dx, dy, x []float32) {
	dx = dx[:len(x)]
	dy = dy[:len(x)]
	for i, v := range x {
		if v > 0 {
			dx[i] = dy[i]
		} else {
			dx[i] = 0
		}
	}
}

// AddInPlace adds x into dst element-wise (len(dst) >= len(x)).
func AddInPlace(dst, x []float32) { vecAxpy(1, x, dst) }

// Axpy computes y += alpha*x (len(y) >= len(x)).
func Axpy(alpha float32, x, y []float32) { vecAxpy(alpha, x, y) }

// Dot returns the dot product of x and y[:len(x)].
func Dot(x, y []float32) float32 { return vecDot(x, y) }

// AddChannelBias adds bias[c] to every value of channel c of n NCHW images
// of hw pixels each held in x.
func AddChannelBias(x []float32, n, c, hw int, bias []float32) {
	bias = bias[:c]
	for img := 0; img < n; img++ {
		for ch, b := range bias {
			row := x[(img*c+ch)*hw : (img*c+ch+1)*hw]
			for i := range row {
				row[i] += b
			}
		}
	}
}

// SumChannels overwrites dbias[c] with the sum of channel c over n NCHW
// images of hw pixels each held in dy (the bias gradient of a convolution).
func SumChannels(dbias []float32, dy []float32, n, c, hw int) {
	dbias = dbias[:c]
	clear(dbias)
	for img := 0; img < n; img++ {
		for ch := range dbias {
			var s float32
			for _, v := range dy[(img*c+ch)*hw : (img*c+ch+1)*hw] {
				s += v
			}
			dbias[ch] += s
		}
	}
}
