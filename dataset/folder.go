package dataset

import (
	"bufio"
	"fmt"
	"image"
	"image/color"
	_ "image/jpeg" // register the JPEG decoder
	_ "image/png"  // register the PNG decoder
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/lprconv/lprconv/internal/checked"
	"github.com/lprconv/lprconv/internal/inputfile"
)

// maxImagePixels bounds the pixels of one image (8192x8192) and the values
// of one preprocessed sample, so that a hostile header cannot make the
// decoder allocate without bound.
const maxImagePixels = 1 << 26

// Folder is a Source over PNG and JPEG files in a directory, read lazily.
type Folder struct {
	root    string
	files   []string
	labels  []int
	classes []string
}

// OpenFolder lists the images under root. When root has sub-folders, each
// one is a class and its images (searched recursively) carry its label:
// the leading integer of "<index>_<name>" folder names when every folder has
// one, otherwise the position of the folder in sorted order. Images directly
// in root, when there are no class folders, are unlabelled (label -1).
func OpenFolder(root string) (*Folder, error) {
	fi, err := inputfile.Check(root, true)
	if err != nil {
		return nil, fmt.Errorf("open image folder: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("open image folder: %s is a file, not a folder", root)
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("open image folder: %w", err)
	}
	var dirs, direct []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		isDir := e.IsDir()
		if e.Type()&fs.ModeSymlink != 0 {
			if fi, err := os.Stat(filepath.Join(root, name)); err == nil {
				isDir = fi.IsDir()
			}
		}
		if isDir {
			dirs = append(dirs, name)
		} else if isImageName(name) {
			direct = append(direct, name)
		}
	}
	f := &Folder{root: root}
	if len(dirs) == 0 {
		if len(direct) == 0 {
			return nil, fmt.Errorf("open image folder %s: no PNG or JPEG files and no class sub-folders", root)
		}
		sort.Strings(direct)
		for _, name := range direct {
			f.files = append(f.files, filepath.Join(root, name))
			f.labels = append(f.labels, -1)
		}
		return f, nil
	}
	sort.Strings(dirs)
	labels, classes, err := classLabels(root, dirs)
	if err != nil {
		return nil, err
	}
	f.classes = classes
	for i, d := range dirs {
		files, err := listImages(filepath.Join(root, d))
		if err != nil {
			return nil, err
		}
		for _, p := range files {
			f.files = append(f.files, p)
			f.labels = append(f.labels, labels[i])
		}
	}
	if len(f.files) == 0 {
		return nil, fmt.Errorf("open image folder %s: class folders hold no PNG or JPEG files", root)
	}
	return f, nil
}

// classLabels assigns labels to the sorted class folder names.
func classLabels(root string, dirs []string) ([]int, []string, error) {
	labels := make([]int, len(dirs))
	names := make([]string, len(dirs))
	indexed := true
	maxLabel := -1
	for i, d := range dirs {
		prefix, rest, ok := strings.Cut(d, "_")
		n, err := strconv.Atoi(prefix)
		if !ok || err != nil || !allDigits(prefix) {
			indexed = false
			break
		}
		labels[i], names[i] = n, rest
		maxLabel = max(maxLabel, n)
	}
	if indexed && maxLabel >= 4*len(dirs)+1024 {
		return nil, nil, fmt.Errorf("open image folder %s: class index %d is far above the %d class folders; renumber the folders from 0", root, maxLabel, len(dirs))
	}
	if !indexed {
		for i, d := range dirs {
			labels[i], names[i] = i, d
		}
		return labels, names, nil
	}
	classes := make([]string, maxLabel+1)
	seen := make(map[int]string, len(dirs))
	for i, d := range dirs {
		if prev, dup := seen[labels[i]]; dup {
			return nil, nil, fmt.Errorf("open image folder %s: folders %q and %q both have class index %d", root, prev, d, labels[i])
		}
		seen[labels[i]] = d
		classes[labels[i]] = names[i]
	}
	return labels, classes, nil
}

// listImages returns the image files under dir, recursively, in sorted order.
func listImages(dir string) ([]string, error) {
	var out []string
	// The trailing separator makes a symbolic link to a folder be followed.
	start := dir + string(filepath.Separator)
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".") && p != start {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.IsDir() && isImageName(d.Name()) {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list images in %s: %w", dir, err)
	}
	return out, nil
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func isImageName(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".png", ".jpg", ".jpeg":
		return true
	}
	return false
}

// Len returns the number of images.
func (f *Folder) Len() int { return len(f.files) }

// Classes returns the class names indexed by label; nil when unlabelled.
// With indexed folder names ("3_cat") the name is the part after the index.
func (f *Folder) Classes() []string { return f.classes }

// Path returns the file of sample i.
func (f *Folder) Path(i int) string { return f.files[i] }

// Label returns the label of sample i without reading the image.
func (f *Folder) Label(i int) int { return f.labels[i] }

// Sample reads and decodes image i.
func (f *Folder) Sample(i int) (Sample, error) {
	var s Sample
	err := f.ReadSample(i, &s)
	return s, err
}

