package finetune

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"

	"github.com/lprconv/lprconv/internal/atomicfile"
)

// checkpointFile is the file a checkpoint directory holds: a JSON header
// (its length first, as a little-endian uint32) followed by float32 arrays,
// written atomically so that an interrupted save never leaves a broken
// checkpoint.
const checkpointFile = "checkpoint.lprc"

// checkpointHeader is the JSON part of a checkpoint.
type checkpointHeader struct {
	Format      int           `json:"format"`
	Fingerprint string        `json:"fingerprint"`
	Step        int           `json:"step"`
	OptStep     int           `json:"optimizer_step"`
	LossMean    float64       `json:"loss_mean"`
	BestAgr     float64       `json:"best_agreement"`
	HasBest     bool          `json:"has_best"`
	Epochs      []EpochResult `json:"epochs"`
	BestEpoch   int           `json:"best_epoch"`
	Names       []string      `json:"names"`
	// Arrays lists, in file order, the length of every float32 array that
	// follows: per name its value, first and second moments, and the best
	// value when HasBest.
	Arrays []int `json:"arrays"`
}

// checkpointer saves and restores a trainer's state in dir.
type checkpointer struct {
	dir, fingerprint string
	// saved is set once this run has written or resumed a checkpoint.
	saved bool
	// pending is a checkpoint taken after an update, written only once the
	// next step's loss has proved the update sound.
	pending []byte
}

func (c *checkpointer) path() string { return filepath.Join(c.dir, checkpointFile) }

// save writes the trainer's state now.
func (c *checkpointer) save(r *trainer) error {
	data, err := c.encode(r)
	if err != nil {
		return err
	}
	c.pending = nil
	return c.write(data)
}

// hold takes a checkpoint of the trainer's state to write later.
func (c *checkpointer) hold(r *trainer) error {
	data, err := c.encode(r)
	c.pending = data
	return err
}

// flush writes a held checkpoint.
func (c *checkpointer) flush() error {
	if c.pending == nil {
		return nil
	}
	data := c.pending
	c.pending = nil
	return c.write(data)
}

// encode serializes the trainer's state.
func (c *checkpointer) encode(r *trainer) ([]byte, error) {
	h := checkpointHeader{Format: 1, Fingerprint: c.fingerprint, Step: r.step, OptStep: r.opt.step, LossMean: r.lossMean,
		BestAgr: r.bestAgr, HasBest: r.best != nil, Epochs: r.rep.Epochs, BestEpoch: r.rep.BestEpoch, Names: r.names}
	var arrays [][]float32
	for i, n := range r.names {
		p := r.sp.Param(n).F
		m, v := r.opt.m[n], r.opt.v[n]
		if m == nil {
			m = make([]float32, len(p))
		}
		if v == nil {
			v = make([]float32, len(p))
		}
		arrays = append(arrays, p, m, v)
		if r.best != nil {
			arrays = append(arrays, r.best[i])
		}
	}
	for _, a := range arrays {
		h.Arrays = append(h.Arrays, len(a))
	}
	js, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	var buf bytes.Buffer
	binary.Write(&buf, binary.LittleEndian, uint32(len(js)))
	buf.Write(js)
	b4 := make([]byte, 4)
	for _, a := range arrays {
		for _, x := range a {
			binary.LittleEndian.PutUint32(b4, math.Float32bits(x))
			buf.Write(b4)
		}
	}
	return buf.Bytes(), nil
}

// write stores an encoded checkpoint atomically.
func (c *checkpointer) write(data []byte) error {
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if err := atomicfile.Write(c.path(), data); err != nil {
		return fmt.Errorf("checkpoint %s: %w", c.path(), err)
	}
	c.saved = true
	return nil
}

// load restores the trainer's state when dir holds a checkpoint of the
// same run; it reports whether it did.
func (c *checkpointer) load(r *trainer) (bool, error) {
	data, err := os.ReadFile(c.path())
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("checkpoint: %w", err)
	}
	bad := func(why string) error {
		return fmt.Errorf("checkpoint %s: %s; remove the folder to start afresh", c.path(), why)
	}
	if len(data) < 4 {
		return false, bad("truncated")
	}
	hl := int(binary.LittleEndian.Uint32(data))
	if hl > len(data)-4 {
		return false, bad("truncated header")
	}
	var h checkpointHeader
	if err := json.Unmarshal(data[4:4+hl], &h); err != nil {
		return false, bad("corrupt header: " + err.Error())
	}
	if h.Format != 1 {
		return false, bad(fmt.Sprintf("unknown format %d", h.Format))
	}
	if h.Fingerprint != c.fingerprint {
		return false, bad("it belongs to another run (different model, data or options)")
	}
	if len(h.Names) != len(r.names) {
		return false, bad("it trains other tensors")
	}
	per := 3
	if h.HasBest {
		per = 4
	}
	if len(h.Arrays) != per*len(h.Names) {
		return false, bad("array count does not match")
	}
	rd := bytes.NewReader(data[4+hl:])
	read := func(n int) ([]float32, error) {
		out := make([]float32, n)
		if err := binary.Read(rd, binary.LittleEndian, out); err != nil {
			return nil, err
		}
		return out, nil
	}
	if h.HasBest {
		r.best = make([][]float32, len(h.Names))
	}
	for i, n := range h.Names {
		if n != r.names[i] {
			return false, bad(fmt.Sprintf("it trains %q where this run trains %q", n, r.names[i]))
		}
		p := r.sp.Param(n).F
		for k := 0; k < per; k++ {
			if h.Arrays[i*per+k] != len(p) {
				return false, bad(fmt.Sprintf("tensor %q has another size", n))
			}
		}
		vals, err := read(len(p))
		if err != nil {
			return false, bad("truncated data")
		}
		copy(p, vals)
		if r.opt.m[n], err = read(len(p)); err != nil {
			return false, bad("truncated data")
		}
		if r.opt.v[n], err = read(len(p)); err != nil {
			return false, bad("truncated data")
		}
		if h.HasBest {
			if r.best[i], err = read(len(p)); err != nil {
				return false, bad("truncated data")
			}
		}
	}
	if _, err := rd.ReadByte(); err != io.EOF {
		return false, bad("trailing data")
	}
	r.step, r.opt.step, r.lossMean, r.bestAgr = h.Step, h.OptStep, h.LossMean, h.BestAgr
	r.rep.Epochs, r.rep.BestEpoch = h.Epochs, h.BestEpoch
	c.saved = true
	return true, nil
}
