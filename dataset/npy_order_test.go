package dataset

import (
	"encoding/binary"
	"math"
	"path/filepath"
	"slices"
	"testing"
)

// TestNPYFloat32ByteOrders reads the same float32 images stored little-
// and big-endian (one of them the machine's order, read in place, the
// other converted) and checks that both give the stored values exactly,
// negative zero, a NaN payload and subnormals included.
func TestNPYFloat32ByteOrders(t *testing.T) {
	want := []float32{1, -2.5, float32(math.Copysign(0, -1)), math.Float32frombits(0x7fc00123), 1e-42, math.MaxFloat32, 3, 4}
	dir := t.TempDir()
	for _, c := range []struct {
		descr string
		order binary.ByteOrder
	}{{"<f4", binary.LittleEndian}, {">f4", binary.BigEndian}} {
		data := make([]byte, 4*len(want))
		for i, f := range want {
			c.order.PutUint32(data[4*i:], math.Float32bits(f))
		}
		path := writeFile(t, filepath.Join(dir, c.descr[:1]+".npy"), npyBytes(c.descr, []int{2, 1, 2, 2}, data))
		src, err := Open(path, OpenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var s Sample
		for i := range 2 {
			if err := src.ReadSample(i, &s); err != nil {
				t.Fatal(err)
			}
			got := make([]uint32, len(s.Pix))
			exp := make([]uint32, len(s.Pix))
			for k := range s.Pix {
				got[k], exp[k] = math.Float32bits(s.Pix[k]), math.Float32bits(want[4*i+k])
			}
			if !slices.Equal(got, exp) {
				t.Errorf("%s image %d: bits %x, want %x", c.descr, i, got, exp)
			}
		}
		src.Close()
	}
}
