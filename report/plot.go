package report

import (
	"fmt"
	"image/color"
	"io"
	"math"
	"path/filepath"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/lprconv/lprconv/internal/atomicfile"
)

// File names of the plots that WritePlots draws.
const (
	PlotAccuracyParams = "accuracy_vs_params.png"
	PlotAccuracyMACs   = "accuracy_vs_macs.png"
	PlotLatencyMACs    = "latency_vs_macs.png"
	// PlotAccuracyLatency is accuracy against the measured latency ratio.
	PlotAccuracyLatency = "accuracy_vs_latency.png"
	PlotSpectra         = "singular_energy.png"
)

// Plot size in inches.
const (
	plotWidth  = 6 * vg.Inch
	plotHeight = 4 * vg.Inch
)

// maxLegendLayers is the largest number of layers that the energy plot
// labels one by one; beyond it the legend names one entry per channel
// count and lines of equal C share a colour.
const maxLegendLayers = 12

// WritePlots draws the sweep's plots as PNG files in dir and returns their
// paths: accuracy vs parameters and vs MACs (top-1 agreement with the
// original when no row has an accuracy), latency vs MACs and accuracy vs
// the measured latency ratio when any row has a latency, and the cumulative singular-value energy of each layer in
// s.Spectra. Plots without data are left out. Every file is written to a
// temporary name and renamed into place.
func WritePlots(dir string, s *Sweep) ([]string, error) {
	type job struct {
		name string
		make func(*Sweep) (*plot.Plot, error)
	}
	var jobs []job
	if len(s.Rows) > 0 {
		jobs = append(jobs,
			job{PlotAccuracyParams, func(s *Sweep) (*plot.Plot, error) {
				return accuracyPlot(s, "parameters", func(r Row) float64 { return float64(r.Params) }, float64(s.Original.Params))
			}},
			job{PlotAccuracyMACs, func(s *Sweep) (*plot.Plot, error) {
				return accuracyPlot(s, "MACs", func(r Row) float64 { return float64(r.MACs) }, float64(s.Original.MACs))
			}},
		)
	}
	if hasLatency(s.Rows) {
		jobs = append(jobs, job{PlotLatencyMACs, latencyPlot}, job{PlotAccuracyLatency, func(s *Sweep) (*plot.Plot, error) {
			p, err := accuracyPlot(s, "latency ratio", func(r Row) float64 {
				if r.LatencyRatio == nil {
					return math.NaN()
				}
				return *r.LatencyRatio
			}, 1)
			if p != nil {
				p.X.Label.Text = "measured latency / original's (ONNX Runtime, batch 1)"
			}
			return p, err
		}})
	}
	if len(s.Spectra) > 0 {
		jobs = append(jobs, job{PlotSpectra, spectraPlot})
	}
	var paths []string
	for _, j := range jobs {
		p, err := j.make(s)
		if err != nil {
			return paths, fmt.Errorf("plot %s: %w", j.name, err)
		}
		wt, err := p.WriterTo(plotWidth, plotHeight, "png")
		if err != nil {
			return paths, fmt.Errorf("render plot %s: %w", j.name, err)
		}
		path := filepath.Join(dir, j.name)
		if err := atomicfile.WriteFunc(path, func(w io.Writer) error {
			_, err := wt.WriteTo(w)
			return err
		}); err != nil {
			return paths, err
		}
		paths = append(paths, path)
	}
	return paths, nil
}

// hasLatency reports whether any row has a measured latency.
func hasLatency(rows []Row) bool {
	for _, r := range rows {
		if r.LatencyMs != nil {
			return true
		}
	}
	return false
}

// series is one labelled set of points of a plot.
type series struct {
	label  string
	points plotter.XYs
	dashed bool
}

// groupKey names the line a row belongs to: its residual kind, its
// budget when it has one, and its precision when not fp32.
func groupKey(r Row) string {
	k := r.Residual
	if r.Budget != "" {
		k += " " + r.Budget
	}
	if r.Precision != "" {
		// fp16 and int8 files are their own series.
		k += " " + r.Precision
	}
	return k
}

