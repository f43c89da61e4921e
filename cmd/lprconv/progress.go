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
//
// The rate is (done − base)/(now − start) over the units done since the
// reference point (start, base): creation with 0 done, or the first update
// when the reporter is created on that update (newProgressFrom). A line is
// given a rate and an ETA only once units were done over at least
// minRateSpan, so that a first line drawn microseconds after its reference
// point does not claim an absurd rate.
type progress struct {
	w        io.Writer
	label    string
	unit     string
	total    int
	base     int
	start    time.Time
	last     time.Time
	terminal bool
	every    time.Duration
}

// minRateSpan is the shortest span over which progress quotes a rate.
const minRateSpan = 100 * time.Millisecond

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

// newProgressFrom is newProgress for a reporter created on the update that
// reports done units: the rate counts from there.
func newProgressFrom(w io.Writer, label, unit string, total, done int) *progress {
	p := newProgress(w, label, unit, total)
	p.base = done
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
	span := now.Sub(p.start)
	rate := 0.0
	if span >= minRateSpan && done > p.base {
		rate = float64(done-p.base) / span.Seconds()
	}
	line := fmt.Sprintf("%s %d", p.label, done)
	if p.total > 0 {
		line = fmt.Sprintf("%s %s %d/%d", p.label, bar(done, p.total, 24), done, p.total)
	}
	line += " " + p.unit
	if rate > 0 {
		line += fmt.Sprintf(", %.1f %s/s", rate, p.unit)
	}
	if p.total > 0 && rate > 0 && done < p.total {
		line += ", ETA " + time.Duration(float64(p.total-done)/rate*float64(time.Second)).Round(time.Second).String()
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
