package dataset

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"github.com/lprconv/lprconv/internal/checked"
	"github.com/lprconv/lprconv/internal/inputfile"
)

const npyMagic = "\x93NUMPY"

// maxNPYHeader bounds the NPY header length that is read.
const maxNPYHeader = 1 << 20

// npyHeader is the parsed header of an NPY file.
type npyHeader struct {
	descr      string // e.g. "<f4", "|u1"
	fortran    bool
	shape      []int
	dataOffset int64
}

// readNPYHeader reads and parses the header of an NPY file (versions 1-3).
func readNPYHeader(r io.Reader, path string) (npyHeader, error) {
	var pre [8]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return npyHeader{}, fmt.Errorf("read NPY header of %s: %w", path, err)
	}
	if string(pre[:6]) != npyMagic {
		return npyHeader{}, fmt.Errorf("read NPY header of %s: missing \\x93NUMPY magic; not an NPY file", path)
	}
	var hlen int
	var off int64
	switch pre[6] {
	case 1:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return npyHeader{}, fmt.Errorf("read NPY header of %s: %w", path, err)
		}
		hlen, off = int(binary.LittleEndian.Uint16(b[:])), 10
	case 2, 3:
		var b [4]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return npyHeader{}, fmt.Errorf("read NPY header of %s: %w", path, err)
		}
		v := binary.LittleEndian.Uint32(b[:])
		if v > maxNPYHeader {
			return npyHeader{}, fmt.Errorf("read NPY header of %s: header length %d is too large", path, v)
		}
		hlen, off = int(v), 12
	default:
		return npyHeader{}, fmt.Errorf("read NPY header of %s: unsupported format version %d.%d", path, pre[6], pre[7])
	}
	buf := make([]byte, hlen)
	if _, err := io.ReadFull(r, buf); err != nil {
		return npyHeader{}, fmt.Errorf("read NPY header of %s: %w", path, err)
	}
	h, err := parseNPYDict(string(buf))
	if err != nil {
		return npyHeader{}, fmt.Errorf("read NPY header of %s: %w", path, err)
	}
	h.dataOffset = off + int64(hlen)
	return h, nil
}

// parseNPYDict parses the Python dict literal of an NPY header.
func parseNPYDict(s string) (npyHeader, error) {
	var h npyHeader
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "{") || !strings.HasSuffix(s, "}") {
		return h, fmt.Errorf("header %q is not a dict", s)
	}
	descr, err := dictValue(s, "descr")
	if err != nil {
		return h, err
	}
	if len(descr) < 2 || (descr[0] != '\'' && descr[0] != '"') || descr[len(descr)-1] != descr[0] {
		return h, fmt.Errorf("descr %s is not a simple type string (structured arrays are not supported)", descr)
	}
	h.descr = descr[1 : len(descr)-1]
	fo, err := dictValue(s, "fortran_order")
	if err != nil {
		return h, err
	}
	switch fo {
	case "False":
	case "True":
		h.fortran = true
	default:
		return h, fmt.Errorf("fortran_order %q is not True or False", fo)
	}
	shape, err := dictValue(s, "shape")
	if err != nil {
		return h, err
	}
	if !strings.HasPrefix(shape, "(") || !strings.HasSuffix(shape, ")") {
		return h, fmt.Errorf("shape %q is not a tuple", shape)
	}
	for _, part := range strings.Split(shape[1:len(shape)-1], ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSuffix(part, "L"))
		if err != nil || n < 0 {
			return h, fmt.Errorf("shape %s has a bad dimension %q", shape, part)
		}
		h.shape = append(h.shape, n)
	}
	return h, nil
}

// dictValue returns the literal value of key in a flat Python dict literal
// whose values are strings, booleans or tuples.
func dictValue(s, key string) (string, error) {
	i := -1
	for _, q := range []string{"'", "\""} {
		if j := strings.Index(s, q+key+q); j >= 0 {
			i = j + len(key) + 2
			break
		}
	}
	if i < 0 {
		return "", fmt.Errorf("header has no %q key", key)
	}
	rest := strings.TrimSpace(s[i:])
	if !strings.HasPrefix(rest, ":") {
		return "", fmt.Errorf("header key %q has no value", key)
	}
	rest = strings.TrimSpace(rest[1:])
	if rest == "" {
		return "", fmt.Errorf("header key %q has no value", key)
	}
	var end int
	switch rest[0] {
	case '\'', '"':
		end = strings.IndexByte(rest[1:], rest[0]) + 2
		if end < 2 {
			return "", fmt.Errorf("header key %q has an unterminated string", key)
		}
	case '(':
		end = strings.IndexByte(rest, ')') + 1
		if end < 1 {
			return "", fmt.Errorf("header key %q has an unterminated tuple", key)
		}
	default:
		end = strings.IndexAny(rest, ",}")
		if end < 0 {
			end = len(rest)
		}
	}
	return strings.TrimSpace(rest[:end]), nil
}

