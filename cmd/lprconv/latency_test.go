package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lprconv/lprconv/internal/testutil"
)

// latencyJSON is compress --json's latency object.
type latencyJSON struct {
	Latency *struct {
		Measured bool   `json:"measured"`
		Reason   string `json:"reason"`
		Runtime  string `json:"runtime"`
		Threads  int    `json:"threads"`
		Clock    string `json:"clock"`
		Batches  []struct {
			Batch        int64   `json:"batch"`
			OriginalMs   float64 `json:"original_ms"`
			CompressedMs float64 `json:"compressed_ms"`
			Ratio        float64 `json:"ratio"`
			RatioLow     float64 `json:"ratio_low"`
			RatioHigh    float64 `json:"ratio_high"`
			Rounds       int     `json:"rounds"`
		} `json:"batches"`
		Planned bool `json:"planned"`
		Layers  []struct {
			Name   string `json:"name"`
			Kept   bool   `json:"kept"`
			Reason string `json:"reason"`
		} `json:"layers"`
	} `json:"latency"`
	Replaced int `json:"replaced"`
	Layers   []struct {
		Name    string `json:"name"`
		Replace bool   `json:"replace"`
		Reason  string `json:"reason"`
	} `json:"layers"`
}

// TestCompressLatencyJSON: with ONNX Runtime present, compress --json
// reports the latency of original and result at the asked batch sizes
// (--keep-slower: every layer the rule replaces stays replaced), and
// without --keep-slower every layer kept by latency has its measured
// reason in the per-layer table.
func TestCompressLatencyJSON(t *testing.T) {
	lib := testutil.RequireORT(t)
	in := testutil.Fixture(t, "mobilenetv1.onnx")
	for _, tc := range []struct {
		name  string
		flags []string
	}{
		{"keep slower", []string{"--keep-slower"}},
		{"planned", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"compress", in, "--dry-run", "--json", "--ort-lib", lib, "--latency-batch", "1,4"}, tc.flags...)
			code, stdout, stderr := runCLI(args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			var r latencyJSON
			if err := json.Unmarshal([]byte(stdout), &r); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, stdout)
			}
			l := r.Latency
			if l == nil {
				t.Fatalf("no latency in %s", stdout)
			}
			if r.Replaced > 0 {
				if !l.Measured || len(l.Batches) != 2 || l.Batches[0].Batch != 1 || l.Batches[1].Batch != 4 || !strings.HasPrefix(l.Runtime, "ONNX Runtime ") || l.Threads != 1 {
					t.Fatalf("latency %+v", l)
				}
				for _, b := range l.Batches {
					if b.OriginalMs <= 0 || b.CompressedMs <= 0 || b.Rounds < 3 || !(b.RatioLow <= b.Ratio && b.Ratio <= b.RatioHigh) {
						t.Errorf("batch %+v", b)
					}
				}
			} else if l.Measured || l.Reason == "" {
				t.Errorf("nothing replaced, latency %+v", l)
			}
			if tc.flags != nil {
				if l.Planned || r.Replaced == 0 {
					t.Errorf("--keep-slower: planned %v, replaced %d", l.Planned, r.Replaced)
				}
				return
			}
			if !l.Planned {
				t.Fatalf("not planned: %+v", l)
			}
			reasons := map[string]string{}
			for _, x := range r.Layers {
				reasons[x.Name] = x.Reason
			}
			for _, x := range l.Layers {
				if x.Kept && reasons[x.Name] != x.Reason {
					t.Errorf("%s kept for %q, but the table says %q", x.Name, x.Reason, reasons[x.Name])
				}
			}
		})
	}
}

// TestCompressBogusORT: a file that is not ONNX Runtime gives a one-line
// "latency not measured" and compress still writes its model.
func TestCompressBogusORT(t *testing.T) {
	dir := t.TempDir()
	bogus := filepath.Join(dir, "libonnxruntime.so")
	if err := os.WriteFile(bogus, []byte("not a library\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	in := testutil.Fixture(t, "mobilenetv1.onnx")
	out := filepath.Join(dir, "out.onnx")
	for _, lib := range []string{bogus, filepath.Join(dir, "missing.so")} {
		code, stdout, stderr := runCLI("compress", in, "-o", out, "--overwrite", "--ort-lib", lib)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var line string
		for _, l := range strings.Split(stdout, "\n") {
			if strings.HasPrefix(l, "latency:") {
				line = l
			}
		}
		if !strings.HasPrefix(line, "latency:   not measured: ") || !strings.Contains(line, lib) {
			t.Errorf("--ort-lib %s: latency line %q in\n%s", lib, line, stdout)
		}
		if st, err := os.Stat(out); err != nil || st.Size() == 0 {
			t.Errorf("no output: %v", err)
		}
	}
	code, _, stderr := runCLI("compress", in, "--dry-run", "--no-latency", "--keep-slower")
	if code != 2 || !strings.Contains(stderr, "--keep-slower has no effect with --no-latency") {
		t.Errorf("--no-latency --keep-slower: exit %d, %s", code, stderr)
	}
}
