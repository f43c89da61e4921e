package finetune

import (
	"fmt"

	"github.com/lprconv/lprconv/dataset"
)

// Recipe is the fine-tuning schedule chosen for an amount of data (see
// RecipeFor): what a user who gives only --data gets.
type Recipe struct {
	// Images is the number of images the recipe was chosen for.
	Images int `json:"images"`
	// Steps of Batch images each; ImagesProcessed = Steps·Batch.
	Steps           int `json:"steps"`
	Batch           int `json:"batch"`
	ImagesProcessed int `json:"images_processed"`
	// LR is the peak learning rate, Temperature the KD temperature.
	LR          float64 `json:"lr"`
	Temperature float64 `json:"temperature"`
	// Loss is the logit loss (ParseLoss spelling): kd, or kd+ce, which
	// adds cross-entropy with the labels where the data has them (and is
	// kd where it has none).
	Loss string `json:"loss"`
	// Init is the factor initialization after the data-aware one:
	// "sequential" refits every replaced layer in order (SequentialInit),
	// "" keeps the data-aware factors.
	Init string `json:"init,omitempty"`
	// Match is the objective (ParseMatch spelling), Augment the input
	// transforms (dataset.ParseAugment spelling).
	Match   string `json:"match"`
	Augment string `json:"augment"`
	// ValFraction is the hold-out used to keep the best epoch (0: none,
	// the last step's student is kept).
	ValFraction float64 `json:"val_fraction"`
	// ReconstructSteps of the Steps are spent first in Reconstruct
	// (module outputs only); the rest distill with Match.
	ReconstructSteps int `json:"reconstruct_steps"`
	// ReconstructLRBoost multiplies, in the Reconstruct stage only, the
	// learning rate of the LPR modules whose rank keeps at most a quarter
	// of their channels (Options.LowRankLRBoost; 0: none).
	ReconstructLRBoost float64 `json:"reconstruct_lr_boost,omitempty"`
	// RankLRRef and RankLRPower scale the learning rate of the LPR
	// modules of rank below RankLRRef (Options.RankLRRef; 0: none).
	RankLRRef   float64 `json:"rank_lr_ref,omitempty"`
	RankLRPower float64 `json:"rank_lr_power,omitempty"`
	// Weigh names the channel weights of the matched feature values:
	// WeighFisher (ChannelFisher on the calibration images, set as
	// Options.ChannelWeights by the caller) or "" (none).
	Weigh string `json:"weigh,omitempty"`
}

// Recipe rules (RecipeFor documents the measurements behind them).
const (
	recipeBatch = 64
	// RecipeImages is the training compute of every recipe for up to
	// that many images: Steps·Batch ≈ RecipeImages images are processed
	// however few are given (more data: one pass).
	RecipeImages = 60000
	// RecipeMinHoldout is the smallest hold-out worth selecting epochs on:
	// at an agreement near 95%, its standard error
	// sqrt(0.95·0.05/2000) ≈ 0.5 point is as large as the differences
	// between the last epochs of a run, so a smaller hold-out picks by
	// noise and only takes training images away.
	RecipeMinHoldout = 2000
	// RecipeValFraction is the hold-out once it is large enough.
	RecipeValFraction = 0.1
	// RecipeMatch and RecipeAugment are the objective and input
	// transforms of every recipe. Augmentation is off: at 1,000 and 5,000
	// images with module matching it gained nothing on the test set
	// (bench/finetune/RESULTS.md), though it raises agreement when a
	// few hundred images are revisited for a short run (finetune tests).
	RecipeMatch   = "logits+modules"
	RecipeAugment = "none"
	// RecipeReconstructBelow is the number of images under which a third
	// of the steps go to the Reconstruct stage first.
	RecipeReconstructBelow = 5000
	// RecipeLargeFrom is the number of images from which the recipe
	// trains RecipeLargePasses times longer (RecipeLargePasses·RecipeImages
	// images processed, or one pass when there are more), with labels
	// (kd+ce), lr RecipeLargeLR and SequentialInit.
	RecipeLargeFrom   = 5000
	RecipeLargePasses = 3
	RecipeLargeLR     = 5e-3
	// InitSequential is the Recipe.Init that runs SequentialInit.
	InitSequential = "sequential"
	// WeighFisher is the Recipe.Weigh of channel weights from
	// ChannelFisher: every recipe's.
	WeighFisher = "fisher"
	// RecipeRankLRRef and RecipeRankLRPower: below RecipeLargeFrom
	// images, a module of rank r < 24 learns at LR·24/r (rank 6: 4·LR).
	RecipeRankLRRef   = 24
	RecipeRankLRPower = 1
	// RecipeReconstructLRBoost: with a Reconstruct stage, the modules of
	// rank r ≤ C/4 (FisherMaxRankFraction) reconstruct at 2.5 times the
	// learning rate.
	RecipeReconstructLRBoost = 2.5
)

