package finetune

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/engine"
	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

// TrainSet chooses which tensors of the student learn.
type TrainSet int

const (
	// TrainLPR trains only the tensors of the LPR modules (the initializers
	// of nodes whose names contain "/lpr_").
	TrainLPR TrainSet = iota
	// TrainAll trains every float initializer of the student.
	TrainAll
)

// ParseTrainSet parses "lpr" or "all".
func ParseTrainSet(s string) (TrainSet, error) {
	switch strings.ToLower(s) {
	case "lpr":
		return TrainLPR, nil
	case "all":
		return TrainAll, nil
	}
	return 0, fmt.Errorf("unknown trainable set %q (want lpr or all)", s)
}

// String returns the flag spelling.
func (s TrainSet) String() string {
	if s == TrainAll {
		return "all"
	}
	return "lpr"
}

// TrainableTensors lists the student's initializers that set trains, in
// graph order.
func TrainableTensors(m *onnxpb.ModelProto, set TrainSet) []string {
	g := m.GetGraph()
	isInit := map[string]*onnxpb.TensorProto{}
	for _, t := range g.GetInitializer() {
		isInit[t.GetName()] = t
	}
	var names []string
	seen := map[string]bool{}
	for _, n := range g.GetNode() {
		if set == TrainLPR && !strings.Contains(n.GetName(), "/lpr_") {
			continue
		}
		for _, in := range n.GetInput() {
			t := isInit[in]
			if t == nil || seen[in] || onnxio.DataType(t.GetDataType()) != onnxio.Float || len(t.GetDims()) == 0 {
				continue
			}
			if set == TrainAll && !trainableOp(n.GetOpType()) {
				continue
			}
			seen[in] = true
			names = append(names, in)
		}
	}
	return names
}

// trainableOp reports whether the float initializers of an op are weights
// (rather than, say, shape or clip constants).
func trainableOp(op string) bool {
	switch op {
	case "Conv", "Gemm", "MatMul", "BatchNormalization", "Add", "Mul", "Sub":
		return true
	}
	return false
}

// ErrDiverged is wrapped by the error Distill returns when the loss
// becomes NaN, infinite or explodes, or when an update makes the trained
// parameters non-finite or explode (see Options.DivergeFactor). Distill
// then returns no model.
var ErrDiverged = errors.New("training diverged")