// groupRows splits rows into per-residual series of (x, y) points sorted
// by x; rows where y returns false or a non-finite value are skipped.
func groupRows(rows []Row, x func(Row) float64, y func(Row) (float64, bool), suffix string, dashed bool) []series {
	var out []series
	index := map[string]int{}
	for _, r := range rows {
		yv, ok := y(r)
		xv := x(r)
		if !ok || !finite(xv) || !finite(yv) {
			continue
		}
		k := groupKey(r)
		i, seen := index[k]
		if !seen {
			i = len(out)
			index[k] = i
			out = append(out, series{label: k + suffix, dashed: dashed})
		}
		out[i].points = append(out[i].points, plotter.XY{X: xv, Y: yv})
	}
	for _, s := range out {
		sort.Slice(s.points, func(a, b int) bool { return s.points[a].X < s.points[b].X })
	}
	return out
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// accuracyPlot draws accuracy (before and after fine-tuning) against a
// size measure, or top-1 agreement with the original when no row has an
// accuracy, with the original model as a separate point.
func accuracyPlot(s *Sweep, xName string, x func(Row) float64, origX float64) (*plot.Plot, error) {
	haveAcc := false
	for _, r := range s.Rows {
		if r.AccBefore != nil || r.AccAfter != nil {
			haveAcc = true
			break
		}
	}
	p := plot.New()
	p.X.Label.Text = xName
	var lines []series
	var origY *float64
	if haveAcc {
		p.Title.Text = "Top-1 accuracy vs " + xName
		p.Y.Label.Text = "top-1 accuracy"
		after := groupRows(s.Rows, x, func(r Row) (float64, bool) { return deref(r.AccAfter) }, "", false)
		suffix := " (before fine-tuning)"
		if len(after) == 0 {
			suffix = ""
		}
		before := groupRows(s.Rows, x, func(r Row) (float64, bool) { return deref(r.AccBefore) }, suffix, len(after) > 0)
		lines = append(after, before...)
		origY = s.Original.Accuracy
	} else {
		p.Title.Text = "Fidelity vs " + xName
		p.Y.Label.Text = "top-1 agreement with original"
		lines = groupRows(s.Rows, x, func(r Row) (float64, bool) { return deref(r.Agreement) }, "", false)
		one := 1.0
		origY = &one
	}
	if err := addSeries(p, lines); err != nil {
		return nil, err
	}
	if origY != nil && finite(*origY) && finite(origX) {
		if err := addOriginal(p, origX, *origY); err != nil {
			return nil, err
		}
	}
	p.Legend.Top = false
	p.Legend.Left = false
	return p, nil
}

// latencyPlot draws measured latency against MACs.
func latencyPlot(s *Sweep) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "Latency vs MACs (ONNX Runtime, batch 1)"
	p.X.Label.Text = "MACs"
	p.Y.Label.Text = "latency (ms)"
	lines := groupRows(s.Rows, func(r Row) float64 { return float64(r.MACs) },
		func(r Row) (float64, bool) { return deref(r.LatencyMs) }, "", false)
	if err := addSeries(p, lines); err != nil {
		return nil, err
	}
	if l := s.Original.LatencyMs; l != nil && finite(*l) {
		if err := addOriginal(p, float64(s.Original.MACs), *l); err != nil {
			return nil, err
		}
	}
	p.Legend.Top = true
	p.Legend.Left = true
	return p, nil
}

// spectraPlot draws, for each layer, the fraction of the squared
// singular-value sum captured by the first k values against k/C.
func spectraPlot(s *Sweep) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "Singular-value energy of candidate layers"
	p.X.Label.Text = "rank / C"
	p.Y.Label.Text = "cumulative energy fraction"
	p.Y.Min, p.Y.Max = 0, 1
	p.X.Min, p.X.Max = 0, 1

	perLayer := len(s.Spectra) <= maxLegendLayers
	colorOf := map[int]int{} // channel count -> colour index when grouped
	for i, sp := range s.Spectra {
		pts := energyCurve(sp)
		if len(pts) == 0 {
			continue
		}
		line, err := plotter.NewLine(pts)
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", sp.Name, err)
		}
		ci, newGroup := i, false
		if !perLayer {
			var ok bool
			if ci, ok = colorOf[sp.C]; !ok {
				ci, newGroup = len(colorOf), true
				colorOf[sp.C] = ci
			}
		}
		line.Color = plotutil.Color(ci)
		line.Dashes = plotutil.Dashes(ci / len(plotutil.DefaultColors))
		line.Width = vg.Points(1)
		p.Add(line)
		switch {
		case perLayer:
			p.Legend.Add(fmt.Sprintf("%s (C=%d)", sp.Name, sp.C), line)
		case newGroup:
			p.Legend.Add(fmt.Sprintf("C=%d (%d layers)", sp.C, countC(s.Spectra, sp.C)), line)
		}
	}
	p.Legend.Top = false
	p.Legend.Left = false
	return p, nil
}

// countC counts the spectra with channel count c.
func countC(sp []LayerSpectrum, c int) int {
	n := 0
	for _, s := range sp {
		if s.C == c {
			n++
		}
	}
	return n
}

// energyCurve returns (k/C, sum_{i<=k} s_i^2 / sum s_i^2) for k = 0..len,
// or nil when the spectrum is empty, zero or not finite.
func energyCurve(sp LayerSpectrum) plotter.XYs {
	total := 0.0
	for _, v := range sp.Singular {
		total += v * v
	}
	if total <= 0 || !finite(total) {
		return nil
	}
	c := float64(sp.C)
	if c <= 0 {
		c = float64(len(sp.Singular))
	}
	pts := make(plotter.XYs, 0, len(sp.Singular)+1)
	pts = append(pts, plotter.XY{})
	sum := 0.0
	for k, v := range sp.Singular {
		sum += v * v
		pts = append(pts, plotter.XY{X: float64(k+1) / c, Y: sum / total})
	}
	return pts
}

// addSeries adds one line with point markers per series, with a legend.
func addSeries(p *plot.Plot, lines []series) error {
	for i, s := range lines {
		if len(s.points) == 0 {
			continue
		}
		l, pts, err := plotter.NewLinePoints(s.points)
		if err != nil {
			return fmt.Errorf("series %s: %w", s.label, err)
		}
		ci := i
		l.Color = plotutil.Color(ci)
		pts.Color = l.Color
		pts.Shape = plotutil.Shape(ci)
		if s.dashed {
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		}
		p.Add(l, pts)
		p.Legend.Add(s.label, l, pts)
	}
	return nil
}

// addOriginal marks the original model as a black star.
func addOriginal(p *plot.Plot, x, y float64) error {
	sc, err := plotter.NewScatter(plotter.XYs{{X: x, Y: y}})
	if err != nil {
		return fmt.Errorf("original point: %w", err)
	}
	sc.Color = color.Black
	sc.Shape = draw.PyramidGlyph{}
	sc.Radius = vg.Points(4)
	p.Add(sc)
	p.Legend.Add("original", sc)
	return nil
}

// deref returns *v and whether v was set.
func deref(v *float64) (float64, bool) {
	if v == nil {
		return 0, false
	}
	return *v, true
}
