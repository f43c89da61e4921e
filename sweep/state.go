package sweep

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/lprconv/lprconv/internal/atomicfile"
	"github.com/lprconv/lprconv/report"
)

// StateDir is the folder, inside the output folder, that records finished
// configurations.
const StateDir = "state"

// stateVersion changes when the state file's meaning changes; older files
// are then recomputed.
const stateVersion = 1

// stateFile records one finished configuration.
type stateFile struct {
	Version int `json:"version"`
	// Fingerprint identifies the inputs and settings the row was measured
	// with; a different fingerprint makes the row stale.
	Fingerprint string     `json:"fingerprint"`
	Config      string     `json:"config"`
	Row         report.Row `json:"row"`
}

// statePath returns where the state of cfg is recorded.
func statePath(out string, cfg Config) string {
	return filepath.Join(out, StateDir, cfg.Name()+".json")
}

// loadState returns the recorded row of cfg when it was finished with the
// same fingerprint and its model file still exists. A missing, unreadable,
// stale or corrupt state means "not finished"; why is returned as a reason
// for the progress log (empty when there was simply no state).
func loadState(out string, cfg Config, fingerprint, modelPath string) (row report.Row, ok bool, reason string) {
	path := statePath(out, cfg)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return report.Row{}, false, ""
	}
	if err != nil {
		return report.Row{}, false, fmt.Sprintf("cannot read %s: %v", path, err)
	}
	var st stateFile
	if err := json.Unmarshal(data, &st); err != nil {
		return report.Row{}, false, fmt.Sprintf("corrupt %s: %v", path, err)
	}
	switch {
	case st.Version != stateVersion:
		return report.Row{}, false, fmt.Sprintf("%s has state version %d, want %d", path, st.Version, stateVersion)
	case st.Config != cfg.Name():
		return report.Row{}, false, fmt.Sprintf("%s records configuration %q", path, st.Config)
	case st.Fingerprint != fingerprint:
		return report.Row{}, false, "model, data or settings changed since it was recorded"
	}
	if _, err := os.Stat(modelPath); err != nil {
		return report.Row{}, false, fmt.Sprintf("its model %s is missing", modelPath)
	}
	return st.Row, true, ""
}

// saveState records cfg as finished, atomically.
func saveState(out string, cfg Config, fingerprint string, row report.Row) error {
	dir := filepath.Join(out, StateDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create state folder: %w", err)
	}
	data, err := json.MarshalIndent(stateFile{
		Version: stateVersion, Fingerprint: fingerprint, Config: cfg.Name(), Row: row,
	}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state of %s: %w", cfg.Name(), err)
	}
	if err := atomicfile.Write(statePath(out, cfg), append(data, '\n')); err != nil {
		return fmt.Errorf("record state of %s: %w", cfg.Name(), err)
	}
	return nil
}