// RecipeFor returns the fine-tuning recipe for numImages training images
// (before any hold-out):
//
//   - Below RecipeLargeFrom (5,000) images: RecipeImages/Batch steps (≈
//     one pass over 60,000 images, 937), LR 2e-3, loss kd (label-free),
//     and a third of the steps in Reconstruct first. Few images are
//     revisited many times rather than trained for a fixed epoch count.
//     Modules of rank r below RecipeRankLRRef (24) learn at LR·24/r in
//     both stages: a factor entry of a low-rank module moves its output
//     less, and at 1,000 images this took ShuffleNetV2 with exact ranks
//     (r = 6, 12, 24) from 87.52 to 87.84 over 3 seeds, MobileNetV1 and
//     ShuffleNetV2 with default ranks (r ≥ 16) unchanged within 0.02.
//     In the Reconstruct stage the modules of rank r ≤ C/4 learn
//     RecipeReconstructLRBoost (2.5) times faster still: at 1,000 images
//     ShuffleNetV2 with exact ranks (every module r = C/4) +0.08 over 3
//     seeds (+0.17 when calibrated on the first 512 images), MobileNetV1
//     (r = C/4) −0.02. ShuffleNetV2 with default ranks (r = 2C/3, C/3) has
//     no such module and is unchanged; boosting all of its modules cost it
//     0.09.
//   - From 5,000 images: RecipeLargePasses times the steps (2,811 of 64:
//     180,000 images processed), one pass over the data where that is
//     more; LR 5e-3; loss kd+ce (cross-entropy with the labels where the
//     data has them, weight 0.5); SequentialInit after the data-aware
//     initialization.
//   - Batch 64 (all images when fewer), Adam, temperature 2.
//   - Match RecipeMatch: KD on the logits plus the normalized error of
//     every LPR module's output (weight 1 in total), each channel of a
//     module of rank r ≤ C/4 weighed by the original's Fisher information
//     (Weigh WeighFisher, see ChannelFisher and FisherValues): at 1,000
//     images ShuffleNetV2 with exact ranks 87.84 -> 87.94 to 88.09 over 3
//     seeds (depending on the images the weights are measured on), and
//     MobileNetV1 89.17 -> 89.16 to 89.28; at 5,000 and 60,000 images
//     within the seed range or better.
//   - Augment RecipeAugment (none).
//   - Hold-out RecipeValFraction with best-epoch selection only when it
//     holds at least RecipeMinHoldout images (20,000 images and more).
//
// bench/finetune/RESULTS.md ("Few images") has the measurements.
func RecipeFor(numImages int) Recipe {
	n := max(numImages, 1)
	r := Recipe{Images: numImages, Batch: min(recipeBatch, n), LR: 2e-3, Temperature: 2, Loss: LossKD.String(), Match: RecipeMatch, Augment: RecipeAugment, Weigh: WeighFisher}
	r.Steps = max(n, RecipeImages) / r.Batch
	if numImages >= RecipeLargeFrom {
		r.Steps = max(n/r.Batch, RecipeLargePasses*(RecipeImages/r.Batch))
		r.LR, r.Loss, r.Init = RecipeLargeLR, LossKDCE.String(), InitSequential
	}
	r.ImagesProcessed = r.Steps * r.Batch
	if numImages < RecipeReconstructBelow {
		r.ReconstructSteps = r.Steps / 3
		r.ReconstructLRBoost = RecipeReconstructLRBoost
	}
	if numImages < RecipeLargeFrom {
		r.RankLRRef, r.RankLRPower = RecipeRankLRRef, RecipeRankLRPower
	}
	if float64(numImages)*RecipeValFraction >= RecipeMinHoldout {
		r.ValFraction = RecipeValFraction
	}
	return r
}

