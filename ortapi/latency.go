package ortapi

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// ErrFixedBatch is wrapped by TimeModels' error when a model's input fixes
// its batch size to another size than the one asked for.
var ErrFixedBatch = errors.New("the model fixes its batch size")

// Model is a model to load: its serialized bytes, or, when Bytes is nil,
// the file at Path (which may have external data next to it).
type Model struct {
	Bytes []byte
	Path  string
}

// name returns the model's file, or "model i", for messages.
func (m Model) name(i int) string {
	if m.Bytes == nil {
		return m.Path
	}
	return fmt.Sprintf("model %d", i)
}

// OpenModel loads the model into a session.
func (r *Runtime) OpenModel(m Model, opts Options) (*Session, error) {
	if m.Bytes != nil {
		return r.NewSession(m.Bytes, opts)
	}
	return r.NewSessionFromFile(m.Path, opts)
}

// LatencyOptions configures TimeModels. The zero value times batch 1 on
// one thread in 2 session sets with TimingConfig's defaults.
type LatencyOptions struct {
	// Batch is the size given to every symbolic dimension of the inputs
	// (0 means 1). A model whose first input dimension is fixed to
	// another size is an error.
	Batch int64
	// Threads is the number of intra-op threads (0 means 1).
	Threads int
	// Optimization is the graph optimization level.
	Optimization OptLevel
	// Sessions is the number of fresh session sets (0 means 2): one
	// session's buffer placement can make it consistently faster or
	// slower than another session of the same model, which interleaving
	// alone does not cancel; fresh sessions, created in rotating order,
	// average it out.
	Sessions int
	// Timing configures each set's Interleave; its Budget is split
	// evenly among the sets.
	Timing TimingConfig
}

// TimeModels times models against each other: in each of o.Sessions sets
// it loads every model, binds the same seeded standard-normal inputs
// (shaped after the first model's inputs, with symbolic dimensions set to
// o.Batch), and runs them with Interleave. It returns every set's samples
// concatenated, so that Timings.Ratio(i, 0) compares model i with model
// 0 round by round.
func (r *Runtime) TimeModels(models []Model, o LatencyOptions) (*Timings, error) {
	if len(models) == 0 {
		return nil, fmt.Errorf("time models: no models")
	}
	batch := max(o.Batch, 1)
	sets := o.Sessions
	if sets <= 0 {
		sets = 2
	}
	cfg := o.Timing
	if cfg.Budget > 0 {
		cfg.Budget /= time.Duration(sets)
	}
	opts := Options{IntraOpThreads: o.Threads, Optimization: o.Optimization}
	all := &Timings{Samples: make([][]time.Duration, len(models)), Early: true}
	var inputs map[string]Tensor
	for set := 0; set < sets; set++ {
		t, err := r.timeSet(models, opts, cfg, set, batch, &inputs)
		if err != nil {
			return nil, err
		}
		for i := range all.Samples {
			all.Samples[i] = append(all.Samples[i], t.Samples[i]...)
		}
		all.Early = all.Early && t.Early
	}
	return all, nil
}

// timeSet loads the models (in an order rotated by set), binds *inputs
// (made from the first model on first use) and interleaves their runs.
func (r *Runtime) timeSet(models []Model, opts Options, cfg TimingConfig, set int, batch int64, inputs *map[string]Tensor) (*Timings, error) {
	sessions := make([]*Session, len(models))
	defer func() {
		for _, s := range sessions {
			if s != nil {
				s.Close()
			}
		}
	}()
	for k := range models {
		i := (k + set) % len(models)
		s, err := r.OpenModel(models[i], opts)
		if err != nil {
			return nil, err
		}
		sessions[i] = s
	}
	if *inputs == nil {
		in, err := seededInputs(sessions[0].Inputs(), batch)
		if err != nil {
			return nil, fmt.Errorf("time %s: %w", models[0].name(0), err)
		}
		*inputs = in
	}
	runs := make([]func() error, len(models))
	for i, s := range sessions {
		b, err := s.Bind(*inputs)
		if err != nil {
			return nil, fmt.Errorf("time %s: %w", models[i].name(i), err)
		}
		defer b.Close()
		runs[i] = b.Run
	}
	return Interleave(cfg, runs...)
}

// seededInputs returns standard-normal float inputs (seeded by the batch
// size) shaped after infos, with symbolic dimensions set to batch.
func seededInputs(infos []Info, batch int64) (map[string]Tensor, error) {
	rng := rand.New(rand.NewPCG(uint64(batch), 12))
	in := map[string]Tensor{}
	for _, info := range infos {
		if info.DataType != "float" {
			return nil, fmt.Errorf("input %q has type %s; latency is measured only for float inputs", info.Name, info.DataType)
		}
		shape := append([]int64(nil), info.Shape...)
		n := int64(1)
		for j, d := range shape {
			switch {
			case d < 0:
				d = batch
			case j == 0 && d != batch:
				return nil, fmt.Errorf("input %q: %w to %d, not %d", info.Name, ErrFixedBatch, d, batch)
			}
			shape[j] = d
			n *= d
		}
		x := make([]float32, n)
		for k := range x {
			x[k] = float32(rng.NormFloat64())
		}
		in[info.Name] = Tensor{Shape: shape, Data: x}
	}
	return in, nil
}
