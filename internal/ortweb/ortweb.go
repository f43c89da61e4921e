// Package ortweb runs ONNX models in ONNX Runtime's WebAssembly build (npm
// onnxruntime-web) under Node.js, so that tests can check that lprconv's
// files run in browsers as well as in native ONNX Runtime. It calls the
// embedded script run.mjs with the node on PATH and the onnxruntime-web
// installed by .ci/run into ${XDG_CACHE_HOME:-~/.cache}/lprconv/ortweb/VERSION.
package ortweb

import (
	"bytes"
	_ "embed"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// Version is the onnxruntime-web release .ci/run installs: the release of
// the native ONNX Runtime the tests compare with.
const Version = "1.24.3"

//go:embed run.mjs
var script []byte

// Dir returns the folder onnxruntime-web is installed in: $ORTWEB_DIR when
// set, otherwise ${XDG_CACHE_HOME:-~/.cache}/lprconv/ortweb/Version. It
// fails, saying how to install it, when node or the package is missing.
func Dir() (string, error) {
	if _, err := exec.LookPath("node"); err != nil {
		return "", fmt.Errorf("onnxruntime-web: node is not on PATH (install Node.js 20 or later): %w", err)
	}
	dir := os.Getenv("ORTWEB_DIR")
	if dir == "" {
		cache := os.Getenv("XDG_CACHE_HOME")
		if cache == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", fmt.Errorf("onnxruntime-web: %w", err)
			}
			cache = filepath.Join(home, ".cache")
		}
		dir = filepath.Join(cache, "lprconv", "ortweb", Version)
	}
	pkg := filepath.Join(dir, "node_modules", "onnxruntime-web", "package.json")
	if _, err := os.Stat(pkg); err != nil {
		return "", fmt.Errorf("onnxruntime-web is not installed in %s (run `bash .ci/run`, or `npm install --prefix %s onnxruntime-web@%s`): %w", dir, dir, Version, err)
	}
	return dir, nil
}

// Result is the first output of a model over every sample.
type Result struct {
	// Name is the output's name, Dims its shape (the samples first).
	Name string
	Dims []int
	Data []float32
	// Version is the onnxruntime-web version that ran the model.
	Version string
}

// Run feeds x, n samples of shape sample (without the batch dimension),
// to the first input of the ONNX model at modelPath in batches of batch
// samples, on one WebAssembly thread, and returns the first output.
func Run(modelPath string, x []float32, sample []int, batch int) (*Result, error) {
	dir, err := Dir()
	if err != nil {
		return nil, err
	}
	per := 1
	for _, d := range sample {
		per *= d
	}
	if per <= 0 || len(x)%per != 0 {
		return nil, fmt.Errorf("onnxruntime-web: %d values are not whole samples of shape %v", len(x), sample)
	}
	if batch <= 0 {
		return nil, fmt.Errorf("onnxruntime-web: batch %d must be positive", batch)
	}
	tmp, err := os.MkdirTemp("", "lprconv-ortweb-")
	if err != nil {
		return nil, fmt.Errorf("onnxruntime-web: %w", err)
	}
	defer os.RemoveAll(tmp)
	run := filepath.Join(tmp, "run.mjs")
	in := filepath.Join(tmp, "input.bin")
	out := filepath.Join(tmp, "output.bin")
	raw := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	if err := os.WriteFile(run, script, 0o600); err != nil {
		return nil, fmt.Errorf("onnxruntime-web: %w", err)
	}
	if err := os.WriteFile(in, raw, 0o600); err != nil {
		return nil, fmt.Errorf("onnxruntime-web: %w", err)
	}
	shape := []string{strconv.Itoa(len(x) / per)}
	for _, d := range sample {
		shape = append(shape, strconv.Itoa(d))
	}
	cmd := exec.Command("node", run, dir, modelPath, in, strings.Join(shape, ","), strconv.Itoa(batch), out)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("onnxruntime-web: run %s: %w: %s", modelPath, err, strings.TrimSpace(stderr.String()))
	}
	var info struct {
		Output  string `json:"output"`
		Dims    []int  `json:"dims"`
		Version string `json:"version"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &info); err != nil {
		return nil, fmt.Errorf("onnxruntime-web: run %s: unreadable report %q: %w", modelPath, stdout.String(), err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("onnxruntime-web: %w", err)
	}
	want := 1
	for _, d := range info.Dims {
		want *= d
	}
	if len(info.Dims) == 0 || len(data) != 4*want {
		return nil, errors.New("onnxruntime-web: the output file does not match the reported dims")
	}
	r := &Result{Name: info.Output, Dims: info.Dims, Data: make([]float32, want), Version: info.Version}
	for i := range r.Data {
		r.Data[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
	}
	return r, nil
}