// ReadSample reads and decodes image i into dst.
func (f *Folder) ReadSample(i int, dst *Sample) error {
	if i < 0 || i >= len(f.files) {
		return fmt.Errorf("image folder %s: sample %d out of range [0,%d)", f.root, i, len(f.files))
	}
	path := f.files[i]
	if err := decodeImageFile(path, dst); err != nil {
		return err
	}
	dst.Label = f.labels[i]
	dst.Path = path
	return nil
}

// Close does nothing: files are opened per sample.
func (f *Folder) Close() error { return nil }

// decodeImageFile decodes a PNG or JPEG file into dst (1 channel for gray
// images, 3 for colour ones; alpha is dropped), scaled to [0,1].
func decodeImageFile(path string, dst *Sample) error {
	fh, err := inputfile.Open(path)
	if err != nil {
		return fmt.Errorf("read image: %w", err)
	}
	defer fh.Close()
	r := bufio.NewReader(fh)
	cfg, _, err := image.DecodeConfig(r)
	if err != nil {
		return fmt.Errorf("decode image %s: %w", path, err)
	}
	if px, ok := checked.ProductInts(cfg.Width, cfg.Height); !ok || px == 0 || px > maxImagePixels {
		return fmt.Errorf("decode image %s: size %dx%d is empty or too large", path, cfg.Width, cfg.Height)
	}
	if _, err := fh.Seek(0, 0); err != nil {
		return fmt.Errorf("read image %s: %w", path, err)
	}
	r.Reset(fh)
	img, _, err := image.Decode(r)
	if err != nil {
		return fmt.Errorf("decode image %s: %w", path, err)
	}
	imageToSample(img, dst)
	return nil
}

// imageToSample converts a decoded image into planar float32 in [0,1].
func imageToSample(img image.Image, dst *Sample) {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	plane := w * h
	dst.Width, dst.Height = w, h
	switch m := img.(type) {
	case *image.Gray:
		dst.Channels = 1
		dst.Pix = grow(dst.Pix, plane)
		for y := 0; y < h; y++ {
			row := m.Pix[y*m.Stride : y*m.Stride+w]
			out := dst.Pix[y*w : y*w+w]
			for x, v := range row {
				out[x] = float32(v) / 255
			}
		}
	case *image.Gray16:
		dst.Channels = 1
		dst.Pix = grow(dst.Pix, plane)
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				o := y*m.Stride + 2*x
				dst.Pix[y*w+x] = float32(uint16(m.Pix[o])<<8|uint16(m.Pix[o+1])) / 65535
			}
		}
	case *image.YCbCr:
		dst.Channels = 3
		dst.Pix = grow(dst.Pix, 3*plane)
		r, g, bl := dst.Pix[:plane], dst.Pix[plane:2*plane], dst.Pix[2*plane:]
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				yi := m.YOffset(b.Min.X+x, b.Min.Y+y)
				ci := m.COffset(b.Min.X+x, b.Min.Y+y)
				cr, cg, cb := color.YCbCrToRGB(m.Y[yi], m.Cb[ci], m.Cr[ci])
				k := y*w + x
				r[k], g[k], bl[k] = float32(cr)/255, float32(cg)/255, float32(cb)/255
			}
		}
	case *image.RGBA:
		rgba8(m.Pix, m.Stride, w, h, dst)
	case *image.NRGBA:
		rgba8(m.Pix, m.Stride, w, h, dst)
	case *image.Paletted:
		dst.Channels = 3
		dst.Pix = grow(dst.Pix, 3*plane)
		var lut [256][3]float32
		for i, c := range m.Palette {
			n := color.NRGBAModel.Convert(c).(color.NRGBA)
			lut[i] = [3]float32{float32(n.R) / 255, float32(n.G) / 255, float32(n.B) / 255}
		}
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				e := lut[m.Pix[y*m.Stride+x]]
				k := y*w + x
				dst.Pix[k], dst.Pix[plane+k], dst.Pix[2*plane+k] = e[0], e[1], e[2]
			}
		}
	default:
		dst.Channels = 3
		dst.Pix = grow(dst.Pix, 3*plane)
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				c := color.NRGBA64Model.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA64)
				k := y*w + x
				dst.Pix[k] = float32(c.R) / 65535
				dst.Pix[plane+k] = float32(c.G) / 65535
				dst.Pix[2*plane+k] = float32(c.B) / 65535
			}
		}
	}
}

// rgba8 copies the colour channels of 8-bit RGBA rows (the alpha is dropped;
// decoders give opaque images as RGBA and translucent ones as NRGBA).
func rgba8(pix []uint8, stride, w, h int, dst *Sample) {
	plane := w * h
	dst.Channels = 3
	dst.Pix = grow(dst.Pix, 3*plane)
	r, g, b := dst.Pix[:plane], dst.Pix[plane:2*plane], dst.Pix[2*plane:]
	for y := 0; y < h; y++ {
		row := pix[y*stride : y*stride+4*w]
		for x := 0; x < w; x++ {
			k := y*w + x
			r[k] = float32(row[4*x]) / 255
			g[k] = float32(row[4*x+1]) / 255
			b[k] = float32(row[4*x+2]) / 255
		}
	}
}
