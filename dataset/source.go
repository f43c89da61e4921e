package dataset

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/lprconv/lprconv/internal/inputfile"
)

// Sample is one image read from a Source, in planar CHW order.
type Sample struct {
	// Channels, Height and Width give the shape of Pix.
	Channels, Height, Width int
	// Pix holds Channels*Height*Width values, channel-major. 8-bit and
	// 16-bit sources are scaled to [0,1]; float32 sources are passed through.
	Pix []float32
	// Label is the class index, or -1 when the source is unlabelled.
	Label int
	// Path names the file the sample came from.
	Path string

	raw []byte // read buffer reused between samples
}

// Source gives random access to the samples of a data set.
type Source interface {
	// Len returns the number of samples.
	Len() int
	// Classes returns the class names indexed by label (nil when unknown).
	Classes() []string
	// Sample reads sample i into a new Sample.
	Sample(i int) (Sample, error)
	// ReadSample reads sample i into dst, reusing dst.Pix when it is large
	// enough. It is safe to call from several goroutines with distinct dst.
	ReadSample(i int, dst *Sample) error
	// Close releases open files.
	Close() error
}

// Split names one part of a data set shipped in parts, such as MNIST.
const (
	SplitTrain = "train"
	SplitTest  = "test"
)

// OpenOptions control how Open reads a path.
type OpenOptions struct {
	// Split chooses "train" (the default) or "test" when the path is a
	// directory holding IDX files of both splits.
	Split string
	// Labels is an optional labels file: for NPY images an NPY int64/int32
	// array or a text file with one integer per line; for an IDX images file
	// an IDX labels file (by default the matching labels-idx1 file next to it).
	Labels string
}

// Open detects the kind of data at path and returns a Source for it:
// a directory with IDX files, a directory of images (class sub-folders or
// unlabelled), an IDX images file (raw or .gz) or an NPY file.
func Open(path string, opts OpenOptions) (Source, error) {
	split := opts.Split
	if split == "" {
		split = SplitTrain
	}
	if split != SplitTrain && split != SplitTest {
		return nil, fmt.Errorf("open %s: unknown split %q (want %q or %q)", path, opts.Split, SplitTrain, SplitTest)
	}
	fi, err := inputfile.Check(path, true)
	if err != nil {
		return nil, fmt.Errorf("open data set: %w", err)
	}
	if fi.IsDir() {
		if img, lab, ok := findIDXPair(path, split); ok {
			if opts.Labels != "" {
				lab = opts.Labels
			}
			return OpenIDX(img, lab)
		}
		if opts.Labels != "" {
			return nil, fmt.Errorf("open %s: a labels file is not used with image folders", path)
		}
		return OpenFolder(path)
	}
	lower := strings.ToLower(filepath.Base(path))
	switch {
	case strings.HasSuffix(lower, ".npy"):
		return OpenNPY(path, opts.Labels)
	case isIDXName(lower):
		lab := opts.Labels
		if lab == "" {
			lab = idxLabelsFor(path)
		}
		return OpenIDX(path, lab)
	}
	// Fall back to sniffing the file's first bytes.
	kind, err := sniff(path)
	if err != nil {
		return nil, err
	}
	switch kind {
	case "npy":
		return OpenNPY(path, opts.Labels)
	case "idx":
		return OpenIDX(path, opts.Labels)
	}
	return nil, fmt.Errorf("open %s: not a directory, NPY or IDX file", path)
}

func isIDXName(lower string) bool {
	return strings.Contains(lower, "idx3-ubyte") || strings.HasSuffix(lower, ".idx") || strings.HasSuffix(lower, ".idx.gz")
}

// idxLabelsFor returns the labels file conventionally paired with an IDX
// images file, or "" when it does not exist.
func idxLabelsFor(imagesPath string) string {
	dir, base := filepath.Split(imagesPath)
	if !strings.Contains(base, "images-idx3") {
		return ""
	}
	cand := filepath.Join(dir, strings.Replace(base, "images-idx3", "labels-idx1", 1))
	if _, err := os.Stat(cand); err == nil {
		return cand
	}
	return ""
}

// findIDXPair looks for the IDX images and labels files of a split in dir.
func findIDXPair(dir, split string) (images, labels string, ok bool) {
	prefix := "train"
	if split == SplitTest {
		prefix = "t10k"
	}
	for _, suffix := range []string{"", ".gz"} {
		img := filepath.Join(dir, prefix+"-images-idx3-ubyte"+suffix)
		if _, err := os.Stat(img); err != nil {
			continue
		}
		for _, ls := range []string{suffix, "", ".gz"} {
			lab := filepath.Join(dir, prefix+"-labels-idx1-ubyte"+ls)
			if _, err := os.Stat(lab); err == nil {
				return img, lab, true
			}
		}
		return img, "", true
	}
	return "", "", false
}

func sniff(path string) (string, error) {
	f, err := inputfile.Open(path)
	if err != nil {
		return "", fmt.Errorf("open data set: %w", err)
	}
	defer f.Close()
	var head [6]byte
	n, err := f.Read(head[:])
	if err != nil && n == 0 {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	if n >= 6 && string(head[:6]) == npyMagic {
		return "npy", nil
	}
	if n >= 4 && head[0] == 0 && head[1] == 0 && head[2] == 0x08 {
		return "idx", nil
	}
	if n >= 2 && head[0] == 0x1f && head[1] == 0x8b {
		return "idx", nil
	}
	return "", nil
}

// errShape reports a sample whose shape cannot be converted.
var errShape = errors.New("unsupported shape")

// growBytes returns b resized to n bytes, reusing its storage when possible.
func growBytes(b []byte, n int) []byte {
	if cap(b) >= n {
		return b[:n]
	}
	return make([]byte, n)
}

// grow returns s resized to n elements, reusing its storage when possible.
func grow(s []float32, n int) []float32 {
	if cap(s) >= n {
		return s[:n]
	}
	return make([]float32, n)
}
