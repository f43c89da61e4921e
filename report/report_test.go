package report

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func ptr(v float64) *float64 { return &v }

// sampleSweep has one fully measured row, one without labelled data and
// latency, and one with a budget and a name that needs escaping.
func sampleSweep() *Sweep {
	return &Sweep{
		Meta: Meta{
			Model:   "testdata/models/mobilenetv1.onnx",
			Date:    "2026-11-28T17:00:00Z",
			Command: "lprconv sweep testdata/models/mobilenetv1.onnx --out out",
			Notes:   []string{"latency not measured: no ONNX Runtime library"},
		},
		Original: Baseline{Params: 3212345, MACs: 47000000, FileBytes: 12900000, Accuracy: ptr(0.8125), LatencyMs: ptr(1.25)},
		Rows: []Row{
			{
				Config: "diag_r1-2", Residual: "diag", RankRatio: 0.5,
				Params: 2500000, MACs: 40000000, FileBytes: 10000000,
				ParamsRatio: 2500000.0 / 3212345, MACsRatio: 40.0 / 47, FileRatio: 10.0 / 12.9,
				Agreement: ptr(0.96875), Cosine: ptr(0.99871234567),
				AccBefore: ptr(0.75), AccAfter: ptr(0.8),
				LatencyMs: ptr(1.1), LatencyRatio: ptr(0.88),
				Layers: []LayerRank{{Name: "conv_pw_7", C: 128, Rank: 64}, {Name: "conv_pw_8", C: 256, Rank: 128}},
				Model:  "out/mobilenetv1_diag_r1-2.onnx",
			},
			{
				Config: "diag_r1-4", Residual: "diag", RankRatio: 0.25,
				Params: 2000000, MACs: 36000000, FileBytes: 8000000,
				ParamsRatio: 2000000.0 / 3212345, MACsRatio: 36.0 / 47, FileRatio: 8.0 / 12.9,
				Agreement: ptr(0.90625), Cosine: ptr(0.987),
				AccBefore: ptr(0.5), AccAfter: ptr(0.78125),
				LatencyMs: ptr(1.0), LatencyRatio: ptr(0.8),
				Layers: []LayerRank{{Name: "conv_pw_7", C: 128, Rank: 32}, {Name: "conv_pw_8", C: 256, Rank: 64}},
				Model:  "out/mobilenetv1_diag_r1-4.onnx",
			},
			{
				Config: "none|budget", Residual: "none", RankRatio: 0, Budget: "params=0.7", Precision: "int8",
				Params: 2248641, MACs: 38000000, FileBytes: 9000000,
				ParamsRatio: 0.7, MACsRatio: 38.0 / 47, FileRatio: 9.0 / 12.9,
				Agreement: ptr(0.5), // no cosine: a missing fidelity value
				Layers:    []LayerRank{{Name: "conv_pw_8", C: 256, Rank: 16}},
				Model:     "out/mobilenetv1_none_budget.onnx",
			},
		},
		Spectra: []LayerSpectrum{
			{Name: "conv_pw_7", C: 4, Singular: []float64{4, 2, 1, 0.5}},
			{Name: "conv_pw_8", C: 3, Singular: []float64{3, 3, 3}},
		},
		Plots: []string{PlotAccuracyParams, PlotSpectra},
	}
}