// Distill trains the student's tensors chosen by opts.Train to match the
// teacher on data, and returns a copy of the student with the learned
// values. Neither input model is modified.
//
// The student's nodes that compute exactly what the teacher's do (with
// the default LPR-only training, every node before the first LPR module)
// are not run: the student runs from the teacher's values of the last of
// them on (see sharedPrefix), which gives the same bits as running the
// whole student, in less time and memory.
func Distill(ctx context.Context, teacher, student *onnxpb.ModelProto, data Data, opts Options) (*onnxpb.ModelProto, *Report, error) {
	in, err := evaluate.ModelInput(student)
	if err != nil {
		return nil, nil, fmt.Errorf("distill: %w", err)
	}
	tin, err := evaluate.ModelInput(teacher)
	if err != nil {
		return nil, nil, fmt.Errorf("distill: teacher: %w", err)
	}
	if opts.Batch <= 0 {
		return nil, nil, fmt.Errorf("distill: batch %d must be positive", opts.Batch)
	}
	if in.Batch > 0 && in.Batch != opts.Batch {
		return nil, nil, fmt.Errorf("distill: input %q has a fixed batch size of %d; train with batch %d or export the model with a dynamic batch", in.Name, in.Batch, in.Batch)
	}
	total := opts.Steps
	if total <= 0 {
		if opts.Epochs <= 0 || opts.StepsPerEpoch <= 0 {
			return nil, nil, errors.New("distill: give a number of steps, or epochs and steps per epoch")
		}
		total = opts.Epochs * opts.StepsPerEpoch
	}
	if opts.LR <= 0 || math.IsNaN(opts.LR) {
		return nil, nil, fmt.Errorf("distill: learning rate %v must be positive", opts.LR)
	}
	names := withoutFrozen(TrainableTensors(student, opts.Train), opts.Freeze)
	if len(names) == 0 {
		return nil, nil, fmt.Errorf("distill: the student has no %s tensors to train (freeze %q)", opts.Train, opts.Freeze)
	}
	if opts.L2SP < 0 || math.IsNaN(opts.L2SP) || math.IsInf(opts.L2SP, 0) {
		return nil, nil, fmt.Errorf("distill: L2-SP weight %v must be finite and not negative", opts.L2SP)
	}
	var anchors [][]float32
	if opts.L2SP > 0 {
		if anchors, err = l2spAnchors(student, opts.L2SPAnchor, names); err != nil {
			return nil, nil, fmt.Errorf("distill: %w", err)
		}
	}
	obj, err := resolveMatch(teacher, student, opts.Match)
	if err != nil {
		return nil, nil, fmt.Errorf("distill: %w", err)
	}
	obj.weighChannels(opts.ChannelWeights)
	aug, err := dataset.NewAugmenter(opts.Augment, in.Channels, in.Height, in.Width)
	if err != nil {
		return nil, nil, fmt.Errorf("distill: %w", err)
	}
	shape := []int{opts.Batch, in.Channels, in.Height, in.Width}
	// batch-parallel where it pays (engine.CompileBatched): each worker
	// runs a slice of the batch, and the gradients are reduced in a fixed
	// order, so a run is deterministic for a given thread count
	sp, pre, err := compileStudent(teacher, student, in.Name, shape, names, obj.names(), opts)
	if err != nil {
		return nil, nil, fmt.Errorf("distill: student: %w", err)
	}
	defer sp.Close()
	tOut := obj.names()
	if pre != nil {
		for _, b := range pre.boundary {
			if b != in.Name {
				tOut = append(tOut, b)
			}
		}
	}
	tp, err := engine.CompileBatched(teacher, engine.Options{Threads: opts.Threads, InputShapes: map[string][]int{tin.Name: shape}, Outputs: tOut}, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("distill: teacher: %w", err)
	}
	defer tp.Close()
	// one set of worker goroutines runs the phases of both programs, so
	// that each phase finds its workers still polling
	if err := sp.ShareWorkers(tp); err != nil {
		return nil, nil, fmt.Errorf("distill: %w", err)
	}

	r := &trainer{opts: opts, in: in, tin: tin, sp: sp, tp: tp, pre: pre, names: names, total: total, obj: obj, aug: aug,
		opt: newOptimizer(opts.Optimizer), rep: &Report{Trainable: names, BestEpoch: -1}, anchors: anchors}
	if opts.RankLRRef != 0 || opts.LowRankLRBoost != 0 {
		if r.lrScale, err = rankLRScales(student, names, opts.RankLRRef, opts.RankLRPower, opts.LowRankLRBoost); err != nil {
			return nil, nil, fmt.Errorf("distill: %w", err)
		}
	}
	r.workers = opts.Threads
	if r.workers <= 0 {
		r.workers = runtime.NumCPU()
	}
	if pre != nil {
		r.rep.SharedNodes = pre.nodes
		r.feed = map[string]*engine.Tensor{}
	}
	for _, n := range names {
		r.rep.Params += len(sp.Param(n).F)
	}
	warm := opts.WarmupSteps
	if warm <= 0 {
		warm = total / 20
	}
	r.sched = Schedule{Peak: opts.LR, Warmup: warm, Total: total, MinRatio: opts.MinLRRatio}
	if err := r.run(ctx, data); err != nil {
		return nil, r.rep, err
	}
	if r.best != nil {
		for i, n := range names {
			copy(sp.Param(n).F, r.best[i])
		}
	}
	out := proto.Clone(student).(*onnxpb.ModelProto)
	byName := map[string]int{}
	for i, t := range out.Graph.Initializer {
		byName[t.GetName()] = i
	}
	for _, n := range names {
		i := byName[n]
		old := out.Graph.Initializer[i]
		out.Graph.Initializer[i] = onnxio.NewFloat32(n, old.GetDims(), sp.Param(n).F)
	}
	return out, r.rep, nil
}

