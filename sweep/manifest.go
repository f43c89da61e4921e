package sweep

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/lprconv/lprconv/internal/atomicfile"
	"github.com/lprconv/lprconv/report"
)

// ManifestFile is the file, in the state folder, that describes the sweep
// last started in an output folder: its configurations in order, the
// original model's measurements and the report's metadata. With the
// configurations' state it is all that Report needs.
const ManifestFile = "sweep.json"

// manifest is the content of ManifestFile.
type manifest struct {
	Version     int    `json:"version"`
	Fingerprint string `json:"fingerprint"`
	// Model is the original model's path as the sweep was given it; the
	// compressed models are named after it.
	Model    string      `json:"model"`
	Configs  []Config    `json:"configs"`
	Meta     report.Meta `json:"meta"`
	Original Original    `json:"original"`
	// Latency records that the sweep asked for latency, which only a run
	// of the whole sweep measures.
	Latency bool `json:"latency,omitempty"`
}

// writeManifest records the sweep that opts describe, atomically. Every
// worker of a sharded sweep writes it; they write the same content (but
// for the date), so whichever write lands last is right. A manifest that
// differs only in the date is left as it is, so that a re-run that
// computes nothing rewrites nothing.
func writeManifest(opts Options, orig Original, fingerprint string) error {
	path := filepath.Join(opts.Out, StateDir, ManifestFile)
	m := manifest{
		Version: stateVersion, Fingerprint: fingerprint, Model: opts.Model, Configs: opts.Configs,
		Meta: opts.Meta, Original: orig, Latency: opts.Latency != nil,
	}
	if old, err := readManifest(opts.Out); err == nil {
		undated := func(m manifest) string {
			m.Meta.Date = ""
			data, _ := json.Marshal(m)
			return string(data)
		}
		if undated(*old) == undated(m) {
			return nil
		}
	}
	return writeJSON(path, m)
}

// writeJSON writes v as indented JSON to path atomically, creating its
// folder.
func writeJSON(path string, v any) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create state folder: %w", err)
	}
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return atomicfile.Write(path, append(data, '\n'))
}

// readManifest reads the manifest of the sweep in dir.
func readManifest(dir string) (*manifest, error) {
	path := filepath.Join(dir, StateDir, ManifestFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s is not a sweep's output folder: %s is missing (it is written when a sweep starts)", dir, path)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var m manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("corrupt %s: %w", path, err)
	}
	if m.Version != stateVersion {
		return nil, fmt.Errorf("%s has state version %d, want %d: run the sweep again with this lprconv", path, m.Version, stateVersion)
	}
	if len(m.Configs) == 0 {
		return nil, fmt.Errorf("%s lists no configurations", path)
	}
	return &m, nil
}

// recorded returns the recorded outcome of every configuration: a row
// (with its model's path in out), an unmet budget, or not done.
func recorded(out, model string, cfgs []Config, fingerprint string) []outcome {
	outs := make([]outcome, len(cfgs))
	for i, cfg := range cfgs {
		modelPath := filepath.Join(out, cfg.ModelFile(model))
		if row, ok, _ := loadState(out, cfg, fingerprint, modelPath); ok {
			row.Model = modelPath
			outs[i] = outcome{done: true, row: row}
		} else if why, ok := loadUnmet(out, cfg, fingerprint); ok {
			outs[i] = outcome{done: true, unmet: why}
		}
	}
	return outs
}

// countDone counts the configurations recorded as finished or unmet.
func countDone(out, model string, cfgs []Config, fingerprint string) int {
	n := 0
	for _, o := range recorded(out, model, cfgs, fingerprint) {
		if o.done {
			n++
		}
	}
	return n
}

// Report builds the report files in dir (report.md, results.csv,
// results.json and the plots) from what is recorded there: the sweep last
// started in dir (its manifest) and every configuration any worker has
// finished, whichever shard ran it. It computes nothing. Configurations
// that have not finished are left out and named in a note; latency, which
// only a run of the whole sweep measures on one machine, is left out.
func Report(dir string, progress io.Writer) (*Result, error) {
	log := newLogger(progress)
	m, err := readManifest(dir)
	if err != nil {
		return nil, err
	}
	outs := recorded(dir, m.Model, m.Configs, m.Fingerprint)
	var missing, unmet []string
	finished := 0
	for i, o := range outs {
		switch {
		case !o.done:
			missing = append(missing, m.Configs[i].Name())
		case o.unmet != "":
			unmet = append(unmet, m.Configs[i].Name())
			finished++
		default:
			finished++
		}
	}
	if finished == 0 {
		return nil, fmt.Errorf("no configuration of the sweep in %s has finished yet (%d to run)", dir, len(m.Configs))
	}
	note := fmt.Sprintf("This report was built by lprconv sweep --report from the results recorded in %s: %d of %d configurations finished.", StateDir, finished, len(m.Configs))
	if len(missing) > 0 {
		note += " Not finished yet: " + strings.Join(missing, ", ") + "."
	}
	s := assemble(m.Meta, m.Original, m.Configs, outs, note)
	if m.Latency {
		s.Meta.Notes = append(s.Meta.Notes, "Latency was not measured: a report built from recorded results measures nothing; run the sweep command without --shard on one machine to add it (finished configurations are not recomputed).")
	}
	files, err := report.WriteAll(dir, s)
	if err != nil {
		return nil, err
	}
	log.printf("sweep: report of %d of %d configurations written to %s", finished, len(m.Configs), dir)
	return &Result{Sweep: s, Skipped: finished, Unmet: unmet, Files: files, Finished: finished, Total: len(m.Configs)}, nil
}