func TestWriteCSVParsesBack(t *testing.T) {
	s := sampleSweep()
	var buf bytes.Buffer
	if err := WriteCSV(&buf, s); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatalf("parse csv: %v", err)
	}
	if !reflect.DeepEqual(recs[0], CSVHeader) {
		t.Fatalf("header = %v, want %v", recs[0], CSVHeader)
	}
	if len(recs) != 1+len(s.Rows) {
		t.Fatalf("got %d records, want %d", len(recs), 1+len(s.Rows))
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	num := func(t *testing.T, rec []string, name string) float64 {
		t.Helper()
		v, err := strconv.ParseFloat(rec[col[name]], 64)
		if err != nil {
			t.Fatalf("column %s: %v", name, err)
		}
		return v
	}
	opt := func(t *testing.T, rec []string, name string) *float64 {
		t.Helper()
		if rec[col[name]] == "" {
			return nil
		}
		v := num(t, rec, name)
		return &v
	}
	for i, want := range s.Rows {
		rec := recs[i+1]
		got := Row{
			Config: rec[col["config"]], Residual: rec[col["residual"]], Budget: rec[col["budget"]],
			RankRatio: num(t, rec, "rank_ratio"),
			Params:    int64(num(t, rec, "params")), MACs: int64(num(t, rec, "macs")), FileBytes: int64(num(t, rec, "file_bytes")),
			ParamsRatio: num(t, rec, "params_ratio"), MACsRatio: num(t, rec, "macs_ratio"), FileRatio: num(t, rec, "file_ratio"),
			Agreement: opt(t, rec, "agreement"), Cosine: opt(t, rec, "cosine"), Precision: rec[col["precision"]],
			AccBefore: opt(t, rec, "acc_before"), AccAfter: opt(t, rec, "acc_after"),
			LatencyMs: opt(t, rec, "latency_ms"), LatencyRatio: opt(t, rec, "latency_ratio"),
			Model: rec[col["model"]],
		}
		for _, part := range strings.Split(rec[col["layers"]], ";") {
			var l LayerRank
			name, rest, ok1 := strings.Cut(part, ":")
			rank, c, ok2 := strings.Cut(rest, "/")
			if !ok1 || !ok2 {
				t.Fatalf("row %d: bad layers cell %q", i, rec[col["layers"]])
			}
			l.Name = name
			l.Rank, _ = strconv.Atoi(rank)
			l.C, _ = strconv.Atoi(c)
			got.Layers = append(got.Layers, l)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("row %d parsed back as\n%+v\nwant\n%+v", i, got, want)
		}
	}
	// Missing values are empty cells.
	if rec := recs[3]; rec[col["acc_before"]] != "" || rec[col["latency_ms"]] != "" {
		t.Errorf("nil fields should be empty, got acc_before=%q latency_ms=%q", rec[col["acc_before"]], rec[col["latency_ms"]])
	}
}

func TestWriteJSONRoundTrip(t *testing.T) {
	s := sampleSweep()
	var buf bytes.Buffer
	if err := WriteJSON(&buf, s); err != nil {
		t.Fatal(err)
	}
	raw := buf.Bytes()
	got, err := ReadJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, s) {
		t.Errorf("round trip differs:\n%+v\nwant\n%+v", got, s)
	}
	// Keys are snake_case and missing values are null.
	var generic struct {
		Original map[string]any   `json:"original"`
		Rows     []map[string]any `json:"rows"`
	}
	if err := json.Unmarshal(raw, &generic); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"config", "rank_ratio", "file_bytes", "params_ratio", "macs_ratio", "acc_before", "acc_after", "latency_ms", "latency_ratio", "layers", "model"} {
		if _, ok := generic.Rows[0][key]; !ok {
			t.Errorf("row JSON lacks key %q", key)
		}
	}
	if v, ok := generic.Rows[2]["acc_after"]; !ok || v != nil {
		t.Errorf("nil acc_after encoded as %v (present %v), want null", v, ok)
	}
	if generic.Rows[0]["latency_ratio"] != 0.88 {
		t.Errorf("latency_ratio = %v, want 0.88", generic.Rows[0]["latency_ratio"])
	}
	if generic.Original["latency_ms"] != 1.25 {
		t.Errorf("original latency_ms = %v", generic.Original["latency_ms"])
	}
}

func TestWriteMarkdown(t *testing.T) {
	s := sampleSweep()
	var buf bytes.Buffer
	if err := WriteMarkdown(&buf, s); err != nil {
		t.Fatal(err)
	}
	md := buf.String()
	for _, want := range []string{
		"# LPR rank sweep: mobilenetv1.onnx",
		"| 3,212,345 | 47,000,000 | 12,900,000 | 81.25% | 1.250 |",
		"| config | residual | rank ratio | budget | layers | params | MACs | file bytes | agreement | cosine | acc before | acc after | latency (ms) | latency ratio | precision |",
		"| diag_r1-2 | diag | 1/2 |  | 2 | 2,500,000 (0.778x) | 40,000,000 (0.851x) | 10,000,000 (0.775x) | 96.88% | 0.9987 | 75.00% | 80.00% | 1.100 | 0.880 | fp32 |",
		"| diag_r1-4 | diag | 1/4 |",
		`| none\|budget | none | - | params=0.7 | 1 | 2,248,641 (0.700x) | 38,000,000 (0.809x) | 9,000,000 (0.698x) | 50.00% | n/a | n/a | n/a | n/a | n/a | int8 |`,
		"| layer | C | diag_r1-2 | diag_r1-4 | none\\|budget |",
		"| conv_pw_7 | 128 | 64 | 32 | - |",
		"| conv_pw_8 | 256 | 128 | 64 | 16 |",
		"![accuracy vs parameters](accuracy_vs_params.png)",
		"![singular-value energy per layer](singular_energy.png)",
		"- latency not measured: no ONNX Runtime library",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q\n%s", want, md)
		}
	}
	if strings.Contains(md, "latency_vs_macs") {
		t.Error("markdown embeds a plot that is not in s.Plots")
	}
	// Every table line has as many cells as its header.
	checkTableWidths(t, md)
}