// trainer is the state of one Distill run.
type trainer struct {
	opts    Options
	in, tin evaluate.Input
	sp, tp  *engine.Batched
	// pre, when set, is the prefix the student shares with the teacher:
	// sp is then the student's suffix, fed the teacher's boundary values
	// (see forwardStudent) through feed.
	pre   *sharedPrefix
	feed  map[string]*engine.Tensor
	names []string
	// params and grads are the trained tensors' storage and last
	// gradients, in names order; workers is the number of goroutines for
	// per-tensor work (Options.Threads).
	params, grads [][]float32
	workers       int
	// chunks are the work items of an update, sq their sums of squares
	// after it (see update).
	chunks []paramChunk
	sq     []float64
	total  int
	opt    *optimizer
	sched  Schedule
	rep    *Report
	obj    *objective
	aug    *dataset.Augmenter
	// best holds the parameters of the best validated epoch.
	best     [][]float32
	bestAgr  float64
	step     int
	lossMean float64

	// anchors are the L2-SP anchors θ₀ of the trained tensors (nil when
	// Options.L2SP is 0), spGrads the gradients with the penalty's added.
	anchors, spGrads [][]float32
	// logitGrad is the gradient of the loss at the logits; samSaved the
	// parameters SAM's ascent step moved away from (see samGrad).
	logitGrad *engine.Tensor
	samSaved  [][]float32
	// lrScale multiplies the learning rate of each trained tensor (nil:
	// 1 for all; see Options.RankLRRef and LowRankLRBoost).
	lrScale []float64
}

func (r *trainer) run(ctx context.Context, data Data) error {
	o := r.opts
	size := r.in.Channels * r.in.Height * r.in.Width
	start := time.Now()
	seenImages := 0
	ck := checkpointer{dir: o.CheckpointDir, fingerprint: o.Fingerprint}
	every := o.CheckpointEvery
	if every <= 0 {
		every = 200
	}
	if ck.dir != "" {
		ok, err := ck.load(r)
		if err != nil {
			return err
		}
		if ok {
			r.rep.Resumed = true
			if o.Progress != nil {
				o.Progress(Status{Step: r.step, Total: r.total, Loss: r.lossMean, Resumed: true})
			}
			if data.Seek != nil && o.StepsPerEpoch > 0 {
				if err := data.Seek(r.step/o.StepsPerEpoch, r.step%o.StepsPerEpoch); err != nil {
					return fmt.Errorf("distill: resume: %w", err)
				}
			}
		}
	}
	inShape := []int{o.Batch, r.in.Channels, r.in.Height, r.in.Width}
	feed := startFeed(data.Train, r.aug, o.Batch, size, r.step, r.total-r.step)
	defer feed.close()
	r.params, r.grads = make([][]float32, len(r.names)), make([][]float32, len(r.names))
	for i, name := range r.names {
		r.params[i] = r.sp.Param(name).F
		r.opt.prepare(name, len(r.params[i]))
	}
	r.chunks, r.sq = paramChunks(r.params)
	// the norm of the parameters before an update is the one checked
	// after the previous update
	before := r.paramNorm()
	stepInEpoch := 0
	leadingEOF, startStep := false, r.step
	if o.StepsPerEpoch > 0 {
		stepInEpoch = r.step % o.StepsPerEpoch
	}
	for r.step < r.total {
		if err := ctx.Err(); err != nil {
			if ck.dir != "" {
				if serr := ck.save(r); serr != nil {
					return errors.Join(err, serr)
				}
			}
			return err
		}
		x, labels, n, err := feed.next()
		if errors.Is(err, io.EOF) {
			if stepInEpoch == 0 {
				// A source left at the end of an epoch (by an earlier
				// stage, such as Reconstruct) starts the next one; a
				// second end in a row means no full batch at all.
				if leadingEOF || r.step > startStep {
					return fmt.Errorf("distill: the training data yields no batch of %d; lower --batch", o.Batch)
				}
				leadingEOF = true
				continue
			}
			if err := r.endEpoch(ctx, data.Val, &ck); err != nil {
				return err
			}
			stepInEpoch = 0
			continue
		}
		if err != nil {
			return fmt.Errorf("distill: %w", err)
		}
		if n < o.Batch {
			continue // a short last batch is dropped; the epoch ends next
		}
		batch := engine.NewTensorF(x, inShape...)
		if err := r.tp.Forward(map[string]*engine.Tensor{r.tin.Name: batch}); err != nil {
			return fmt.Errorf("distill: teacher: %w", err)
		}
		loss, seeds, err := r.studentLoss(batch, labels)
		if err != nil {
			return err
		}
		if err := r.checkLoss(loss, &ck); err != nil {
			return err
		}
		// The loss of this step vouches for the update before it.
		if err := ck.flush(); err != nil {
			return err
		}
		if err := r.sp.Backward(seeds); err != nil {
			return fmt.Errorf("distill: backward: %w", err)
		}
		if o.SAMRho > 0 {
			if err := r.samGrad(batch, labels); err != nil {
				return err
			}
		}
		lr := r.sched.At(r.step)
		after := r.update(lr)
		after, err = r.checkParams(before, after, lr, &ck)
		if err != nil {
			return err
		}
		before = after
		r.step++
		stepInEpoch++
		seenImages += o.Batch
		r.rep.FinalLoss = loss
		if o.Progress != nil {
			epoch := 0
			if o.StepsPerEpoch > 0 {
				epoch = (r.step - 1) / o.StepsPerEpoch
			}
			o.Progress(Status{Step: r.step, Total: r.total, Epoch: epoch, Loss: r.lossMean, LR: lr})
		}
		if ck.dir != "" && r.step%every == 0 {
			if err := ck.hold(r); err != nil {
				return err
			}
		}
	}
	if stepInEpoch > 0 && data.Val != nil {
		if err := r.validate(ctx, data.Val); err != nil {
			return err
		}
	}
	r.rep.Steps = r.step
	r.rep.Seconds = time.Since(start).Seconds()
	if r.rep.Seconds > 0 {
		r.rep.ImagesPerS = float64(seenImages) / r.rep.Seconds
	}
	if ck.dir != "" {
		if err := ck.save(r); err != nil {
			return err
		}
	}
	return nil
}

