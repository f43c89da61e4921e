package pipeline

import (
	"context"
	"fmt"
	"os"
	"sync"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/finetune"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// Calibration caches the covariances of every candidate layer's input on
// the calibration images, computed once and shared by runs of the same
// model, training images and seed (safe for concurrent use).
type Calibration struct {
	once sync.Once
	covs map[string]*finetune.Covariance
	err  error
}

// Len returns the number of activations calibrated so far (0 before the
// first run that initializes from data); call it while no Run is using c.
func (c *Calibration) Len() int { return len(c.covs) }

// get returns the covariances, computed by compute on first use.
func (c *Calibration) get(compute func() (map[string]*finetune.Covariance, error)) (map[string]*finetune.Covariance, error) {
	c.once.Do(func() { c.covs, c.err = compute() })
	return c.covs, c.err
}

// fineTuner runs the data-aware initialization and the distillation of one
// Run.
type fineTuner struct {
	opts       *Options
	ft         *FineTune
	r          *Result
	train, val []int
	// calib are the calibration images: FineTune.Calib of train, chosen
	// at random for the seed and kept in train's order (see split).
	calib   []int
	summary FineTuneResult
	// weights are the channel weights of FineTune.Weigh (nil: none).
	weights map[string][]float64
}

// newFineTuner prepares the fine-tuning of r (inactive without
// Options.FineTune).
func newFineTuner(opts *Options, r *Result) *fineTuner {
	return &fineTuner{opts: opts, ft: opts.FineTune, r: r}
}

// active reports whether the run fine-tunes.
func (f *fineTuner) active() bool {
	return f.ft != nil && (!f.ft.OnlyReplaced || f.r.Plan.Replaced() > 0)
}

// split chooses the training and validation images.
func (f *fineTuner) split() error {
	f.train = f.ft.Train.Indices
	if f.ft.ValFraction > 0 {
		var err error
		if f.train, f.val, err = dataset.SplitFraction(f.ft.Train.Indices, f.ft.ValFraction, f.ft.Seed); err != nil {
			return fmt.Errorf("fine-tune: %w", err)
		}
	}
	if len(f.train) < f.ft.Options.Batch {
		return fmt.Errorf("fine-tune: %d training images are fewer than one batch of %d; lower --batch", len(f.train), f.ft.Options.Batch)
	}
	// A random subset rather than the first images: a folder of class
	// subfolders lists its images class by class, so its first 512 images
	// would hold only its first classes (on the 1,000 committed images,
	// five of ten), and the data-aware factors and channel weights would
	// fit those classes.
	f.calib = dataset.Random(f.train, min(max(f.ft.Calib, 1), len(f.train)), f.ft.Seed)
	f.summary = FineTuneResult{Data: f.ft.Train.Name, TrainImages: len(f.train), ValImages: len(f.val), Init: f.ft.Init, Recipe: f.ft.Recipe}
	if f.summary.Init == "" {
		f.summary.Init = InitData
	}
	return nil
}

// loader reads idx in batches, shuffled (and dropping the last partial
// batch) for training. A training loader prefetches nothing itself:
// finetune reads it one batch ahead on a goroutine of its own, and a
// second buffer would only add a copy of every batch.
func (f *fineTuner) loader(idx []int, shuffle bool) (*dataset.Loader, error) {
	return f.loaderBatch(idx, f.ft.Options.Batch, shuffle)
}

// loaderBatch is loader with batches of the given size.
func (f *fineTuner) loaderBatch(idx []int, batch int, shuffle bool) (*dataset.Loader, error) {
	t := f.ft.Train
	prefetch := dataset.DefaultPrefetch
	if shuffle {
		prefetch = 0
	}
	return dataset.NewLoader(t.Source, idx, t.Pre, dataset.LoaderOptions{BatchSize: batch, Shuffle: shuffle, Reshuffle: shuffle,
		Seed: f.ft.Seed, DropLast: shuffle, Workers: dataset.DefaultWorkers, Prefetch: prefetch})
}

// initialize replaces the data-free factors of the plan's replaced layers
// by factors fitted to their calibration activations (InitData).
func (f *fineTuner) initialize(ctx context.Context) error {
	if !f.active() {
		return nil
	}
	if err := f.split(); err != nil {
		return err
	}
	plan := f.r.Plan
	if f.summary.Init != InitData || plan.Replaced() == 0 {
		return nil
	}
	n := len(f.calib)
	calibrate := func(values []string) (map[string]*finetune.Covariance, error) {
		l, err := f.loader(f.calib, false)
		if err != nil {
			return nil, err
		}
		defer l.Close()
		f.opts.logf(StageCalibrate, "calibrating on %d images", n)
		return finetune.Calibrate(ctx, f.r.Original, values, l, f.ft.Options.Batch, n, f.ft.Options.Threads)
	}
	var covs map[string]*finetune.Covariance
	var err error
	if f.ft.Calibration != nil {
		// Every candidate's input, so that the covariances serve any plan.
		covs, err = f.ft.Calibration.get(func() (map[string]*finetune.Covariance, error) { return calibrate(candidateInputs(plan)) })
	} else {
		covs, err = calibrate(finetune.CandidateInputs(plan))
	}
	if err != nil {
		return fmt.Errorf("calibrate: %w", err)
	}
	if f.summary.Layers, err = finetune.InitFromData(ctx, plan, covs, f.opts.Plan.SVD); err != nil || !f.ft.Sequential {
		return err
	}
	l, err := f.loader(f.calib, false)
	if err != nil {
		return err
	}
	defer l.Close()
	f.opts.logf(StageCalibrate, "refitting %d layers in order on %d images", plan.Replaced(), n)
	f.summary.Sequential, err = finetune.SequentialInitFrom(ctx, f.r.Original, plan, l, n, f.ft.Options.Batch, f.ft.Options.Threads, f.opts.Plan.SVD)
	return err
}

// candidateInputs returns the values that the plan's candidates read,
// replaced or not.
func candidateInputs(plan *convert.Plan) []string {
	var vals []string
	seen := map[string]bool{}
	for _, l := range plan.Layers {
		if !seen[l.Input] {
			seen[l.Input] = true
			vals = append(vals, l.Input)
		}
	}
	return vals
}

// distill trains the rewritten model against the original.
func (f *fineTuner) distill(ctx context.Context) error {
	if !f.active() {
		return nil
	}
	if err := f.weigh(ctx); err != nil {
		return err
	}
	if err := f.reconstruct(ctx); err != nil {
		return err
	}
	train, err := f.loader(f.train, true)
	if err != nil {
		return err
	}
	defer train.Close()
	data := finetune.Data{Train: train, Seek: train.Seek}
	if len(f.val) > 0 {
		val, err := f.loader(f.val, false)
		if err != nil {
			return err
		}
		defer val.Close()
		data.Val = val
		if err := f.measureBefore(ctx, val); err != nil {
			return err
		}
	}
	o := f.ft.Options
	o.ChannelWeights = f.weights
	o.StepsPerEpoch = train.Batches()
	total := o.Steps
	if total <= 0 {
		total = o.Epochs * o.StepsPerEpoch
	}
	o.Progress = func(s finetune.Status) {
		if s.Resumed {
			f.opts.logf(StageFineTune, "resuming from the checkpoint in %s at step %d", o.CheckpointDir, s.Step)
		}
		f.opts.emit(Event{Stage: StageFineTune, Done: s.Step, Total: total, Loss: s.Loss,
			Status: fmt.Sprintf("epoch %d, loss %.4f, lr %.2g", s.Epoch+1, s.Loss, s.LR)})
	}
	tuned, rep, err := finetune.Distill(ctx, f.r.Original, f.r.Model, data, o)
	f.opts.emit(Event{Stage: StageFineTune, Finished: true})
	if err != nil {
		if ctx.Err() != nil && o.CheckpointDir != "" {
			return fmt.Errorf("interrupted; training state saved in %s: run the same command again to resume (nothing was written to the output)", o.CheckpointDir)
		}
		return fmt.Errorf("fine-tune: %w (nothing was written to the output)", err)
	}
	if f.ft.RemoveCheckpoint && o.CheckpointDir != "" {
		if err := os.RemoveAll(o.CheckpointDir); err != nil {
			return fmt.Errorf("remove the finished checkpoint: %w", err)
		}
	}
	f.r.Model = tuned
	f.summary.Report = rep
	if f.ft.PeakRSS != nil {
		f.summary.PeakRSSBytes = f.ft.PeakRSS()
	}
	f.r.FineTune = &f.summary
	return nil
}

// reconstruct runs the optional first stage: ReconstructSteps steps that
// fit the LPR modules' outputs to the original's (finetune.Reconstruct).
// It reads its own loader, so that distillation afterwards (and a resumed
// distillation) starts from the same first batch; being deterministic,
// it is simply run again when a checkpointed run resumes.
func (f *fineTuner) reconstruct(ctx context.Context) error {
	n := f.ft.ReconstructSteps
	if n <= 0 {
		return nil
	}
	l, err := f.loader(f.train, true)
	if err != nil {
		return err
	}
	defer l.Close()
	o := f.ft.Options
	o.ChannelWeights = f.weights
	o.LowRankLRBoost = f.ft.ReconstructLRBoost
	o.StepsPerEpoch = l.Batches()
	o.Progress = func(s finetune.Status) {
		f.opts.emit(Event{Stage: StageReconstruct, Done: s.Step, Total: n, Loss: s.Loss, Status: fmt.Sprintf("loss %.4f", s.Loss)})
	}
	f.opts.logf(StageReconstruct, "reconstructing the LPR modules' outputs for %d steps", n)
	out, rep, err := finetune.Reconstruct(ctx, f.r.Original, f.r.Model, l, o, n)
	f.opts.emit(Event{Stage: StageReconstruct, Finished: true})
	if err != nil {
		return fmt.Errorf("fine-tune: %w (nothing was written to the output)", err)
	}
	f.r.Model, f.summary.Reconstruct = out, rep
	return nil
}

// measureBefore records the teacher's accuracy and the untuned student's
// agreement and accuracy on the validation images, in percent.
func (f *fineTuner) measureBefore(ctx context.Context, val *dataset.Loader) error {
	res, err := evaluate.Run(ctx, []*onnxpb.ModelProto{f.r.Original, f.r.Model}, val, evaluate.Options{Batch: f.ft.Options.Batch, Threads: f.ft.Options.Threads})
	if err != nil {
		return fmt.Errorf("fine-tune: validation before training: %w", err)
	}
	f.summary.BeforeAgree = evaluate.Percent(res.Fidelity[0].Agreement())
	f.summary.TeacherTop1 = evaluate.Percent(res.Models[0].Accuracy.Top1Rate())
	f.summary.BeforeTop1 = evaluate.Percent(res.Models[1].Accuracy.Top1Rate())
	return nil
}
