package pipeline

import (
	"context"
	"fmt"

	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/finetune"
)

// fisherMaxBatch is the largest batch of the channel-weight passes.
const fisherMaxBatch = 16

// weigh computes the channel weights of FineTune.Weigh on the first
// calibration images (at least one batch): the values the distillation
// matches and, when the reconstruction stage runs, every LPR module's
// output, less the modules of a rank above
// finetune.FisherMaxRankFraction of their channels (finetune.FisherValues).
func (f *fineTuner) weigh(ctx context.Context) error {
	switch f.ft.Weigh {
	case "":
		return nil
	case finetune.WeighFisher:
	default:
		return fmt.Errorf("fine-tune: unknown channel weights %q (want %q or none)", f.ft.Weigh, finetune.WeighFisher)
	}
	specs := f.ft.Options.Match
	if len(specs) == 0 {
		specs = []finetune.MatchSpec{{Kind: finetune.MatchLogits, Weight: 1}}
	}
	if f.ft.ReconstructSteps > 0 {
		specs = append(append([]finetune.MatchSpec(nil), specs...), finetune.MatchSpec{Kind: finetune.MatchModules, Weight: 1})
	}
	matched, err := finetune.MatchedValues(f.r.Original, f.r.Model, specs)
	if err != nil {
		return fmt.Errorf("fine-tune: channel weights: %w", err)
	}
	// A graph output has no reader to probe (ChannelFisher refuses it);
	// its term stays unweighted.
	outs := map[string]bool{}
	for _, o := range f.r.Original.GetGraph().GetOutput() {
		outs[o.GetName()] = true
	}
	var names []string
	for _, v := range finetune.FisherValues(f.r.Plan, matched) {
		if !outs[v] {
			names = append(names, v)
		}
	}
	if len(names) == 0 {
		return nil
	}
	// The estimate is a sum over images, so a small batch gives the same
	// weights with a quarter of batch 64's activation memory (the probed
	// copy keeps every activation for its backward pass: 2.5 GB more peak
	// memory at batch 64 on MobileNetV1 1.0 at 224x224). A fixed batch
	// size is kept.
	batch := min(f.ft.Options.Batch, fisherMaxBatch)
	if in, err := evaluate.ModelInput(f.r.Original); err == nil && in.Batch > 0 {
		batch = f.ft.Options.Batch
	}
	batches := max(len(f.calib)/batch, 1)
	l, err := f.loaderBatch(dataset.First(f.calib, batches*batch), batch, false)
	if err != nil {
		return err
	}
	defer l.Close()
	f.opts.logf(StageCalibrate, "weighing the channels of %d matched values by the original's Fisher information on %d images", len(names), batches*batch)
	w, err := finetune.ChannelFisher(ctx, f.r.Original, names, l, finetune.FisherOptions{Batch: batch, Batches: batches, Seed: uint64(f.ft.Seed), Threads: f.ft.Options.Threads})
	if err != nil {
		return fmt.Errorf("fine-tune: channel weights: %w", err)
	}
	f.weights = w
	f.summary.ChannelWeights = &ChannelWeights{Method: f.ft.Weigh, Values: len(names), Images: batches * batch}
	return nil
}