// studentLoss runs the student on batch, after the teacher's forward
// pass on the same batch, and returns the loss with the seeds of its
// gradient for Backward.
func (r *trainer) studentLoss(batch *engine.Tensor, labels []int) (float64, map[string]*engine.Tensor, error) {
	if err := r.forwardStudent(batch); err != nil {
		return 0, nil, fmt.Errorf("distill: student: %w", err)
	}
	outName := r.in.Output
	s, t := r.sp.Value(outName), r.tp.Value(r.tin.Output)
	if r.logitGrad == nil {
		r.logitGrad = engine.NewTensor(s.Shape...)
	}
	classes := len(s.F) / r.opts.Batch
	seeds := map[string]*engine.Tensor{}
	loss, err := r.obj.evalLogits(&r.opts.Loss, s.F, t.F, labels, classes, r.logitGrad.F)
	if err != nil {
		return 0, nil, fmt.Errorf("distill: %w", err)
	}
	if r.obj.logits > 0 {
		seeds[outName] = r.logitGrad
	}
	fl, err := r.obj.eval(r.sp, r.tp, seeds, r.parallel)
	if err != nil {
		return 0, nil, fmt.Errorf("distill: %w", err)
	}
	return loss + fl, seeds, nil
}

// checkLoss stops the run on a NaN, infinite or exploding loss, keeping
// the last good checkpoint.
func (r *trainer) checkLoss(loss float64, ck *checkpointer) error {
	f := r.opts.DivergeFactor
	if f <= 0 {
		f = 50
	}
	bad := math.IsNaN(loss) || math.IsInf(loss, 0)
	if !bad && r.step > 0 && r.lossMean > 0 && loss > f*r.lossMean && loss > minDivergedLoss {
		bad = true
	}
	if bad {
		msg := fmt.Sprintf("at step %d: loss %g, running mean %g; lower the learning rate (--lr, now %g)", r.step+1, loss, r.lossMean, r.opts.LR)
		if ck.saved {
			msg += "; the last good checkpoint is kept in " + ck.dir
		}
		return fmt.Errorf("distill: %w %s", ErrDiverged, msg)
	}
	if r.step == 0 || r.lossMean == 0 {
		r.lossMean = loss
	} else {
		r.lossMean = 0.95*r.lossMean + 0.05*loss
	}
	return nil
}

