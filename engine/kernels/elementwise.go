package kernels

import "math"

// Relu writes max(x, 0) into dst (len(dst) >= len(x)); NaN stays NaN.
func Relu(dst, x []float32) {
	if len(x) == 0 {
		return
	}
	dst = dst[:len(x)]
	if &dst[0] != &x[0] {
		copy(dst, x)
	}
	ReluInPlace(dst)
}

// ReluInPlace replaces every x[i] with max(x[i], 0); NaN stays NaN.
func ReluInPlace(x []float32) {
	ClipInPlace(x, 0, float32(math.Inf(1)))
}

// ClipInPlace clamps every x[i] to [lo, hi] (Relu6 is lo=0, hi=6); NaN
// stays NaN.
func ClipInPlace(x []float32, lo, hi float32) {
	for len(x) > 0 {
		n := min(len(x), 1<<20)
		biasActTile(x, n, 1, n, nil, nil, lo, hi)
		x = x[n:]
	}
}

// ApplyEpilogue applies ep in place to n NCHW images of c channels and hw
// pixels held in x: RowBias has one value per channel, ColBias one per
// pixel (see Epilogue).
func ApplyEpilogue(x []float32, n, c, hw int, ep Epilogue) {
	if !ep.active() || n == 0 || c == 0 || hw == 0 {
		return
	}
	ep.check(c, hw)
	_ = x[n*c*hw-1]
	for img := 0; img < n; img++ {
		ep.applyTile(x[img*c*hw:], hw, c, hw, 0, 0)
	}
}

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
	ApplyEpilogue(x, n, c, hw, Epilogue{RowBias: bias[:c]})
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