// checkTableWidths checks that every row of every Markdown table has the
// header's number of unescaped cell separators.
func checkTableWidths(t *testing.T, md string) {
	t.Helper()
	want := -1
	for _, line := range strings.Split(md, "\n") {
		if !strings.HasPrefix(line, "|") {
			want = -1
			continue
		}
		n := strings.Count(line, "|") - strings.Count(line, `\|`)
		if want < 0 {
			want = n
		} else if n != want {
			t.Errorf("table line has %d separators, header %d: %q", n, want, line)
		}
	}
}

func TestWriteMarkdownMissingBaseline(t *testing.T) {
	s := &Sweep{Original: Baseline{Params: 10, MACs: 20, FileBytes: 30}}
	var buf bytes.Buffer
	if err := WriteMarkdown(&buf, s); err != nil {
		t.Fatal(err)
	}
	md := buf.String()
	for _, want := range []string{"| 10 | 20 | 30 | n/a | n/a |", "No configuration finished."} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q\n%s", want, md)
		}
	}
	if strings.Contains(md, "Ranks per layer") || strings.Contains(md, "## Plots") {
		t.Errorf("empty sections written:\n%s", md)
	}
}

func TestWriteTableAligned(t *testing.T) {
	s := sampleSweep()
	var buf bytes.Buffer
	if err := WriteTable(&buf, s); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	if len(lines) != 2+len(s.Rows) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), 2+len(s.Rows), buf.String())
	}
	head := lines[0]
	// Each column starts at the same offset on every line.
	for _, c := range []struct {
		header string
		cells  []string
	}{
		{"LAYERS", []string{"-", "2", "2", "1"}},
		{"PARAMS", []string{"3,212,345", "2,500,000 (0.778x)", "2,000,000 (0.623x)", "2,248,641 (0.700x)"}},
		{"AGREE", []string{"-", "96.88%", "90.62%", "50.00%"}},
		{"LATENCY-MS", []string{"1.250", "1.100", "1.000", "n/a"}},
		{"LAT-RATIO", []string{"-", "0.880", "0.800", "n/a"}},
		{"COSINE", []string{"-", "0.9987", "0.9870", "n/a"}},
		{"PRECISION", []string{"fp32", "fp32", "fp32", "int8"}},
	} {
		at := strings.Index(head, c.header)
		if at < 0 {
			t.Fatalf("header lacks %s: %q", c.header, head)
		}
		for i, cell := range c.cells {
			line := lines[i+1]
			if !strings.HasPrefix(line[at:], cell) {
				t.Errorf("line %d column %s: got %q, want prefix %q", i+1, c.header, line[at:], cell)
			}
		}
	}
	if !strings.HasPrefix(lines[1], "original") {
		t.Errorf("first line should be the original model: %q", lines[1])
	}
}

