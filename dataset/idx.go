package dataset

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"os"

	"github.com/lprconv/lprconv/internal/checked"
	"github.com/lprconv/lprconv/internal/inputfile"
)

// maxIDXBytes bounds the decompressed size of a gzip IDX images file.
const maxIDXBytes = 1 << 32

// IDX is a Source over an IDX images file (unsigned bytes, N x rows x cols)
// with an optional IDX labels file. Raw files are read on demand with ReadAt;
// gzip files are decompressed once into a byte buffer (47 MB for MNIST).
type IDX struct {
	path       string
	n, h, w    int
	ra         io.ReaderAt // raw file or in-memory bytes
	file       *os.File    // nil for gzip files
	dataOffset int64
	labels     []uint8 // nil when unlabelled
}

// idxHeader is the parsed header of an IDX file of unsigned bytes.
type idxHeader struct {
	dims []int
}

// readIDXHeader reads the magic number and dimensions from r.
func readIDXHeader(r io.Reader, path string) (idxHeader, error) {
	var magic [4]byte
	if _, err := io.ReadFull(r, magic[:]); err != nil {
		return idxHeader{}, fmt.Errorf("read IDX header of %s: %w", path, err)
	}
	if magic[0] != 0 || magic[1] != 0 {
		return idxHeader{}, fmt.Errorf("read IDX header of %s: bad magic % x (want 00 00 08 nd)", path, magic)
	}
	if magic[2] != 0x08 {
		return idxHeader{}, fmt.Errorf("read IDX header of %s: element type 0x%02x is not unsigned byte (0x08)", path, magic[2])
	}
	nd := int(magic[3])
	if nd < 1 || nd > 4 {
		return idxHeader{}, fmt.Errorf("read IDX header of %s: %d dimensions (want 1 to 4)", path, nd)
	}
	dims := make([]int, nd)
	for i := range dims {
		var d uint32
		if err := binary.Read(r, binary.BigEndian, &d); err != nil {
			return idxHeader{}, fmt.Errorf("read IDX header of %s: %w", path, err)
		}
		if d > 1<<30 {
			return idxHeader{}, fmt.Errorf("read IDX header of %s: dimension %d is %d, too large", path, i, d)
		}
		dims[i] = int(d)
	}
	return idxHeader{dims: dims}, nil
}

func isGzip(path string) (bool, error) {
	f, err := inputfile.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	var b [2]byte
	n, _ := io.ReadFull(f, b[:])
	return n == 2 && b[0] == 0x1f && b[1] == 0x8b, nil
}

// OpenIDX opens an IDX images file (3 dimensions: N, rows, cols) and, when
// labelsPath is not empty, its IDX labels file (1 dimension: N).
func OpenIDX(imagesPath, labelsPath string) (*IDX, error) {
	gz, err := isGzip(imagesPath)
	if err != nil {
		return nil, fmt.Errorf("open IDX images: %w", err)
	}
	d := &IDX{path: imagesPath}
	if gz {
		data, err := readGzip(imagesPath)
		if err != nil {
			return nil, err
		}
		br := bytes.NewReader(data)
		hdr, err := readIDXHeader(br, imagesPath)
		if err != nil {
			return nil, err
		}
		if err := d.setShape(hdr); err != nil {
			return nil, err
		}
		d.dataOffset = int64(len(data) - br.Len())
		if want := d.dataOffset + int64(d.n)*int64(d.h)*int64(d.w); int64(len(data)) < want { // bounded by setShape
			return nil, fmt.Errorf("read IDX %s: %d bytes after decompression, header needs %d; the file is truncated", imagesPath, len(data), want)
		}
		d.ra = br
	} else {
		f, err := inputfile.Open(imagesPath)
		if err != nil {
			return nil, fmt.Errorf("open IDX images: %w", err)
		}
		hdr, err := readIDXHeader(f, imagesPath)
		if err != nil {
			f.Close()
			return nil, err
		}
		if err := d.setShape(hdr); err != nil {
			f.Close()
			return nil, err
		}
		d.dataOffset = int64(4 + 4*len(hdr.dims))
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("stat %s: %w", imagesPath, err)
		}
		if want := d.dataOffset + int64(d.n)*int64(d.h*d.w); fi.Size() < want {
			f.Close()
			return nil, fmt.Errorf("read IDX %s: file has %d bytes, header needs %d; the file is truncated", imagesPath, fi.Size(), want)
		}
		d.ra, d.file = f, f
	}
	if labelsPath != "" {
		labels, err := readIDXLabels(labelsPath)
		if err != nil {
			d.Close()
			return nil, err
		}
		if len(labels) != d.n {
			d.Close()
			return nil, fmt.Errorf("IDX labels %s hold %d labels but %s holds %d images", labelsPath, len(labels), imagesPath, d.n)
		}
		d.labels = labels
	}
	return d, nil
}

