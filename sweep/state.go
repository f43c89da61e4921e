package sweep

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

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
	// Unmet, in an unmet-budget record, says why the configuration has
	// no row.
	Unmet string `json:"unmet,omitempty"`
}

// statePath returns where the state of cfg is recorded.
func statePath(out string, cfg Config) string {
	return filepath.Join(out, StateDir, cfg.Name()+".json")
}

// unmetPath returns where a budget configuration that no offered ranks
// reach is recorded. It is not a finished state: a plain re-run tries the
// budget again, but a report built from the state (Report), and a worker
// that waited for another to run it, take the reason from it.
func unmetPath(out string, cfg Config) string {
	return filepath.Join(out, StateDir, cfg.Name()+".unmet.json")
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

// loadUnmet returns the recorded reason why cfg's budget cannot be met,
// when it was recorded with the same fingerprint.
func loadUnmet(out string, cfg Config, fingerprint string) (why string, ok bool) {
	data, err := os.ReadFile(unmetPath(out, cfg))
	if err != nil {
		return "", false
	}
	var st stateFile
	if json.Unmarshal(data, &st) != nil || st.Version != stateVersion || st.Config != cfg.Name() ||
		st.Fingerprint != fingerprint || st.Unmet == "" {
		return "", false
	}
	return st.Unmet, true
}

// saveState records cfg as finished, atomically.
func saveState(out string, cfg Config, fingerprint string, row report.Row) error {
	return writeState(statePath(out, cfg), stateFile{
		Version: stateVersion, Fingerprint: fingerprint, Config: cfg.Name(), Row: row,
	})
}

// saveUnmet records that cfg's budget cannot be met, and why, atomically.
func saveUnmet(out string, cfg Config, fingerprint, why string) error {
	return writeState(unmetPath(out, cfg), stateFile{
		Version: stateVersion, Fingerprint: fingerprint, Config: cfg.Name(), Unmet: why,
	})
}

// writeState writes one state record atomically.
func writeState(path string, st stateFile) error {
	if err := writeJSON(path, st); err != nil {
		return fmt.Errorf("record state of %s: %w", st.Config, err)
	}
	return nil
}
