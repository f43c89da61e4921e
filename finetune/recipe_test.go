package finetune

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/lprconv/lprconv/dataset"
)

func TestRecipeFor(t *testing.T) {
	for _, tc := range []struct {
		images, steps, batch, recon int
		augment, loss, init         string
		lr, val, rankRef            float64
	}{
		{10, 6000, 10, 2000, RecipeAugment, "kd", "", 2e-3, 0, 24},
		{1000, 937, 64, 312, RecipeAugment, "kd", "", 2e-3, 0, 24},
		{4999, 937, 64, 312, RecipeAugment, "kd", "", 2e-3, 0, 24},
		{5000, 2811, 64, 0, RecipeAugment, "kd+ce", InitSequential, 5e-3, 0, 0},
		{19999, 2811, 64, 0, RecipeAugment, "kd+ce", InitSequential, 5e-3, 0, 0},
		{20000, 2811, 64, 0, RecipeAugment, "kd+ce", InitSequential, 5e-3, 0.1, 0},
		{60000, 2811, 64, 0, RecipeAugment, "kd+ce", InitSequential, 5e-3, 0.1, 0},
		{300000, 4687, 64, 0, RecipeAugment, "kd+ce", InitSequential, 5e-3, 0.1, 0},
	} {
		r := RecipeFor(tc.images)
		if r.Steps != tc.steps || r.Batch != tc.batch || r.ReconstructSteps != tc.recon || r.Augment != tc.augment || r.ValFraction != tc.val ||
			r.ImagesProcessed != r.Steps*r.Batch || r.Match != RecipeMatch || r.Temperature != 2 || r.Images != tc.images ||
			r.Loss != tc.loss || r.Init != tc.init || r.LR != tc.lr || r.RankLRRef != tc.rankRef || (tc.rankRef > 0) != (r.RankLRPower == 1) ||
			(tc.recon > 0) != (r.ReconstructLRBoost == RecipeReconstructLRBoost) || (tc.recon == 0 && r.ReconstructLRBoost != 0) {
			t.Errorf("RecipeFor(%d) = %+v; want %d steps of %d, augment %s, loss %s, init %q, lr %g, hold-out %v", tc.images, r, tc.steps, tc.batch, tc.augment, tc.loss, tc.init, tc.lr, tc.val)
		}
		// Below 5,000 images (the 1,000 included), no more compute
		// than one pass over 60,000.
		if tc.images < RecipeLargeFrom && r.ImagesProcessed > RecipeImages {
			t.Errorf("RecipeFor(%d) processes %d images", tc.images, r.ImagesProcessed)
		}
		// Every recipe applies, and its hold-out has at least 2,000 images.
		var o Options
		if err := r.Apply(&o, 4); err != nil {
			t.Errorf("RecipeFor(%d).Apply: %v", tc.images, err)
		}
		if o.Steps != r.Steps || o.Batch != r.Batch || o.Loss.Temperature != r.Temperature || FormatMatch(o.Match) != r.Match ||
			o.LR != r.LR || o.Loss.Kind.String() != r.Loss || o.RankLRRef != r.RankLRRef || o.RankLRPower != r.RankLRPower ||
			o.Augment.String() != r.Augment || (r.Augment != "none" && o.Augment.Seed != 4) {
			t.Errorf("RecipeFor(%d).Apply set %+v", tc.images, o)
		}
		if r.ValFraction > 0 && float64(tc.images)*r.ValFraction < RecipeMinHoldout {
			t.Errorf("RecipeFor(%d) holds out %v", tc.images, r.ValFraction)
		}
	}
}

func TestRecipePrintable(t *testing.T) {
	r := RecipeFor(1000)
	s := r.String()
	for _, want := range []string{"1000 images", "937 steps of 64", "59968 images processed", "first 312 reconstructing module outputs, modules of rank <= C/4 at 2.5 x lr)", "lr 0.002 (x (24/rank)^1 below rank 24)", "match " + RecipeMatch, "loss kd,", "augment " + RecipeAugment, "hold-out none"} {
		if !strings.Contains(s, want) {
			t.Errorf("String() = %q, lacks %q", s, want)
		}
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back Recipe
	if err := json.Unmarshal(b, &back); err != nil || back != r {
		t.Errorf("JSON %s does not round-trip: %+v, %v", b, back, err)
	}
	for _, key := range []string{`"steps":937`, `"loss":"kd"`, `"match":"` + RecipeMatch + `"`, `"augment":"` + RecipeAugment + `"`, `"val_fraction":0`, `"rank_lr_ref":24`, `"rank_lr_power":1`, `"reconstruct_lr_boost":2.5`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("JSON %s lacks %s", b, key)
		}
	}
	if _, err := dataset.ParseAugment(r.Augment); err != nil {
		t.Error(err)
	}
	big := RecipeFor(60000)
	if b, _ := json.Marshal(big); strings.Contains(string(b), "reconstruct_lr_boost") {
		t.Errorf("JSON %s has a reconstruction boost without a reconstruction stage", b)
	}
	if s := big.String(); !strings.Contains(s, "loss kd+ce") || !strings.Contains(s, "init sequential") || !strings.Contains(s, "lr 0.005,") {
		t.Errorf("String() = %q lacks the large-data loss, init or lr", s)
	}
	if b, _ := json.Marshal(big); !strings.Contains(string(b), `"init":"sequential"`) || !strings.Contains(string(b), `"loss":"kd+ce"`) {
		t.Errorf("JSON %s lacks the init or loss", b)
	}
	bad := big
	bad.Init = "nonsense"
	if err := bad.Apply(&Options{}, 1); err == nil {
		t.Error("unknown init applied")
	}
}
