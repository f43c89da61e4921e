package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestCompressRelabel: a data-free compress relabels channels and says so
// in the summary and --json; --relabel off keeps the order; a bad value is
// a usage error.
func TestCompressRelabel(t *testing.T) {
	decode := func(args ...string) map[string]json.RawMessage {
		t.Helper()
		code, stdout, stderr := runCLI(append([]string{"compress", fixtureModel, "--dry-run", "--no-latency", "--json"}, args...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(stdout), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	var rep struct {
		Groups int `json:"groups"`
		Layers []struct {
			NegativeAfter int  `json:"negative_after"`
			Relabeled     bool `json:"relabeled"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(decode()["relabel"], &rep); err != nil || rep.Groups == 0 || len(rep.Layers) == 0 || !rep.Layers[0].Relabeled {
		t.Fatalf("relabel report %+v (%v)", rep, err)
	}
	if _, ok := decode("--relabel", "off")["relabel"]; ok {
		t.Error("--relabel off still reports a relabeling")
	}
	code, stdout, _ := runCLI("compress", fixtureModel, "--dry-run", "--no-latency")
	if code != 0 || !strings.Contains(stdout, "channels:  8 groups relabeled") {
		t.Errorf("summary has no relabeling line:\n%s", stdout)
	}
	if code, _, stderr := runCLI("compress", fixtureModel, "--dry-run", "--relabel", "sometimes"); code != 2 || !strings.Contains(stderr, "--relabel") {
		t.Errorf("--relabel sometimes: exit %d, %s", code, stderr)
	}
}
