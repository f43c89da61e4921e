package torchexport

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"

	"github.com/lprconv/lprconv/evaluate"
	"github.com/lprconv/lprconv/finetune"
	"github.com/lprconv/lprconv/internal/atomicfile"
	"github.com/lprconv/lprconv/onnxio"
	"github.com/lprconv/lprconv/onnxio/onnxpb"
)

//go:embed py/onnxops.py py/distill.py py/README.md
var pyFiles embed.FS

// Recipe holds the defaults written into distill.py's flags. The zero
// value of a field takes lprconv compress's default for it.
type Recipe struct {
	// Batch is the batch size per process (default 64).
	Batch int
	// LR is the peak learning rate (default 2e-3).
	LR float64
	// Temperature of the KD loss (default 2).
	Temperature float64
	// Train is "lpr" (default) or "all".
	Train string
	// ValFraction is the held-out fraction (default 0.1; negative: 0).
	ValFraction float64
	// Mean and Std are the normalization, comma-separated ("" : 0 and 1).
	Mean, Std string
	// Fit is pad, crop or resize (default resize).
	Fit string
}

func (r Recipe) withDefaults() Recipe {
	if r.Batch <= 0 {
		r.Batch = 64
	}
	if r.LR <= 0 {
		r.LR = 2e-3
	}
	if r.Temperature <= 0 {
		r.Temperature = 2
	}
	if r.Train == "" {
		r.Train = "lpr"
	}
	if r.ValFraction == 0 {
		r.ValFraction = 0.1
	} else if r.ValFraction < 0 {
		r.ValFraction = 0
	}
	if r.Fit == "" {
		r.Fit = "resize"
	}
	return r
}

// validate checks the fields that are written into distill.py as
// Python literals.
func (r Recipe) validate() error {
	for _, f := range []struct{ name, list string }{{"mean", r.Mean}, {"std", r.Std}} {
		if f.list == "" {
			continue
		}
		for _, v := range strings.Split(f.list, ",") {
			if _, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err != nil {
				return fmt.Errorf("recipe %s %q: %w", f.name, f.list, err)
			}
		}
	}
	if r.Train != "lpr" && r.Train != "all" {
		return fmt.Errorf("recipe train %q: want lpr or all", r.Train)
	}
	if r.Fit != "resize" && r.Fit != "crop" && r.Fit != "pad" {
		return fmt.Errorf("recipe fit %q: want resize, crop or pad", r.Fit)
	}
	if r.ValFraction >= 1 || math.IsNaN(r.ValFraction) || math.IsNaN(r.LR) || math.IsNaN(r.Temperature) {
		return fmt.Errorf("recipe: val fraction %v, lr %v, temperature %v out of range", r.ValFraction, r.LR, r.Temperature)
	}
	return nil
}

// Options configure Export.
type Options struct {
	// Teacher, when set, is the model the student learns from (the
	// original of a compressed model); without it the student's own
	// exported weights teach.
	Teacher *onnxpb.ModelProto
	// Origin and TeacherOrigin name the source files in comments.
	Origin, TeacherOrigin string
	// Recipe sets distill.py's defaults.
	Recipe Recipe
}

// Result describes an exported folder.
type Result struct {
	Dir     string
	Files   []string
	Student *Module
	Teacher *Module
	// Trainable lists the student's initializers that --train lpr and
	// --train all train.
	Trainable map[string][]string
	Input     evaluate.Input
}

// names is the content of names.json.
type names struct {
	Format  string          `json:"format"`
	Input   inputInfo       `json:"input"`
	Student moduleNames     `json:"student"`
	Teacher *moduleNames    `json:"teacher,omitempty"`
	Recipe  json.RawMessage `json:"recipe"`
}

type inputInfo struct {
	Name     string `json:"name"`
	Channels int    `json:"channels"`
	Height   int    `json:"height"`
	Width    int    `json:"width"`
	// Batch is the fixed batch size of the input, 0 when dynamic.
	Batch int `json:"batch"`
}

type moduleNames struct {
	ONNX      string              `json:"onnx"`
	Module    string              `json:"module"`
	Tensors   []Tensor            `json:"tensors"`
	Trainable map[string][]string `json:"trainable,omitempty"`
	Inputs    []string            `json:"inputs"`
	Outputs   []string            `json:"outputs"`
}

// Format identifies the layout of an exported folder (names.json) and of
// the weights file distill.py writes.
const Format = "lprconv-torch"

