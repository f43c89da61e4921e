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
	// Match is the objective (ParseMatch spelling), Augment the input
	// transforms (dataset.ParseAugment spelling).
	Match   string `json:"match"`
	Augment string `json:"augment"`
	// ValFraction is the hold-out used to keep the best epoch (0: none,
	// the last step's student is kept).
	ValFraction float64 `json:"val_fraction"`
}

// Recipe constants (RecipeFor documents how they were chosen).
const (
	recipeBatch = 64
	// recipeImages is the training compute of every recipe up to one
	// pass over 60,000 images: that many images are processed, however
	// few are given.
	recipeImages = 60000
	// recipeMinHoldout is the smallest hold-out worth selecting epochs
	// on.
	recipeMinHoldout  = 2000
	recipeValFraction = 0.1
)

// RecipeFor returns the fine-tuning recipe for numImages training images.
func RecipeFor(numImages int) Recipe {
	r := Recipe{Images: numImages, Batch: recipeBatch, LR: 2e-3, Temperature: 2, Match: "logits", Augment: "none"}
	processed := max(numImages, recipeImages)
	r.Steps = max(1, processed/r.Batch)
	r.ImagesProcessed = r.Steps * r.Batch
	if float64(numImages)*recipeValFraction >= recipeMinHoldout {
		r.ValFraction = recipeValFraction
	}
	return r
}

// String is the recipe on one line, as the compress summary prints it.
func (r Recipe) String() string {
	hold := "none (last step kept)"
	if r.ValFraction > 0 {
		hold = fmt.Sprintf("%.0f%% (best epoch by agreement)", 100*r.ValFraction)
	}
	return fmt.Sprintf("recipe for %d images: %d steps of %d (%d images processed), lr %g, match %s, temperature %g, augment %s, hold-out %s",
		r.Images, r.Steps, r.Batch, r.ImagesProcessed, r.LR, r.Match, r.Temperature, r.Augment, hold)
}

// Apply sets the recipe's schedule and objective on opts (Steps, Batch,
// LR, Loss temperature, Match, Augment with the given seed).
func (r Recipe) Apply(opts *Options, seed int64) error {
	m, err := ParseMatch(r.Match)
	if err != nil {
		return fmt.Errorf("recipe: %w", err)
	}
	a, err := dataset.ParseAugment(r.Augment)
	if err != nil {
		return fmt.Errorf("recipe: %w", err)
	}
	a.Seed = seed
	opts.Steps, opts.Batch, opts.LR = r.Steps, r.Batch, r.LR
	opts.Loss.Temperature = r.Temperature
	opts.Match, opts.Augment = m, a
	return nil
}