// NPY is a Source over an NPY array of images, float32 or uint8, with shape
// (N,C,H,W) or (N,H,W). Samples are read on demand with ReadAt.
type NPY struct {
	path    string
	file    *os.File
	h       npyHeader
	n       int
	c, y, x int
	elem    int // bytes per element
	order   binary.ByteOrder
	isU8    bool
	labels  []int // nil when unlabelled
	classes []string
}

// OpenNPY opens an NPY images file and, when labelsPath is not empty, its
// labels (NPY integer array, or text with one integer per line).
func OpenNPY(path, labelsPath string) (*NPY, error) {
	f, err := inputfile.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open NPY: %w", err)
	}
	d, err := newNPY(f, path)
	if err != nil {
		f.Close()
		return nil, err
	}
	if labelsPath != "" {
		labels, err := readLabels(labelsPath)
		if err != nil {
			f.Close()
			return nil, err
		}
		if len(labels) != d.n {
			f.Close()
			return nil, fmt.Errorf("labels file %s holds %d labels but %s holds %d images", labelsPath, len(labels), path, d.n)
		}
		m := -1
		for i, l := range labels {
			if l < 0 || l > 1<<24 {
				f.Close()
				return nil, fmt.Errorf("labels file %s: label %d of sample %d is out of range", labelsPath, l, i)
			}
			m = max(m, l)
		}
		d.labels = labels
		d.classes = make([]string, m+1)
		for i := range d.classes {
			d.classes[i] = strconv.Itoa(i)
		}
	}
	return d, nil
}

