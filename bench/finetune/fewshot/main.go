// Command fewshot runs lprconv's compress flow (plan, data-aware
// initialization, distillation, write) with the few-image options of
// issue 10 exposed as flags, so that recipes can be compared without the
// command-line tool. Score the written models with ../orteval.
//
//	go run ./bench/finetune/fewshot -model testdata/models/mobilenetv1.onnx \
//	    -data testdata/images/train -o /tmp/fs/m.onnx -steps 450 \
//	    -match logits+penultimate -augment crop+flip -data-seed 1
//
// It prints one JSON object (the options, images processed, seconds).
// bench/finetune/fewshot.sh runs a list of such runs and scores them;
// -table FILE prints its results as a Markdown table (mean and range over
// data seeds).
// -recipe applies finetune.RecipeFor(number of images) first; explicitly
// given flags override it.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"time"

	"github.com/lprconv/lprconv/chanperm"
	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/dataset"
	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/finetune"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/svd"
	"github.com/lprconv/lprconv/svd/enginegemm"
)

type config struct {
	Model        string  `json:"model"`
	Data         string  `json:"data"`
	Split        string  `json:"split"`
	Fit          string  `json:"fit"`
	Limit        int     `json:"limit"`
	DataSeed     int64   `json:"data_seed"`
	RankRatio    float64 `json:"rank_ratio"`
	Multiple     int     `json:"multiple"`
	ChannelAlign int     `json:"channel_align"`
	Steps        int     `json:"steps"`
	Epochs       int     `json:"epochs"`
	Batch        int     `json:"batch"`
	LR           float64 `json:"lr"`
	Temperature  float64 `json:"temperature"`
	Match        string  `json:"match"`
	Augment      string  `json:"augment"`
	ValFraction  float64 `json:"val_fraction"`
	Calib        int     `json:"calib"`
	Threads      int     `json:"-"`
	Out          string  `json:"out"`
	Recipe       bool    `json:"recipe"`
	Train        string  `json:"train"`
	PreSteps     int     `json:"pre_steps,omitempty"`
	Loss         string  `json:"loss,omitempty"`
	CEWeight     float64 `json:"ce_weight,omitempty"`
	Init         string  `json:"init,omitempty"`
	InitOnly     bool    `json:"init_only,omitempty"`
	Anneal       string  `json:"anneal,omitempty"`
	AnnealFrac   float64 `json:"anneal_frac,omitempty"`
	L2SP         float64 `json:"l2sp,omitempty"`
	L2SPAnchor   string  `json:"l2sp_anchor,omitempty"`
	Freeze       string  `json:"freeze,omitempty"`
	WeightDecay  float64 `json:"weight_decay,omitempty"`
	SAMRho       float64 `json:"sam_rho,omitempty"`
	PreLR        float64 `json:"pre_lr,omitempty"`
	PreBoost     float64 `json:"pre_boost,omitempty"`
	Boost        float64 `json:"boost,omitempty"`
	PreAugment   string  `json:"pre_augment,omitempty"`
	RankLRRef    float64 `json:"rank_lr_ref,omitempty"`
	RankLRPower  float64 `json:"rank_lr_power,omitempty"`
	Beta1        float64 `json:"beta1,omitempty"`
	Beta2        float64 `json:"beta2,omitempty"`
	MinLRRatio   float64 `json:"min_lr_ratio,omitempty"`
	Warmup       int     `json:"warmup,omitempty"`
	Balance      float64 `json:"balance,omitempty"`
	Permute      bool    `json:"permute,omitempty"`
	// Prototype describes, in a recorded result, an option of a prototype
	// that was measured and not kept (so no flag sets it).
	Prototype   string `json:"prototype,omitempty"`
	Weigh       string `json:"weigh,omitempty"`
	WeighImages int    `json:"weigh_images,omitempty"`
}

type result struct {
	config
	TrainImages     int              `json:"train_images"`
	ValImages       int              `json:"val_images"`
	Steps           int              `json:"steps_run"`
	ImagesProcessed int              `json:"images_processed"`
	TrainSeconds    float64          `json:"train_seconds"`
	TotalSeconds    float64          `json:"total_seconds"`
	RecipeUsed      *finetune.Recipe `json:"recipe_used,omitempty"`
	BestEpoch       int              `json:"best_epoch"`
}

