package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
)

// row is one line of fewshot.sh's results.jsonl.
type row struct {
	ID   string  `json:"id"`
	Top1 float64 `json:"top1"`
	result
}

// originals are the fixtures' ONNX Runtime top-1 on the 10,000 test
// images (orteval).
var originals = map[string]float64{"mobilenetv1": 89.63, "shufflenetv2": 89.25}

// printTable writes a Markdown table of the runs in path: one row per run
// name and model, with the mean, range and count over data seeds.
func printTable(w io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	type group struct {
		name, model, setting string
		top1, secs           []float64
		images, n            int
	}
	groups := map[string]*group{}
	var order []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r row
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		model := strings.TrimSuffix(r.config.Model[strings.LastIndex(r.config.Model, "/")+1:], ".onnx")
		name := r.ID[:strings.Index(r.ID, "-")]
		key := fmt.Sprintf("%s/%s/%d", name, model, r.Multiple)
		g := groups[key]
		if g == nil {
			ranks := "default ranks"
			if r.Multiple == 1 {
				ranks = "exact ranks"
			}
			setting := fmt.Sprintf("%s %g, %d images, %d steps (%d reconstruct), loss %s, match %s, augment %s, T %g, lr %g, train %s, init %s, hold-out %g",
				ranks, r.RankRatio, r.TrainImages+r.ValImages, r.Steps, r.PreSteps, orDefault(r.Loss, "kd"), r.Match, r.Augment, r.Temperature, r.LR,
				orDefault(r.Train, "lpr"), orDefault(r.Init, "data"), r.ValFraction)
			setting += extras(r.config)
			g = &group{name: name, model: model, setting: setting, images: r.ImagesProcessed}
			groups[key] = g
			order = append(order, key)
		}
		g.top1 = append(g.top1, r.Top1)
		g.secs = append(g.secs, r.TrainSeconds)
		g.n++
	}
	if err := sc.Err(); err != nil {
		return err
	}
	sort.SliceStable(order, func(a, b int) bool { return groups[order[a]].model < groups[order[b]].model })
	fmt.Fprintln(w, "| run | model | setting | seeds | top-1 mean | range | drop | images processed | train s (mean) |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	for _, k := range order {
		g := groups[k]
		mean, lo, hi := stats(g.top1)
		smean, _, _ := stats(g.secs)
		drop := "-"
		if o, ok := originals[g.model]; ok {
			drop = fmt.Sprintf("%+.2f", mean-o)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %d | %.2f | %.2f-%.2f | %s | %d | %.0f |\n", g.name, g.model, g.setting, g.n, mean, lo, hi, drop, g.images, smean)
	}
	return nil
}

// extras lists the options from the fourth round on that a run set.
func extras(c config) string {
	var out string
	if c.PreLR > 0 {
		out += fmt.Sprintf(", reconstruct lr %g", c.PreLR)
	}
	if c.Boost > 0 {
		out += fmt.Sprintf(", distillation lr x %g where rank <= C/4", c.Boost)
	}
	if c.PreBoost > 0 {
		out += fmt.Sprintf(", reconstruct lr x %g where rank <= C/4", c.PreBoost)
	}
	if c.L2SP > 0 {
		out += fmt.Sprintf(", L2-SP %g to %s", c.L2SP, c.L2SPAnchor)
	}
	if c.Freeze != "" {
		out += ", freeze " + c.Freeze
	}
	if c.WeightDecay > 0 {
		out += fmt.Sprintf(", weight decay %g", c.WeightDecay)
	}
	if c.RankLRRef > 0 {
		out += fmt.Sprintf(", lr x (%g/rank)^%g", c.RankLRRef, c.RankLRPower)
	}
	if c.SAMRho > 0 {
		out += fmt.Sprintf(", SAM %g (two passes per step)", c.SAMRho)
	}
	if c.Beta1 > 0 || c.Beta2 > 0 {
		out += fmt.Sprintf(", Adam β %g/%g (0: default)", c.Beta1, c.Beta2)
	}
	if c.MinLRRatio > 0 {
		out += fmt.Sprintf(", cosine floor %g", c.MinLRRatio)
	}
	if c.Warmup > 0 {
		out += fmt.Sprintf(", warm-up %d steps", c.Warmup)
	}
	if c.Balance != 0 {
		out += fmt.Sprintf(", factors balanced P %g", c.Balance)
	}
	if c.Permute {
		out += ", relabeled channels"
	}
	if c.Weigh != "" {
		out += ", channel weights " + c.Weigh
		if c.WeighImages > 0 {
			out += fmt.Sprintf(" on %d images", c.WeighImages)
		}
	}
	if c.Prototype != "" {
		out += ", prototype: " + c.Prototype
	}
	return out
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func stats(v []float64) (mean, lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, x := range v {
		mean += x
		lo, hi = math.Min(lo, x), math.Max(hi, x)
	}
	return mean / float64(len(v)), lo, hi
}