// minDivergedLoss is the smallest loss the running-mean test calls an
// explosion. A student that starts almost exactly at the teacher (a loss
// near 0, as when one layer is replaced or the factors fit the
// calibration activations exactly) sees its first updates raise the loss
// by many times: from 1.5e-4 to 0.026 at step 2 was seen with one
// MobileNetV1 layer replaced. Losses below 1 (a KL of one nat at the
// distillation temperature, or a module error as large as the module's
// output) are still a working student, not divergence; exploding weights
// are caught by the parameter check whatever the loss.
const minDivergedLoss = 1.0

// checkParams stops the run when the update just made (at rate lr) left a
// parameter NaN or infinite, or grew the trained parameters' L2 norm from
// before to more than DivergeFactor·max(before, 1). A sane step changes
// the norm by a small fraction; this catches a learning rate that blows the
// weights up on the very first step, which the loss can only show one step
// later (or never, when the run ends first). after is the norm after the
// update (see update).
func (r *trainer) checkParams(before, after, lr float64, ck *checkpointer) (float64, error) {
	f := r.opts.DivergeFactor
	if f <= 0 {
		f = 50
	}
	if !math.IsNaN(after) && !math.IsInf(after, 0) && after <= f*max(before, 1) {
		return after, nil
	}
	msg := fmt.Sprintf("at step %d: the update at learning rate %g took the trained parameters' L2 norm from %g to %g; lower the learning rate (--lr, now %g)", r.step+1, lr, before, after, r.opts.LR)
	if ck.saved {
		msg += "; the last good checkpoint is kept in " + ck.dir
	}
	return after, fmt.Errorf("distill: %w %s", ErrDiverged, msg)
}

func (r *trainer) endEpoch(ctx context.Context, val dataset.Batches, ck *checkpointer) error {
	if val != nil {
		if err := r.validate(ctx, val); err != nil {
			return err
		}
	}
	if ck.dir != "" {
		return ck.save(r)
	}
	return nil
}

// validate measures agreement with the teacher (and accuracy where labels
// exist) on one pass of val, keeping the best parameters.
func (r *trainer) validate(ctx context.Context, val dataset.Batches) error {
	o := r.opts
	size := r.in.Channels * r.in.Height * r.in.Width
	x := make([]float32, o.Batch*size)
	labels := make([]int, o.Batch)
	var fid evaluate.Fidelity
	var acc evaluate.Accuracy
	inShape := []int{o.Batch, r.in.Channels, r.in.Height, r.in.Width}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := val.Next(x, labels)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("distill: validation: %w", err)
		}
		clear(x[n*size:]) // pad a short batch
		batch := engine.NewTensorF(x, inShape...)
		if err := r.tp.Forward(map[string]*engine.Tensor{r.tin.Name: batch}); err != nil {
			return err
		}
		if err := r.forwardStudent(batch); err != nil {
			return err
		}
		s, t := r.sp.Value(r.in.Output), r.tp.Value(r.tin.Output)
		classes := len(s.F) / o.Batch
		if err := fid.Add(t.F[:n*classes], s.F[:n*classes], classes); err != nil {
			return err
		}
		if err := acc.Add(s.F[:n*classes], classes, labels[:n]); err != nil {
			return err
		}
	}
	epoch := len(r.rep.Epochs)
	if o.StepsPerEpoch > 0 {
		epoch = (r.step - 1) / o.StepsPerEpoch
	}
	er := EpochResult{Epoch: epoch, Step: r.step, Loss: r.lossMean, Agreement: fid.Agreement()}
	if acc.Labelled > 0 {
		v := 100 * acc.Top1Rate()
		er.Top1 = &v
	}
	r.rep.Epochs = append(r.rep.Epochs, er)
	if r.best == nil || er.Agreement > r.bestAgr {
		r.bestAgr = er.Agreement
		r.rep.BestEpoch = len(r.rep.Epochs) - 1
		if r.best == nil {
			r.best = make([][]float32, len(r.names))
		}
		for i, n := range r.names {
			r.best[i] = append(r.best[i][:0], r.sp.Param(n).F...)
		}
	}
	return nil
}