func main() {
	var c config
	flag.StringVar(&c.Model, "model", "testdata/models/mobilenetv1.onnx", "ONNX model to compress")
	flag.StringVar(&c.Data, "data", "testdata/images/train", "training images")
	flag.StringVar(&c.Split, "split", "train", "IDX split")
	flag.StringVar(&c.Fit, "fit", "resize", "resize, crop or pad")
	flag.IntVar(&c.Limit, "limit", 0, "random subset of N images (chosen by -data-seed)")
	flag.Int64Var(&c.DataSeed, "data-seed", 1, "seed of the subset, the split, the order and the augmentation")
	flag.Float64Var(&c.RankRatio, "rank-ratio", 0.25, "rank ratio")
	flag.IntVar(&c.Multiple, "multiple", 16, "round ranks to a multiple")
	flag.IntVar(&c.ChannelAlign, "channel-align", 4, "keep layers whose channel count is not a multiple")
	flag.IntVar(&c.Steps, "steps", 0, "training steps (0: -epochs)")
	flag.IntVar(&c.Epochs, "epochs", 1, "epochs when -steps is 0")
	flag.IntVar(&c.Batch, "batch", 64, "batch size")
	flag.Float64Var(&c.LR, "lr", 2e-3, "peak learning rate")
	flag.Float64Var(&c.Temperature, "temperature", 2, "KD temperature")
	flag.StringVar(&c.Match, "match", "logits", "finetune.ParseMatch objective")
	flag.StringVar(&c.Augment, "augment", "none", "dataset.ParseAugment transforms")
	flag.Float64Var(&c.ValFraction, "val-fraction", 0, "hold-out fraction for best-epoch selection")
	flag.IntVar(&c.Calib, "calib", 512, "calibration images")
	flag.IntVar(&c.Threads, "threads", 0, "threads")
	flag.StringVar(&c.Out, "o", "", "output model")
	flag.StringVar(&c.Train, "train", "lpr", "trainable tensors: lpr or all")
	flag.IntVar(&c.PreSteps, "pre-steps", 0, "first stage: `N` steps of finetune.Reconstruct (module outputs only), counted in -steps")
	flag.StringVar(&c.Loss, "loss", "kd", "logit loss: kd, kd+ce (labels where known) or mse")
	flag.Float64Var(&c.CEWeight, "ce-weight", 0, "weight of cross-entropy in kd+ce (0: finetune's default)")
	flag.StringVar(&c.Init, "init", "data", "factor initialization: data (finetune.InitFromData) or seq (then finetune.SequentialInit)")
	flag.BoolVar(&c.InitOnly, "init-only", false, "write the initialized student without training")
	flag.BoolVar(&c.Recipe, "recipe", false, "start from finetune.RecipeFor(images)")
	flag.StringVar(&c.Anneal, "anneal", "", "rank ratios `R1,R2,...` of stages trained before -rank-ratio; each stage starts from the data-aware factorization of the previous stage's trained weights")
	flag.Float64Var(&c.AnnealFrac, "anneal-frac", 0.5, "fraction of the distillation steps spent in the -anneal stages (equal shares)")
	flag.Float64Var(&c.L2SP, "l2sp", 0, "L2-SP penalty `λ`·Σ(θ−θ₀)² on the trained tensors (finetune.Options.L2SP), in every stage")
	flag.StringVar(&c.L2SPAnchor, "l2sp-anchor", "init", "θ₀ of -l2sp: init (the data-aware initialization, for every stage) or stage (each stage's starting point)")
	flag.StringVar(&c.Freeze, "freeze", "", "tensors not trained, finetune.ParseFreeze: v (lpr_a.weight), res (lpr_res.weight) or name substrings, comma-separated")
	flag.Float64Var(&c.WeightDecay, "wd", 0, "AdamW decoupled weight decay (towards 0)")
	flag.IntVar(&c.WeighImages, "weigh-images", 0, "images for -weigh fisher (0: -calib's)")
	flag.StringVar(&c.Weigh, "weigh", "", "channel weights of the module-output terms: fisher (finetune.ChannelFisher on the calibration images) or none (default: the recipe's with -recipe, else none)")
	flag.Float64Var(&c.SAMRho, "sam", 0, "sharpness-aware minimization radius `ρ` (finetune.Options.SAMRho; two passes per step), in every stage")
	flag.Float64Var(&c.PreBoost, "pre-boost", 0, "in the -pre-steps stage, multiply the lr of the modules of rank <= C/4 by `F` (finetune.Options.LowRankLRBoost; default: the recipe's with -recipe)")
	flag.StringVar(&c.PreAugment, "pre-augment", "", "augmentation of the -pre-steps stage only")
	flag.Float64Var(&c.Boost, "boost", 0, "in distillation, multiply the lr of the modules of rank <= C/4 by `F` (finetune.Options.LowRankLRBoost)")
	flag.Float64Var(&c.PreLR, "pre-lr", 0, "peak learning rate of the -pre-steps stage (0: -lr)")
	flag.Float64Var(&c.RankLRRef, "rank-lr", 0, "scale the learning rate of each LPR module of rank below `R0` by (R0/rank)^-rank-lr-power (finetune.Options.RankLRRef), in every stage")
	flag.Float64Var(&c.RankLRPower, "rank-lr-power", 1, "power of -rank-lr")
	flag.Float64Var(&c.Beta1, "beta1", 0, "Adam β1 (0: finetune's default, 0.9)")
	flag.Float64Var(&c.Beta2, "beta2", 0, "Adam β2 (0: finetune's default, 0.999)")
	flag.Float64Var(&c.MinLRRatio, "min-lr-ratio", 0, "the cosine decays to this fraction of the peak learning rate")
	flag.IntVar(&c.Warmup, "warmup", 0, "linear warm-up steps of each stage (0: finetune's default, 5% of the stage)")
	flag.Float64Var(&c.Balance, "balance", 0, "rescale each rank component k of the initial factors, B[:,k]·s and A[k,:]/s with s = (‖A[k,:]‖/‖B[:,k]‖)^(`P`/2): 1 equalizes the norms, 0 keeps them")
	flag.BoolVar(&c.Permute, "permute", false, "relabel hidden channels first (chanperm.Permute) so that each layer's diag residual pairs the largest remainder entries")
	table := flag.String("table", "", "print the Markdown table of fewshot.sh's results `FILE` and exit")
	flag.Parse()
	if *table != "" {
		if err := printTable(os.Stdout, *table); err != nil {
			fmt.Fprintln(os.Stderr, "fewshot:", err)
			os.Exit(1)
		}
		return
	}
	if c.Out == "" {
		fmt.Fprintln(os.Stderr, "fewshot: give -o OUT")
		os.Exit(2)
	}
	res, err := run(context.Background(), c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fewshot:", err)
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(res); err != nil {
		fmt.Fprintln(os.Stderr, "fewshot:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, c config) (*result, error) {
	start := time.Now()
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	m, err := onnxio.Load(c.Model)
	if err != nil {
		return nil, err
	}
	if c.Permute {
		rank := func(ch int) int {
			r, _, _ := svd.Policy{Ratio: c.RankRatio, Multiple: c.Multiple}.Choose(ch, ch, nil)
			return r
		}
		if m, _, err = chanperm.Permute(ctx, m, chanperm.Options{Rank: rank, SVD: svd.Options{Seed: 1}}); err != nil {
			return nil, err
		}
	}
	in, err := evaluate.ModelInput(m)
	if err != nil {
		return nil, err
	}
	fit, err := dataset.ParseFit(c.Fit)
	if err != nil {
		return nil, err
	}
	pre := dataset.Preprocess{Channels: in.Channels, Height: in.Height, Width: in.Width, Fit: fit, Mean: []float32{0.286}, Std: []float32{0.353}}
	src, err := dataset.Open(c.Data, dataset.OpenOptions{Split: c.Split})
	if err != nil {
		return nil, err
	}
	defer src.Close()
	idx := dataset.Indices(src.Len())
	if c.Limit > 0 {
		idx = dataset.Random(idx, c.Limit, c.DataSeed)
	}
	res := &result{}
	if c.Recipe {
		rc := finetune.RecipeFor(len(idx))
		res.RecipeUsed = &rc
		if !set["steps"] {
			c.Steps = rc.Steps
		}
		if !set["temperature"] {
			c.Temperature = rc.Temperature
		}
		if !set["match"] {
			c.Match = rc.Match
		}
		if !set["augment"] {
			c.Augment = rc.Augment
		}
		if !set["val-fraction"] {
			c.ValFraction = rc.ValFraction
		}
		if !set["weigh"] {
			c.Weigh = rc.Weigh
		}
		if !set["pre-steps"] {
			c.PreSteps = rc.ReconstructSteps
		}
		if !set["pre-boost"] {
			c.PreBoost = rc.ReconstructLRBoost
		}
		if !set["lr"] {
			c.LR = rc.LR
		}
		if !set["loss"] {
			c.Loss = rc.Loss
		}
		if !set["init"] && rc.Init == finetune.InitSequential {
			c.Init = "seq"
		}
		if !set["rank-lr"] && !set["rank-lr-power"] {
			c.RankLRRef, c.RankLRPower = rc.RankLRRef, rc.RankLRPower
		}
	}
	lossKind, err := finetune.ParseLoss(c.Loss)
	if err != nil {
		return nil, err
	}
	match, err := finetune.ParseMatch(c.Match)
	if err != nil {
		return nil, err
	}
	aug, err := dataset.ParseAugment(c.Augment)
	if err != nil {
		return nil, err
	}
	aug.Seed = c.DataSeed
	trainSet, err := finetune.ParseTrainSet(c.Train)
	if err != nil {
		return nil, err
	}
	freeze, err := finetune.ParseFreeze(c.Freeze)
	if err != nil {
		return nil, err
	}
	if c.L2SPAnchor != "init" && c.L2SPAnchor != "stage" {
		return nil, fmt.Errorf("-l2sp-anchor %q: want init or stage", c.L2SPAnchor)
	}
	train, val := idx, []int(nil)
	if c.ValFraction > 0 {
		if train, val, err = dataset.SplitFraction(idx, c.ValFraction, c.DataSeed); err != nil {
			return nil, err
		}
	}
	loader := func(idx []int, shuffle bool) (*dataset.Loader, error) {
		return dataset.NewLoader(src, idx, pre, dataset.LoaderOptions{BatchSize: c.Batch, Shuffle: shuffle, Reshuffle: shuffle,
			Seed: c.DataSeed, DropLast: shuffle, Workers: 2, Prefetch: 2})
	}
	so := svd.Options{Seed: 1, Sgemm: enginegemm.New(0)}
	ratios, err := parseRatios(c.Anneal)
	if err != nil {
		return nil, err
	}
	ratios = append(ratios, c.RankRatio)
	newPlan := func(ratio float64) (*convert.Plan, error) {
		return convert.NewPlan(ctx, m, svd.Policy{Ratio: ratio, Multiple: c.Multiple}, svd.KindDiag,
			convert.PlanOptions{SVD: so, ChannelAlign: c.ChannelAlign})
	}
	plan, err := newPlan(ratios[0])
	if err != nil {
		return nil, err
	}
	n := min(c.Calib, len(train))
	// as the pipeline: calibration images drawn at random for the seed
	calibSet := dataset.Random(train, n, c.DataSeed)
	cl, err := loader(calibSet, false)
	if err != nil {
		return nil, err
	}
	covs, err := finetune.Calibrate(ctx, m, finetune.CandidateInputs(plan), cl, c.Batch, n, c.Threads)
	cl.Close()
	if err != nil {
		return nil, err
	}
	if _, err := finetune.InitFromData(ctx, plan, covs, so); err != nil {
		return nil, err
	}
	if c.Init == "seq" {
		cl, err := loader(calibSet, false)
		if err != nil {
			return nil, err
		}
		_, err = finetune.SequentialInitFrom(ctx, m, plan, cl, n, c.Batch, c.Threads, so)
		cl.Close()
		if err != nil {
			return nil, err
		}
	}
	if c.Balance != 0 {
		balance(plan, c.Balance)
	}
	student, err := convert.Apply(m, plan)
	if err != nil {
		return nil, err
	}
	if c.InitOnly {
		res.config = c
		return res, onnxio.Save(c.Out, student, onnxio.SaveOptions{})
	}
	tl, err := loader(train, true)
	if err != nil {
		return nil, err
	}
	defer tl.Close()
	data := finetune.Data{Train: tl, Seek: tl.Seek}
	if len(val) > 0 {
		vl, err := loader(val, false)
		if err != nil {
			return nil, err
		}
		defer vl.Close()
		data.Val = vl
	}
	opts := finetune.Options{Epochs: c.Epochs, Steps: c.Steps, StepsPerEpoch: tl.Batches(), Batch: c.Batch, LR: c.LR,
		Threads: c.Threads, Optimizer: finetune.OptimizerConfig{Kind: finetune.Adam, WeightDecay: c.WeightDecay, Beta1: c.Beta1, Beta2: c.Beta2},
		MinLRRatio: c.MinLRRatio, WarmupSteps: c.Warmup,
		Loss: finetune.Loss{Kind: lossKind, Temperature: c.Temperature, CEWeight: c.CEWeight}, Match: match, Augment: aug, Train: trainSet,
		Freeze: freeze, L2SP: c.L2SP, SAMRho: c.SAMRho}
	if c.RankLRRef > 0 {
		opts.RankLRRef, opts.RankLRPower = c.RankLRRef, c.RankLRPower
	}
	if c.L2SP > 0 && c.L2SPAnchor == "init" {
		opts.L2SPAnchor = student
	}
	if c.Weigh == finetune.WeighFisher {
		n, imgs := n, calibSet
		if c.WeighImages > 0 {
			n = min(c.WeighImages, len(train))
			imgs = dataset.Random(train, n, c.DataSeed)
		}
		// as pipeline/weigh.go: batches of at most 16 images
		fb := min(c.Batch, 16)
		n = n / fb * fb
		fl, err := dataset.NewLoader(src, dataset.First(imgs, n), pre, dataset.LoaderOptions{BatchSize: fb, Seed: c.DataSeed, Workers: 2, Prefetch: 2})
		if err != nil {
			return nil, err
		}
		names, err := finetune.MatchedValues(m, student, match)
		names = finetune.FisherValues(plan, names)
		if err == nil {
			opts.ChannelWeights, err = finetune.ChannelFisher(ctx, m, names, fl, finetune.FisherOptions{Batch: fb, Batches: n / fb, Seed: uint64(c.DataSeed), Threads: c.Threads})
		}
		fl.Close()
		if err != nil {
			return nil, err
		}
	} else if c.Weigh != "" && c.Weigh != "none" {
		return nil, fmt.Errorf("-weigh %q: want fisher or none", c.Weigh)
	}
	preSteps, preSecs := 0, 0.0
	if c.PreSteps > 0 {
		pl, err := loader(train, true)
		if err != nil {
			return nil, err
		}
		defer pl.Close()
		var prep *finetune.Report
		po := opts
		if c.PreLR > 0 {
			po.LR = c.PreLR
		}
		po.LowRankLRBoost = c.PreBoost
		if c.PreAugment != "" {
			if po.Augment, err = dataset.ParseAugment(c.PreAugment); err != nil {
				return nil, err
			}
			po.Augment.Seed = c.DataSeed
		}
		if student, prep, err = finetune.Reconstruct(ctx, m, student, pl, po, c.PreSteps); err != nil {
			return nil, err
		}
		preSteps, preSecs = prep.Steps, prep.Seconds
		opts.Steps -= c.PreSteps
	}
	total := opts.Steps
	share := 0
	if len(ratios) > 1 {
		share = int(float64(total) * c.AnnealFrac / float64(len(ratios)-1))
	}
	for k := 0; k < len(ratios)-1; k++ {
		st := opts
		st.Steps = share
		trained, rep, err := finetune.Distill(ctx, m, student, data, st)
		if err != nil {
			return nil, err
		}
		preSteps += rep.Steps
		preSecs += rep.Seconds
		opts.Steps -= rep.Steps
		next, err := newPlan(ratios[k+1])
		if err != nil {
			return nil, err
		}
		if err := takeTrained(trained, next); err != nil {
			return nil, err
		}
		if _, err := finetune.InitFromData(ctx, next, covs, so); err != nil {
			return nil, err
		}
		if student, err = convert.Apply(m, next); err != nil {
			return nil, err
		}
	}
	opts.LowRankLRBoost = c.Boost
	tuned, rep, err := finetune.Distill(ctx, m, student, data, opts)
	if err != nil {
		return nil, err
	}
	rep.Steps += preSteps
	rep.Seconds += preSecs
	if err := onnxio.Save(c.Out, tuned, onnxio.SaveOptions{}); err != nil {
		return nil, err
	}
	res.config = c
	res.TrainImages, res.ValImages = len(train), len(val)
	res.Steps = rep.Steps
	res.ImagesProcessed = rep.Steps * c.Batch
	res.TrainSeconds = rep.Seconds
	res.TotalSeconds = time.Since(start).Seconds()
	res.BestEpoch = rep.BestEpoch
	return res, nil
}

// balance rescales every replaced layer's rank components so that
// ‖B[:,k]‖/‖A[k,:]‖ moves towards 1 by the power p (1: equal norms); B·A is
// unchanged up to round-off.
func balance(plan *convert.Plan, p float64) {
	for i := range plan.Layers {
		f := plan.Layers[i].Factors
		if !plan.Layers[i].Replace || f == nil {
			continue
		}
		for k := 0; k < f.Rank; k++ {
			var na, nb float64
			for j := 0; j < f.In; j++ {
				v := float64(f.A[k*f.In+j])
				na += v * v
			}
			for o := 0; o < f.Out; o++ {
				v := float64(f.B[o*f.Rank+k])
				nb += v * v
			}
			if na == 0 || nb == 0 {
				continue
			}
			s := math.Pow(math.Sqrt(na)/math.Sqrt(nb), p/2)
			for j := 0; j < f.In; j++ {
				f.A[k*f.In+j] = float32(float64(f.A[k*f.In+j]) / s)
			}
			for o := 0; o < f.Out; o++ {
				f.B[o*f.Rank+k] = float32(float64(f.B[o*f.Rank+k]) * s)
			}
		}
	}
}