// String is the recipe on one line, as the compress summary prints it.
func (r Recipe) String() string {
	hold := "none (last step kept)"
	if r.ValFraction > 0 {
		hold = fmt.Sprintf("%.0f%% (best epoch by agreement)", 100*r.ValFraction)
	}
	recon := ""
	if r.ReconstructSteps > 0 {
		recon = fmt.Sprintf(" (the first %d reconstructing module outputs", r.ReconstructSteps)
		if r.ReconstructLRBoost > 0 && r.ReconstructLRBoost != 1 {
			recon += fmt.Sprintf(", modules of rank <= C/4 at %g x lr", r.ReconstructLRBoost)
		}
		recon += ")"
	}
	match := r.Match
	if r.Weigh == WeighFisher {
		match += " (channels weighted by the original's Fisher information)"
	}
	init := ""
	if r.Init != "" {
		init = ", init " + r.Init
	}
	rankLR := ""
	if r.RankLRRef > 0 {
		rankLR = fmt.Sprintf(" (x (%g/rank)^%g below rank %g)", r.RankLRRef, r.RankLRPower, r.RankLRRef)
	}
	return fmt.Sprintf("recipe for %d images: %d steps of %d%s (%d images processed), lr %g%s, loss %s, match %s, temperature %g, augment %s%s, hold-out %s",
		r.Images, r.Steps, r.Batch, recon, r.ImagesProcessed, r.LR, rankLR, r.Loss, match, r.Temperature, r.Augment, init, hold)
}

// Apply sets the recipe's schedule and objective on opts (Steps, Batch,
// LR and its rank scaling, Loss kind and temperature, Match, Augment with
// the given seed).
// Steps is the whole run: the caller runs Reconstruct for
// ReconstructSteps first (with Options.LowRankLRBoost set to
// ReconstructLRBoost) and then Distill for the remaining Steps −
// ReconstructSteps, and SequentialInit before both when Init says so.
func (r Recipe) Apply(opts *Options, seed int64) error {
	m, err := ParseMatch(r.Match)
	if err != nil {
		return fmt.Errorf("recipe: %w", err)
	}
	a, err := dataset.ParseAugment(r.Augment)
	if err != nil {
		return fmt.Errorf("recipe: %w", err)
	}
	lk, err := ParseLoss(r.Loss)
	if err != nil {
		return fmt.Errorf("recipe: %w", err)
	}
	if r.Init != "" && r.Init != InitSequential {
		return fmt.Errorf("recipe: unknown init %q (want %q or none)", r.Init, InitSequential)
	}
	if r.Weigh != "" && r.Weigh != WeighFisher {
		return fmt.Errorf("recipe: unknown channel weights %q (want %q or none)", r.Weigh, WeighFisher)
	}
	a.Seed = seed
	opts.Steps, opts.Batch, opts.LR = r.Steps, r.Batch, r.LR
	opts.Loss.Kind, opts.Loss.Temperature = lk, r.Temperature
	opts.Match, opts.Augment = m, a
	opts.RankLRRef, opts.RankLRPower = r.RankLRRef, r.RankLRPower
	return nil
}
