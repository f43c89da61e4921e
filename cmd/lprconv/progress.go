package main

import (
	"fmt"
	"io"
	"os"
	"time"
)

// progress reports the advance of long work on stderr: a bar redrawn in
// place with rate and ETA on a terminal, and a plain line every few seconds
// otherwise.
type progress struct {
	w        io.Writer
	label    string
	unit     string
	total    int
	start    time.Time
	last     time.Time
	terminal bool
	every    time.Duration
}

// newProgress starts reporting work of total units (0 when unknown).
func newProgress(w io.Writer, label, unit string, total int) *progress {
	p := &progress{w: w, label: label, unit: unit, total: total, start: time.Now(), every: 5 * time.Second}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.terminal = true
			p.every = 200 * time.Millisecond
		}
	}
	return p
}

// update reports done units and an optional status such as the loss.
func (p *progress) update(done int, status string) {
	if p == nil || p.w == nil {
		return
	}
	now := time.Now()
	if now.Sub(p.last) < p.every && (p.total == 0 || done < p.total) {
		return
	}
	p.last = now
	el := now.Sub(p.start).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(done) / el
	}
	line := fmt.Sprintf("%s %d", p.label, done)
	if p.total > 0 {
		line = fmt.Sprintf("%s %s %d/%d", p.label, bar(done, p.total, 24), done, p.total)
	}
	line += fmt.Sprintf(" %s, %.1f %s/s", p.unit, rate, p.unit)
	if p.total > 0 && rate > 0 && done < p.total {
		line += ", ETA " + (time.Duration(float64(p.total-done)/rate) * time.Second).Round(time.Second).String()
	}
	if status != "" {
		line += ", " + status
	}
	if p.terminal {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		if p.total > 0 && done >= p.total {
			fmt.Fprintln(p.w)
		}
		return
	}
	fmt.Fprintln(p.w, line)
}

// finish ends a terminal line that is still being redrawn.
func (p *progress) finish() {
	if p != nil && p.terminal && (p.total == 0 || !p.last.IsZero()) {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

func bar(done, total, width int) string {
	n := done * width / total
	n = max(0, min(n, width))
	b := make([]byte, width+2)
	b[0], b[width+1] = '[', ']'
	for i := 1; i <= width; i++ {
		b[i] = ' '
		if i <= n {
			b[i] = '='
		}
	}
	return string(b)
}
