package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/lprconv/lprconv/convert"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

func inspectCommand() *cli.Command {
	return flagsAnywhere(&cli.Command{
		Name:      "inspect",
		Usage:     "show the layers, parameters, MACs and LPR candidates of a model",
		ArgsUsage: "MODEL",
		Description: `Prints one row per layer (Conv, Gemm, MatMul, BatchNormalization, Mul/Add by a
constant): kernel, group, channels, output shape, parameters and multiply-
accumulates, and marks every LPR candidate (a 1x1, group-1, stride-1,
unpadded Conv with as many input as output channels and constant weights)
with its break-even rank: the largest rank at which the low-rank
replacement still has fewer parameters (r < C/2). Totals follow.

A dynamic batch dim is taken as 1; --input-shape replaces the input shape.

Examples:
   lprconv inspect testdata/models/mobilenetv1.onnx
   lprconv inspect model.onnx --input-shape 1,3,224,224
   lprconv inspect model.onnx --json | jq '.layers[] | select(.candidate)'`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object instead of a table"},
			&cli.StringFlag{Name: "input-shape", Usage: "input shape as `[NAME=]N,C,H,W` (NAME defaults to the only graph input)"},
		},
	}, func(c *cli.Context, args []string) error {
		if len(args) != 1 {
			return cli.Exit("inspect: expected one MODEL argument (see lprconv inspect --help)", 2)
		}
		path := args[0]
		m, err := onnxio.Load(path)
		if err != nil {
			return err
		}
		opts, err := shapeOptions(m, c.String("input-shape"))
		if err != nil {
			return cli.Exit(fmt.Sprintf("inspect: %v", err), 2)
		}
		s, err := convert.Inspect(m, opts)
		if err != nil {
			return fmt.Errorf("inspect %s: %w", path, err)
		}
		if st, err := os.Stat(path); err == nil {
			s.FileBytes = st.Size()
		}
		for _, w := range s.Warnings {
			fmt.Fprintf(c.App.ErrWriter, "warning: %s\n", w)
		}
		if c.Bool("json") {
			enc := json.NewEncoder(c.App.Writer)
			enc.SetIndent("", "  ")
			return enc.Encode(s)
		}
		return printSummary(c.App.Writer, path, s)
	})
}

// shapeOptions parses an --input-shape value ("[NAME=]d0,d1,...") for m.
func shapeOptions(m *onnxpb.ModelProto, spec string) (convert.ShapeOptions, error) {
	var opts convert.ShapeOptions
	if spec == "" {
		return opts, nil
	}
	name, dimsText, named := strings.Cut(spec, "=")
	if !named {
		dimsText = spec
		inits := map[string]bool{}
		for _, t := range m.GetGraph().GetInitializer() {
			inits[t.GetName()] = true
		}
		var real []string
		for _, in := range m.GetGraph().GetInput() {
			if !inits[in.GetName()] {
				real = append(real, in.GetName())
			}
		}
		if len(real) != 1 {
			return opts, fmt.Errorf("--input-shape: the model has %d inputs %v; write NAME=dims", len(real), real)
		}
		name = real[0]
	}
	dims, err := parseDims(dimsText)
	if err != nil {
		return opts, fmt.Errorf("--input-shape %q: %w", spec, err)
	}
	opts.InputShapes = map[string][]int64{name: dims}
	return opts, nil
}

// parseDims parses "1,3,224,224" (x also separates).
func parseDims(s string) ([]int64, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == 'x' || r == 'X' })
	if len(fields) == 0 {
		return nil, fmt.Errorf("no dims; write e.g. 1,3,224,224")
	}
	dims := make([]int64, len(fields))
	for i, f := range fields {
		d, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
		if err != nil || d <= 0 || d > 1<<20 {
			return nil, fmt.Errorf("dim %q is not a positive integer up to %d", f, 1<<20)
		}
		dims[i] = d
	}
	return dims, nil
}

func printSummary(w io.Writer, path string, s *convert.Summary) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "#\tlayer\top\tkernel\tgroup\tC_in->C_out\toutput\tparams\tMACs\tLPR candidate\t")
	for i, l := range s.Layers {
		cand := "-"
		switch {
		case l.Candidate && l.FoldsBatchNorm:
			cand = fmt.Sprintf("yes, r<=%d (+BN fold)", l.BreakEvenRank)
		case l.Candidate:
			cand = fmt.Sprintf("yes, r<=%d", l.BreakEvenRank)
		case l.NotCandidate != "":
			cand = "no: " + l.NotCandidate
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d->%d\t%s\t%s\t%s\t%s\t\n",
			i+1, shorten(l.Name, 48), l.Op, dimsText(l.Kernel), groupText(l.Group), l.InChannels, l.OutChannels,
			outputText(l.OutputShape), count(l.Params), count(l.MACs), cand)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nmodel:       %s\n", path)
	fmt.Fprintf(w, "file size:   %s (%d bytes)\n", bytesText(s.FileBytes), s.FileBytes)
	fmt.Fprintf(w, "producer:    %s %s\n", s.Producer, s.ProducerVersion)
	fmt.Fprintf(w, "opset:       %d   IR version: %d   nodes: %d\n", s.Opset, s.IRVersion, s.Nodes)
	for name, shape := range s.Inputs {
		fmt.Fprintf(w, "input:       %s %v\n", name, shape)
	}
	fmt.Fprintf(w, "params:      %s (%d)\n", count(s.Params), s.Params)
	fmt.Fprintf(w, "MACs:        %s (%d)\n", count(s.MACs), s.MACs)
	pct := func(a, b int64) float64 {
		if b == 0 {
			return 0
		}
		return 100 * float64(a) / float64(b)
	}
	fmt.Fprintf(w, "candidates:  %d, holding %s params (%.1f%%) and %s MACs (%.1f%%)\n",
		s.Candidates, count(s.CandidateParams), pct(s.CandidateParams, s.Params), count(s.CandidateMACs), pct(s.CandidateMACs, s.MACs))
	return nil
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n+1:]
}

func dimsText(d []int64) string {
	if len(d) == 0 {
		return "-"
	}
	parts := make([]string, len(d))
	for i, v := range d {
		parts[i] = strconv.FormatInt(v, 10)
	}
	return strings.Join(parts, "x")
}

func groupText(g int64) string {
	if g <= 1 {
		return "1"
	}
	return strconv.FormatInt(g, 10)
}

// outputText shows a 4-D NCHW output as HxW, anything else as its dims.
func outputText(s []int64) string {
	if s == nil {
		return "?"
	}
	if len(s) == 4 {
		return fmt.Sprintf("%dx%d", s[2], s[3])
	}
	return dimsText(s)
}

// count prints n with a k/M/G suffix.
func count(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2fG", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.2fM", float64(n)/1e6)
	case n >= 1e4:
		return fmt.Sprintf("%.1fk", float64(n)/1e3)
	}
	return strconv.FormatInt(n, 10)
}

func bytesText(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
