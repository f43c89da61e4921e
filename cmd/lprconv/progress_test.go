package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestProgressRate checks that a progress line quotes a rate and an ETA
// only over units done since its reference point, and not on a line drawn
// right at that point (compress creates its bars on their first update,
// which used to print rates of hundreds of thousands of steps per second).
func TestProgressRate(t *testing.T) {
	tests := []struct {
		name     string
		base     int
		ago      time.Duration
		done     int
		want     []string
		wantNone []string
	}{
		{name: "first update", base: 1, ago: 0, done: 1, want: []string{"fine-tune [", "1/100 steps"}, wantNone: []string{"/s", "ETA"}},
		{name: "too soon", base: 1, ago: minRateSpan / 2, done: 3, wantNone: []string{"/s", "ETA"}},
		{name: "counted from base", base: 1, ago: 2 * time.Second, done: 11, want: []string{"11/100 steps, 5.0 steps/s, ETA 18s"}},
		{name: "from creation", base: 0, ago: 2 * time.Second, done: 10, want: []string{"10/100 steps, 5.0 steps/s, ETA 18s"}},
		{name: "finished", base: 1, ago: 2 * time.Second, done: 100, want: []string{"100/100 steps, 49.5 steps/s"}, wantNone: []string{"ETA"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			p := newProgressFrom(&buf, "fine-tune", "steps", 100, tc.base)
			p.start = time.Now().Add(-tc.ago)
			p.update(tc.done, "")
			line := buf.String()
			for _, w := range tc.want {
				if !strings.Contains(line, w) {
					t.Errorf("line %q lacks %q", line, w)
				}
			}
			for _, w := range tc.wantNone {
				if strings.Contains(line, w) {
					t.Errorf("line %q has %q", line, w)
				}
			}
		})
	}
}