// Export writes the Python package for student into dir (created when
// missing): model.onnx and model.py, teacher.onnx and teacher.py when
// opts.Teacher is set, onnxops.py, distill.py, names.json and README.md.
// Every file is written atomically.
func Export(dir string, student *onnxpb.ModelProto, opts Options) (*Result, error) {
	in, err := evaluate.ModelInput(student)
	if err != nil {
		return nil, fmt.Errorf("export-torch: %w", err)
	}
	res := &Result{Dir: dir, Input: in, Trainable: map[string][]string{}}
	for _, set := range []finetune.TrainSet{finetune.TrainLPR, finetune.TrainAll} {
		res.Trainable[set.String()] = append([]string{}, finetune.TrainableTensors(student, set)...)
	}
	if res.Student, err = Generate(student, GenOptions{ONNXFile: "model.onnx", Origin: opts.Origin}); err != nil {
		return nil, fmt.Errorf("export-torch: %s: %w", opts.Origin, err)
	}
	nm := names{Format: Format,
		Input:   inputInfo{Name: in.Name, Channels: in.Channels, Height: in.Height, Width: in.Width, Batch: in.Batch},
		Student: moduleNames{ONNX: "model.onnx", Module: "model.py", Tensors: res.Student.Tensors, Trainable: res.Trainable, Inputs: res.Student.Inputs, Outputs: res.Student.Outputs}}
	if opts.Teacher != nil {
		tin, err := evaluate.ModelInput(opts.Teacher)
		if err != nil {
			return nil, fmt.Errorf("export-torch: teacher %s: %w", opts.TeacherOrigin, err)
		}
		if tin.Channels != in.Channels || tin.Height != in.Height || tin.Width != in.Width {
			return nil, fmt.Errorf("export-torch: teacher %s takes %dx%dx%d images, the student %dx%dx%d", opts.TeacherOrigin,
				tin.Channels, tin.Height, tin.Width, in.Channels, in.Height, in.Width)
		}
		if res.Teacher, err = Generate(opts.Teacher, GenOptions{ONNXFile: "teacher.onnx", Origin: opts.TeacherOrigin}); err != nil {
			return nil, fmt.Errorf("export-torch: teacher %s: %w", opts.TeacherOrigin, err)
		}
		nm.Teacher = &moduleNames{ONNX: "teacher.onnx", Module: "teacher.py", Tensors: res.Teacher.Tensors, Inputs: res.Teacher.Inputs, Outputs: res.Teacher.Outputs}
	}
	rec := opts.Recipe.withDefaults()
	if err := rec.validate(); err != nil {
		return nil, fmt.Errorf("export-torch: %w", err)
	}
	if nm.Recipe, err = json.Marshal(rec); err != nil {
		return nil, err
	}
	files := map[string][]byte{"model.py": res.Student.Source}
	if res.Teacher != nil {
		files["teacher.py"] = res.Teacher.Source
	}
	if files["names.json"], err = json.MarshalIndent(nm, "", "  "); err != nil {
		return nil, err
	}
	ops, err := pyFiles.ReadFile("py/onnxops.py")
	if err != nil {
		return nil, err
	}
	files["onnxops.py"] = ops
	vals := templateValues(rec, in, opts, res)
	for _, f := range []string{"distill.py", "README.md"} {
		if files[f], err = render("py/"+f, vals); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("export-torch: %w", err)
	}
	if err := onnxio.Save(filepath.Join(dir, "model.onnx"), student, onnxio.SaveOptions{}); err != nil {
		return nil, fmt.Errorf("export-torch: %w", err)
	}
	res.Files = append(res.Files, "model.onnx")
	if opts.Teacher != nil {
		if err := onnxio.Save(filepath.Join(dir, "teacher.onnx"), opts.Teacher, onnxio.SaveOptions{}); err != nil {
			return nil, fmt.Errorf("export-torch: %w", err)
		}
		res.Files = append(res.Files, "teacher.onnx")
	}
	for _, f := range []string{"onnxops.py", "model.py", "teacher.py", "distill.py", "names.json", "README.md"} {
		if files[f] == nil {
			continue
		}
		if err := atomicfile.Write(filepath.Join(dir, f), files[f]); err != nil {
			return nil, fmt.Errorf("export-torch: %w", err)
		}
		res.Files = append(res.Files, f)
	}
	return res, nil
}

// templateValues are the fields distill.py and README.md are rendered with.
func templateValues(r Recipe, in evaluate.Input, opts Options, res *Result) map[string]any {
	params := 0
	for _, t := range res.Student.Tensors {
		if t.Param {
			params++
		}
	}
	return map[string]any{
		"Batch": r.Batch, "LR": strconv.FormatFloat(r.LR, 'g', -1, 64), "Temperature": strconv.FormatFloat(r.Temperature, 'g', -1, 64),
		"Train": r.Train, "ValFraction": strconv.FormatFloat(r.ValFraction, 'g', -1, 64), "Mean": r.Mean, "Std": r.Std, "Fit": r.Fit,
		"Origin": opts.Origin, "TeacherOrigin": opts.TeacherOrigin, "HasTeacher": opts.Teacher != nil,
		"Input": in, "Params": params, "LPR": len(res.Trainable["lpr"]), "All": len(res.Trainable["all"]),
	}
}

func render(name string, vals map[string]any) ([]byte, error) {
	text, err := pyFiles.ReadFile(name)
	if err != nil {
		return nil, err
	}
	t, err := template.New(name).Option("missingkey=error").Parse(string(text))
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, vals); err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	return b.Bytes(), nil
}