func newNPY(f *os.File, path string) (*NPY, error) {
	h, err := readNPYHeader(bufio.NewReader(f), path)
	if err != nil {
		return nil, err
	}
	d := &NPY{path: path, file: f, h: h}
	if h.fortran {
		return nil, fmt.Errorf("read NPY %s: Fortran-ordered arrays are not supported; save with numpy.ascontiguousarray", path)
	}
	switch h.descr {
	case "<f4", "=f4":
		d.elem, d.order = 4, binary.LittleEndian
	case ">f4":
		d.elem, d.order = 4, binary.BigEndian
	case "|u1", "<u1", ">u1", "=u1":
		d.elem, d.isU8 = 1, true
	default:
		return nil, fmt.Errorf("read NPY %s: element type %q not supported (want float32 '<f4' or uint8 '|u1')", path, h.descr)
	}
	switch len(h.shape) {
	case 3:
		d.n, d.c, d.y, d.x = h.shape[0], 1, h.shape[1], h.shape[2]
	case 4:
		d.n, d.c, d.y, d.x = h.shape[0], h.shape[1], h.shape[2], h.shape[3]
	default:
		return nil, fmt.Errorf("read NPY %s: shape %v, want (N,C,H,W) or (N,H,W)", path, h.shape)
	}
	pixels, ok := checked.ProductInts(d.c, d.y, d.x)
	if !ok || pixels == 0 || pixels > maxImagePixels {
		return nil, fmt.Errorf("read NPY %s: image shape %dx%dx%d is empty or too large (at most %d values per image)", path, d.c, d.y, d.x, maxImagePixels)
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	per := pixels * int64(d.elem)
	body, ok := checked.Mul(int64(d.n), per)
	if !ok || body > math.MaxInt64-h.dataOffset {
		return nil, fmt.Errorf("read NPY %s: shape %v overflows a 64-bit size", path, h.shape)
	}
	if want := h.dataOffset + body; fi.Size() < want {
		return nil, fmt.Errorf("read NPY %s: file has %d bytes, shape %v needs %d; the file is truncated", path, fi.Size(), h.shape, want)
	}
	return d, nil
}

// readLabels reads integer labels from an NPY file or a text file.
func readLabels(path string) ([]int, error) {
	f, err := inputfile.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open labels: %w", err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	if head, _ := br.Peek(6); string(head) == npyMagic {
		return readNPYLabels(br, f, path)
	}
	var out []int
	sc := bufio.NewScanner(br)
	line := 0
	for sc.Scan() {
		line++
		t := strings.TrimSpace(sc.Text())
		if t == "" {
			continue
		}
		v, err := strconv.Atoi(t)
		if err != nil {
			return nil, fmt.Errorf("labels file %s line %d: %q is not an integer", path, line, t)
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read labels %s: %w", path, err)
	}
	return out, nil
}

func readNPYLabels(r io.Reader, f *os.File, path string) ([]int, error) {
	h, err := readNPYHeader(r, path)
	if err != nil {
		return nil, err
	}
	if len(h.shape) != 1 && !(len(h.shape) == 2 && h.shape[1] == 1) {
		return nil, fmt.Errorf("read NPY labels %s: shape %v, want (N,)", path, h.shape)
	}
	n := h.shape[0]
	var size int
	var order binary.ByteOrder = binary.LittleEndian
	if strings.HasPrefix(h.descr, ">") {
		order = binary.BigEndian
	}
	switch strings.TrimLeft(h.descr, "<>=|") {
	case "i8", "u8":
		size = 8
	case "i4", "u4":
		size = 4
	case "i2", "u2":
		size = 2
	case "i1", "u1":
		size = 1
	default:
		return nil, fmt.Errorf("read NPY labels %s: element type %q is not an integer type (want int64 or int32)", path, h.descr)
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	body, ok := checked.Mul(int64(n), int64(size))
	if !ok || body > math.MaxInt64-h.dataOffset {
		return nil, fmt.Errorf("read NPY labels %s: shape %v overflows a 64-bit size", path, h.shape)
	}
	if want := h.dataOffset + body; fi.Size() < want {
		return nil, fmt.Errorf("read NPY labels %s: file has %d bytes, shape %v needs %d; the file is truncated", path, fi.Size(), h.shape, want)
	}
	raw := make([]byte, n*size)
	if _, err := io.ReadFull(r, raw); err != nil {
		return nil, fmt.Errorf("read NPY labels %s: %w", path, err)
	}
	signed := strings.Contains(h.descr, "i")
	out := make([]int, n)
	for i := range out {
		b := raw[i*size : (i+1)*size]
		switch size {
		case 8:
			out[i] = int(int64(order.Uint64(b)))
		case 4:
			if signed {
				out[i] = int(int32(order.Uint32(b)))
			} else {
				out[i] = int(order.Uint32(b))
			}
		case 2:
			if signed {
				out[i] = int(int16(order.Uint16(b)))
			} else {
				out[i] = int(order.Uint16(b))
			}
		case 1:
			if signed {
				out[i] = int(int8(b[0]))
			} else {
				out[i] = int(b[0])
			}
		}
	}
	return out, nil
}

// Len returns the number of images.
func (d *NPY) Len() int { return d.n }

// Classes returns "0","1",... up to the largest label, or nil when unlabelled.
func (d *NPY) Classes() []string { return d.classes }

// Sample reads image i.
func (d *NPY) Sample(i int) (Sample, error) {
	var s Sample
	err := d.ReadSample(i, &s)
	return s, err
}

// ReadSample reads image i into dst. uint8 data is scaled to [0,1]; float32
// data is passed through unchanged.
func (d *NPY) ReadSample(i int, dst *Sample) error {
	if i < 0 || i >= d.n {
		return fmt.Errorf("NPY %s: sample %d out of range [0,%d)", d.path, i, d.n)
	}
	count := d.c * d.y * d.x
	dst.Channels, dst.Height, dst.Width = d.c, d.y, d.x
	dst.Pix = grow(dst.Pix, count)
	off := d.h.dataOffset + int64(i)*int64(count)*int64(d.elem)
	var err error
	if d.isU8 {
		err = readBytesScaled(d.file, off, dst)
	} else {
		err = readFloat32s(d.file, off, d.order, dst)
	}
	if err != nil {
		return fmt.Errorf("read NPY %s sample %d: %w", d.path, i, err)
	}
	dst.Label = -1
	if d.labels != nil {
		dst.Label = d.labels[i]
	}
	dst.Path = d.path
	return nil
}

// readFloat32s reads len(dst.Pix) float32 values at off into dst.Pix.
// When the file's byte order is the machine's, the bytes are read straight
// into dst.Pix (a float32 is its bits in memory), with no copy and no
// conversion: training streams every sample of an epoch through here, on
// a core that the model's workers would otherwise use.
func readFloat32s(ra io.ReaderAt, off int64, order binary.ByteOrder, dst *Sample) error {
	if len(dst.Pix) > 0 && order == nativeOrder() {
		buf := unsafe.Slice((*byte)(unsafe.Pointer(&dst.Pix[0])), 4*len(dst.Pix))
		got, err := ra.ReadAt(buf, off)
		if got < len(buf) {
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		return nil
	}
	dst.raw = growBytes(dst.raw, 4*len(dst.Pix))
	got, err := ra.ReadAt(dst.raw, off)
	if got < len(dst.raw) {
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	for k := range dst.Pix {
		dst.Pix[k] = math.Float32frombits(order.Uint32(dst.raw[4*k:]))
	}
	return nil
}

// nativeOrder returns binary.LittleEndian or binary.BigEndian, whichever
// the machine stores numbers in.
func nativeOrder() binary.ByteOrder {
	if binary.NativeEndian.Uint16([]byte{1, 0}) == 1 {
		return binary.LittleEndian
	}
	return binary.BigEndian
}

// Close closes the file.
func (d *NPY) Close() error {
	if d.file != nil {
		err := d.file.Close()
		d.file = nil
		return err
	}
	return nil
}
