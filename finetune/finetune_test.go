package finetune

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
	"github.com/lprconv/lprconv/svd"
)

var (
	fixtureMean = []float32{0.286}
	fixtureStd  = []float32{0.353}
)

func testdata(parts ...string) string {
	return filepath.Join(append([]string{"..", "testdata"}, parts...)...)
}

// lprFixture returns the MobileNetV1 fixture and its data-free LPR plan at
// rank ratio 1/4 with the diag residual.
func lprFixture(t *testing.T) (*onnxpb.ModelProto, *convert.Plan) {
	t.Helper()
	m, plan := fixturePlan(t, "mobilenetv1")
	if plan.Replaced() != 8 {
		t.Fatalf("plan replaces %d layers, want 8", plan.Replaced())
	}
	return m, plan
}

// fixturePlan returns a committed fixture model (testdata/models/NAME.onnx)
// and its data-free LPR plan at rank ratio 1/4 with the diag residual.
func fixturePlan(t *testing.T, name string) (*onnxpb.ModelProto, *convert.Plan) {
	t.Helper()
	m, err := onnxio.Load(testdata("models", name+".onnx"))
	if err != nil {
		t.Fatal(err)
	}
	kind, err := svd.ParseResidual("diag")
	if err != nil {
		t.Fatal(err)
	}
	plan, err := convert.NewPlan(context.Background(), m, svd.Policy{Ratio: 0.25}, kind, convert.PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return m, plan
}

// loader opens a committed image folder as 3x32x32 normalized batches.
func loader(t *testing.T, split string, limit, batch int, shuffle bool) *dataset.Loader {
	t.Helper()
	src, err := dataset.Open(testdata("images", split), dataset.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	idx := dataset.Indices(src.Len())
	if limit > 0 {
		idx = dataset.Random(idx, limit, 5)
	}
	pre := dataset.Preprocess{Channels: 3, Height: 32, Width: 32, Mean: fixtureMean, Std: fixtureStd}
	l, err := dataset.NewLoader(src, idx, pre, dataset.LoaderOptions{BatchSize: batch, Shuffle: shuffle, Reshuffle: true, Seed: 9, DropLast: shuffle})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestCalibrateMatchesDirectSum(t *testing.T) {
	m, _ := lprFixture(t)
	covs, err := Calibrate(context.Background(), m, []string{"input"}, loader(t, "test", 30, 8, false), 8, 20, 0)
	if err != nil {
		t.Fatal(err)
	}
	cv := covs["input"]
	if cv == nil || cv.C != 3 || cv.Pixels != 20*32*32 {
		t.Fatalf("covariance %+v", cv)
	}
	// Direct sum over the same 20 images.
	l := loader(t, "test", 30, 20, false)
	x := make([]float32, 20*3*32*32)
	labels := make([]int, 20)
	if _, err := l.Next(x, labels); err != nil {
		t.Fatal(err)
	}
	want := make([]float64, 9)
	for n := 0; n < 20; n++ {
		for p := 0; p < 1024; p++ {
			for i := 0; i < 3; i++ {
				for j := 0; j < 3; j++ {
					want[i*3+j] += float64(x[n*3072+i*1024+p]) * float64(x[n*3072+j*1024+p])
				}
			}
		}
	}
	for k := range want {
		if math.Abs(cv.Sum[k]-want[k]) > 1e-4*math.Abs(want[k]) {
			t.Errorf("cov[%d] = %v, want %v", k, cv.Sum[k], want[k])
		}
	}
}

func TestDataAwareInitLowersOutputError(t *testing.T) {
	m, plan := lprFixture(t)
	covs, err := Calibrate(context.Background(), m, CandidateInputs(plan), loader(t, "train", 200, 50, false), 50, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	inits, err := InitFromData(context.Background(), plan, covs, svd.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(inits) != 8 {
		t.Fatalf("%d layers initialized, want 8", len(inits))
	}
	better := 0
	for _, li := range inits {
		t.Logf("%s C=%d r=%d: output error data-free %.4f, data-aware %.4f", li.Name, li.Channels, li.Rank, li.DataFreeErr, li.DataAwareErr)
		if li.DataAwareErr > li.DataFreeErr+1e-9 && li.Kept == "data" {
			t.Errorf("%s kept worse data-aware factors", li.Name)
		}
		if li.DataAwareErr < 0.9*li.DataFreeErr {
			better++
		}
	}
	if better < 4 {
		t.Errorf("data-aware factors clearly better on only %d of 8 layers", better)
	}
}

// agreement measures the student's top-1 agreement with the teacher on the
// 500 committed test images.
func agreement(t *testing.T, teacher, student *onnxpb.ModelProto) float64 {
	t.Helper()
	res, err := evaluate.Run(context.Background(), []*onnxpb.ModelProto{teacher, student}, loader(t, "test", 0, 100, false), evaluate.Options{Batch: 100})
	if err != nil {
		t.Fatal(err)
	}
	return res.Fidelity[0].Agreement()
}

func distillOpts(steps int) Options {
	return Options{Steps: steps, StepsPerEpoch: 20, Batch: 50, LR: 2e-3, Loss: Loss{Kind: LossKD, Temperature: 2},
		Optimizer: OptimizerConfig{Kind: Adam}, Fingerprint: "test"}
}

func TestDistillRaisesAgreement(t *testing.T) {
	teacher, plan := lprFixture(t)
	student, err := convert.Apply(teacher, plan)
	if err != nil {
		t.Fatal(err)
	}
	before := agreement(t, teacher, student)
	train := loader(t, "train", 0, 50, true)
	opts := distillOpts(40)
	tuned, rep, err := Distill(context.Background(), teacher, student, Data{Train: train, Seek: train.Seek, Val: loader(t, "test", 100, 50, false)}, opts)
	if err != nil {
		t.Fatal(err)
	}
	after := agreement(t, teacher, tuned)
	t.Logf("agreement with teacher: %.3f before, %.3f after %d steps (%d trainable params, %.0f images/s)", before, after, rep.Steps, rep.Params, rep.ImagesPerS)
	if after < before+0.03 {
		t.Errorf("fine-tuning raised agreement from %.3f only to %.3f", before, after)
	}
	if rep.Steps != 40 || len(rep.Epochs) != 2 || len(rep.Trainable) != 8*3+8 {
		t.Errorf("report: steps %d, epochs %d, trainable %d", rep.Steps, len(rep.Epochs), len(rep.Trainable))
	}
	// The student given is not modified.
	if again := agreement(t, teacher, student); again != before {
		t.Errorf("Distill modified its input: agreement %.3f, was %.3f", again, before)
	}
}

func TestCheckpointResumeMatchesUninterrupted(t *testing.T) {
	teacher, plan := lprFixture(t)
	student, err := convert.Apply(teacher, plan)
	if err != nil {
		t.Fatal(err)
	}
	run := func(ctx context.Context, dir string, progress func(Status)) (*onnxpb.ModelProto, error) {
		train := loader(t, "train", 300, 50, true)
		o := distillOpts(9)
		o.StepsPerEpoch = 6
		o.CheckpointDir, o.CheckpointEvery, o.Progress = dir, 2, progress
		out, _, err := Distill(ctx, teacher, student, Data{Train: train, Seek: train.Seek}, o)
		return out, err
	}
	want, err := run(context.Background(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	_, err = run(ctx, dir, func(s Status) {
		if s.Step == 7 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %v", err)
	}
	resumedAt := -1
	got, err := run(context.Background(), dir, func(s Status) {
		if s.Resumed {
			resumedAt = s.Step
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if resumedAt != 7 {
		t.Errorf("resumed at step %d, want 7", resumedAt)
	}
	names := TrainableTensors(student, TrainLPR)
	for _, n := range names {
		a, b := initializer(t, want, n), initializer(t, got, n)
		for i := range a {
			if math.Abs(float64(a[i]-b[i])) > 1e-5*math.Max(1, math.Abs(float64(a[i]))) {
				t.Fatalf("%s[%d]: resumed %v, uninterrupted %v", n, i, b[i], a[i])
			}
		}
	}
	// A checkpoint of another run is refused, not silently resumed.
	train := loader(t, "train", 300, 50, true)
	o := distillOpts(9)
	o.CheckpointDir, o.Fingerprint = dir, "other"
	if _, _, err := Distill(context.Background(), teacher, student, Data{Train: train}, o); err == nil {
		t.Error("a checkpoint with another fingerprint was resumed")
	}
}

func initializer(t *testing.T, m *onnxpb.ModelProto, name string) []float32 {
	t.Helper()
	for _, ti := range m.Graph.Initializer {
		if ti.GetName() == name {
			v, err := onnxio.Float32s(ti)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("no initializer %q", name)
	return nil
}

func TestDivergenceStops(t *testing.T) {
	teacher, plan := lprFixture(t)
	student, err := convert.Apply(teacher, plan)
	if err != nil {
		t.Fatal(err)
	}
	o := distillOpts(30)
	// The learning rate ramps up to a value that cannot be stable, so the
	// loss explodes after a few good steps.
	o.LR = 50
	o.Optimizer = OptimizerConfig{Kind: SGD}
	o.WarmupSteps = 1000
	dir := t.TempDir()
	o.CheckpointDir, o.CheckpointEvery = dir, 1
	_, rep, err := Distill(context.Background(), teacher, student, Data{Train: loader(t, "train", 0, 50, true)}, o)
	if !errors.Is(err, ErrDiverged) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("err = %v, want ErrDiverged naming the checkpoint", err)
	}
	// The kept checkpoint holds finite values only.
	data, err2 := os.ReadFile(filepath.Join(dir, checkpointFile))
	if err2 != nil {
		t.Fatal(err2)
	}
	hl := int(binary.LittleEndian.Uint32(data))
	for off := 4 + hl; off+4 <= len(data); off += 4 {
		if v := math.Float32frombits(binary.LittleEndian.Uint32(data[off:])); math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatalf("checkpoint holds %v after divergence", v)
		}
	}
	if rep == nil || len(rep.Trainable) == 0 {
		t.Error("no report after divergence")
	}
}

func TestTrainableTensors(t *testing.T) {
	teacher, plan := lprFixture(t)
	student, err := convert.Apply(teacher, plan)
	if err != nil {
		t.Fatal(err)
	}
	lpr := TrainableTensors(student, TrainLPR)
	all := TrainableTensors(student, TrainAll)
	if len(lpr) != 32 || len(all) <= len(lpr) {
		t.Fatalf("lpr %d tensors, all %d", len(lpr), len(all))
	}
	if got := TrainableTensors(teacher, TrainLPR); len(got) != 0 {
		t.Errorf("the original model has LPR tensors %v", got)
	}
}

// TestDataAwareInitNonSquare fits the fixture's expanding 1x1 layers
// (C_out = 2 C_in) as well as its square ones.
func TestDataAwareInitNonSquare(t *testing.T) {
	m, err := onnxio.Load(testdata("models", "mobilenetv1.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	kind, _ := svd.ParseResidual("none")
	newPlan := func() *convert.Plan {
		plan, err := convert.NewPlan(context.Background(), m, svd.Policy{Ratio: 0.25}, kind,
			convert.PlanOptions{Candidates: convert.CandidateOptions{NonSquare: true}})
		if err != nil {
			t.Fatal(err)
		}
		return plan
	}
	plan := newPlan()
	free, err := convert.Apply(m, newPlan())
	if err != nil {
		t.Fatal(err)
	}
	nonSquare := 0
	for _, l := range plan.Layers {
		if l.Replace && l.InputChannels() != l.Channels {
			nonSquare++
		}
	}
	if nonSquare == 0 {
		t.Fatal("the plan replaces no non-square layer")
	}
	covs, err := Calibrate(context.Background(), m, CandidateInputs(plan), loader(t, "train", 100, 50, false), 50, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	inits, err := InitFromData(context.Background(), plan, covs, svd.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(inits) != plan.Replaced() {
		t.Fatalf("%d layers initialized, plan replaces %d", len(inits), plan.Replaced())
	}
	for _, li := range inits {
		if li.Kept == "data" && li.DataAwareErr > li.DataFreeErr+1e-9 {
			t.Errorf("%s kept worse data-aware factors", li.Name)
		}
	}
	student, err := convert.Apply(m, plan)
	if err != nil {
		t.Fatal(err)
	}
	a, b := agreement(t, m, free), agreement(t, m, student)
	t.Logf("agreement with the original: data-free %.3f, data-aware %.3f", a, b)
	if b <= a {
		t.Errorf("data-aware initialization did not raise agreement (%.3f, data-free %.3f)", b, a)
	}
}