func TestFormatRatio(t *testing.T) {
	for _, c := range []struct {
		in   float64
		want string
	}{
		{1, "1"}, {0.5, "1/2"}, {0.25, "1/4"}, {0.125, "1/8"}, {1.0 / 16, "1/16"},
		{1.0 / 3, "1/3"}, {0.3, "0.3"}, {0.75, "0.75"}, {0, "0"}, {2, "2"},
	} {
		if got := FormatRatio(c.in); got != c.want {
			t.Errorf("FormatRatio(%v) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestEnergyCurve(t *testing.T) {
	got := energyCurve(LayerSpectrum{Name: "a", C: 2, Singular: []float64{4, 3}})
	want := [][2]float64{{0, 0}, {0.5, 16.0 / 25}, {1, 1}}
	if len(got) != len(want) {
		t.Fatalf("got %d points, want %d", len(got), len(want))
	}
	for i, w := range want {
		if math.Abs(got[i].X-w[0]) > 1e-15 || math.Abs(got[i].Y-w[1]) > 1e-15 {
			t.Errorf("point %d = %v, want %v", i, got[i], w)
		}
	}
	if energyCurve(LayerSpectrum{Name: "zero", C: 2, Singular: []float64{0, 0}}) != nil {
		t.Error("zero spectrum should give no curve")
	}
	if energyCurve(LayerSpectrum{Name: "nan", C: 1, Singular: []float64{math.NaN()}}) != nil {
		t.Error("NaN spectrum should give no curve")
	}
}

func TestWritePlots(t *testing.T) {
	noAcc := sampleSweep()
	for i := range noAcc.Rows {
		noAcc.Rows[i].AccBefore, noAcc.Rows[i].AccAfter = nil, nil
		noAcc.Rows[i].LatencyMs, noAcc.Rows[i].LatencyRatio = nil, nil
	}
	noAcc.Original.Accuracy, noAcc.Original.LatencyMs = nil, nil
	noAcc.Spectra = nil

	many := sampleSweep()
	many.Spectra = nil
	for i := 0; i < 20; i++ {
		c := 8 * (1 + i%3)
		sv := make([]float64, c)
		for k := range sv {
			sv[k] = math.Exp(-float64(k) / float64(1+i))
		}
		many.Spectra = append(many.Spectra, LayerSpectrum{Name: "pw" + strconv.Itoa(i), C: c, Singular: sv})
	}

	onlySpectra := sampleSweep()
	onlySpectra.Rows = nil

	for _, c := range []struct {
		name string
		s    *Sweep
		want []string
	}{
		{"full", sampleSweep(), []string{PlotAccuracyParams, PlotAccuracyMACs, PlotLatencyMACs, PlotAccuracyLatency, PlotSpectra}},
		{"fidelity only", noAcc, []string{PlotAccuracyParams, PlotAccuracyMACs}},
		{"many layers", many, []string{PlotAccuracyParams, PlotAccuracyMACs, PlotLatencyMACs, PlotAccuracyLatency, PlotSpectra}},
		{"only spectra", onlySpectra, []string{PlotSpectra}},
		{"empty", &Sweep{}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			paths, err := WritePlots(dir, c.s)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, p := range paths {
				names = append(names, filepath.Base(p))
				checkPNG(t, p)
			}
			if !reflect.DeepEqual(names, c.want) {
				t.Errorf("plots = %v, want %v", names, c.want)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != len(c.want) {
				t.Errorf("dir holds %d entries, want %d (temporary files left?)", len(entries), len(c.want))
			}
		})
	}
}

// checkPNG decodes a plot and checks its size (6x4 inches at the default
// 96 dpi) and that something was drawn on it.
func checkPNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b := img.Bounds()
	if b.Dx() != 576 || b.Dy() != 384 {
		t.Errorf("%s: size %dx%d, want 576x384", path, b.Dx(), b.Dy())
	}
	colored, dark := 0, 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if r != g || g != bl {
				colored++
			}
			if r < 0x4000 && g < 0x4000 && bl < 0x4000 {
				dark++
			}
		}
	}
	if colored < 100 || dark < 100 {
		t.Errorf("%s: looks empty (%d coloured, %d dark pixels)", path, colored, dark)
	}
}

func TestWriteAll(t *testing.T) {
	dir := t.TempDir()
	s := sampleSweep()
	s.Plots = nil
	paths, err := WriteAll(dir, s)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 8 {
		t.Errorf("wrote %d files, want 8: %v", len(paths), paths)
	}
	want := []string{PlotAccuracyParams, PlotAccuracyMACs, PlotLatencyMACs, PlotAccuracyLatency, PlotSpectra}
	if !reflect.DeepEqual(s.Plots, want) {
		t.Errorf("s.Plots = %v, want %v", s.Plots, want)
	}
	md, err := os.ReadFile(filepath.Join(dir, MarkdownFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(md), "![accuracy vs measured latency](accuracy_vs_latency.png)") {
		t.Errorf("report.md does not embed the accuracy vs latency plot:\n%s", md)
	}
	if !strings.Contains(string(md), "![latency vs MACs](latency_vs_macs.png)") {
		t.Errorf("report.md does not embed the latency plot:\n%s", md)
	}
	f, err := os.Open(filepath.Join(dir, JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	back, err := ReadJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, s) {
		t.Error("results.json does not decode to the sweep")
	}
}