func (d *IDX) setShape(h idxHeader) error {
	if len(h.dims) != 3 {
		return fmt.Errorf("read IDX %s: %d dimensions, images need 3 (N, rows, cols)", d.path, len(h.dims))
	}
	d.n, d.h, d.w = h.dims[0], h.dims[1], h.dims[2]
	plane, ok := checked.ProductInts(d.h, d.w)
	if !ok || plane == 0 || plane > maxImagePixels {
		return fmt.Errorf("read IDX %s: image size %dx%d is empty or too large", d.path, d.h, d.w)
	}
	if total, ok := checked.Mul(int64(d.n), plane); !ok || total > maxIDXBytes {
		return fmt.Errorf("read IDX %s: %d images of %dx%d are too large (over %d bytes)", d.path, d.n, d.h, d.w, int64(maxIDXBytes))
	}
	return nil
}

// readGzip decompresses a whole gzip file, refusing more than maxIDXBytes.
func readGzip(path string) ([]byte, error) {
	f, err := inputfile.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open IDX: %w", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("read IDX %s: %w", path, err)
	}
	defer zr.Close()
	// Read the header first so that the buffer is sized once.
	var buf bytes.Buffer
	hdr, err := readIDXHeader(io.TeeReader(zr, &buf), path)
	if err != nil {
		return nil, err
	}
	size, ok := checked.ProductInts(hdr.dims...)
	if !ok || size > maxIDXBytes {
		return nil, fmt.Errorf("read IDX %s: header dimensions %v are too large (over %d bytes)", path, hdr.dims, int64(maxIDXBytes))
	}
	// Grow the buffer as data arrives, so that a header that promises more
	// than the file holds cannot cause a large allocation.
	buf.Grow(int(min(size, 256<<20)))
	n, err := io.Copy(&buf, io.LimitReader(zr, size))
	if err != nil {
		return nil, fmt.Errorf("read IDX %s: %w", path, err)
	}
	if n < size {
		return nil, fmt.Errorf("read IDX %s: %d data bytes after decompression, header %v needs %d; the file is truncated", path, n, hdr.dims, size)
	}
	return buf.Bytes(), nil
}

// readIDXLabels reads a whole IDX labels file (1 dimension of unsigned bytes).
func readIDXLabels(path string) ([]uint8, error) {
	gz, err := isGzip(path)
	if err != nil {
		return nil, fmt.Errorf("open IDX labels: %w", err)
	}
	var data []byte
	if gz {
		data, err = readGzip(path)
		if err != nil {
			return nil, err
		}
	} else {
		data, err = inputfile.ReadFile(path, maxIDXBytes)
		if err != nil {
			return nil, fmt.Errorf("open IDX labels: %w", err)
		}
	}
	br := bytes.NewReader(data)
	hdr, err := readIDXHeader(br, path)
	if err != nil {
		return nil, err
	}
	if len(hdr.dims) != 1 {
		return nil, fmt.Errorf("read IDX labels %s: %d dimensions, labels need 1", path, len(hdr.dims))
	}
	off := len(data) - br.Len()
	if len(data)-off < hdr.dims[0] {
		return nil, fmt.Errorf("read IDX labels %s: header says %d labels, file holds %d; the file is truncated", path, hdr.dims[0], len(data)-off)
	}
	return data[off : off+hdr.dims[0] : off+hdr.dims[0]], nil
}

// Len returns the number of images.
func (d *IDX) Len() int { return d.n }

// Classes returns "0".."9"-style names up to the largest label, or nil when
// unlabelled (IDX files carry no class names).
func (d *IDX) Classes() []string {
	if d.labels == nil {
		return nil
	}
	m := -1
	for _, l := range d.labels {
		m = max(m, int(l))
	}
	out := make([]string, m+1)
	for i := range out {
		out[i] = fmt.Sprint(i)
	}
	return out
}

// Sample reads image i.
func (d *IDX) Sample(i int) (Sample, error) {
	var s Sample
	err := d.ReadSample(i, &s)
	return s, err
}

// ReadSample reads image i into dst (1 channel, scaled to [0,1]).
func (d *IDX) ReadSample(i int, dst *Sample) error {
	if i < 0 || i >= d.n {
		return fmt.Errorf("IDX %s: sample %d out of range [0,%d)", d.path, i, d.n)
	}
	plane := d.h * d.w
	dst.Channels, dst.Height, dst.Width = 1, d.h, d.w
	dst.Pix = grow(dst.Pix, plane)
	if err := readBytesScaled(d.ra, d.dataOffset+int64(i)*int64(plane), dst); err != nil {
		return fmt.Errorf("read IDX %s sample %d: %w", d.path, i, err)
	}
	dst.Label = -1
	if d.labels != nil {
		dst.Label = int(d.labels[i])
	}
	dst.Path = d.path
	return nil
}

// readBytesScaled reads len(dst.Pix) bytes at off and stores them in
// dst.Pix divided by 255.
func readBytesScaled(ra io.ReaderAt, off int64, dst *Sample) error {
	dst.raw = growBytes(dst.raw, len(dst.Pix))
	got, err := ra.ReadAt(dst.raw, off)
	if got < len(dst.raw) {
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	for k, v := range dst.raw {
		dst.Pix[k] = float32(v) / 255
	}
	return nil
}

// Close closes the images file.
func (d *IDX) Close() error {
	if d.file != nil {
		err := d.file.Close()
		d.file = nil
		return err
	}
	return nil
}
