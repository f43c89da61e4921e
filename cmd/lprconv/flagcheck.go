package main

import (
	"fmt"
	"math"

	"github.com/urfave/cli/v2"
)

// flagRange is the valid range of a numeric flag: Min <= v (Min < v when
// MinOpen) and v <= Max (v < Max when MaxOpen). An explicitly given value
// outside it is a usage error; it never falls back to the default.
type flagRange struct {
	Name             string
	Min, Max         float64
	MinOpen, MaxOpen bool
}

// describe writes the range as an interval, e.g. "(0, 1]" or ">= 1".
func (r flagRange) describe() string {
	lo, hi := "[", "]"
	if r.MinOpen {
		lo = "("
	}
	if r.MaxOpen {
		hi = ")"
	}
	switch {
	case math.IsInf(r.Max, 1) && r.MinOpen:
		return fmt.Sprintf("> %g", r.Min)
	case math.IsInf(r.Max, 1):
		return fmt.Sprintf(">= %g", r.Min)
	}
	return fmt.Sprintf("in %s%g, %g%s", lo, r.Min, r.Max, hi)
}

// contains reports whether v lies in the range (NaN never does).
func (r flagRange) contains(v float64) bool {
	if math.IsNaN(v) {
		return false
	}
	if v < r.Min || (r.MinOpen && v == r.Min) {
		return false
	}
	return v < r.Max || (!r.MaxOpen && v == r.Max)
}

// flagRanges lists the numeric flags of every command with their valid
// ranges; a command checks those of its flags that the user set.
func flagRanges() []flagRange {
	inf := math.Inf(1)
	atLeast := func(name string, min float64) flagRange { return flagRange{Name: name, Min: min, Max: inf} }
	positive := func(name string) flagRange { return flagRange{Name: name, Min: 0, MinOpen: true, Max: inf} }
	fraction := func(name string) flagRange { return flagRange{Name: name, Min: 0, MinOpen: true, Max: 1} }
	return []flagRange{
		atLeast("rank", 1),
		fraction("rank-ratio"),
		fraction("energy"),
		atLeast("multiple", 1),
		atLeast("channel-align", 1),
		atLeast("workers", 0),
		atLeast("threads", 0),
		atLeast("jobs", 1),
		atLeast("batch", 1),
		atLeast("limit", 0),
		atLeast("random", 1),
		atLeast("epochs", 1),
		atLeast("steps", 1),
		atLeast("warmup", 0),
		positive("lr"),
		{Name: "momentum", Min: 0, Max: 1, MaxOpen: true},
		atLeast("weight-decay", 0),
		positive("temperature"),
		{Name: "val-fraction", Min: 0, Max: 1, MaxOpen: true},
		atLeast("calib", 1),
		atLeast("checkpoint-every", 1),
		atLeast("budget-samples", 1),
		atLeast("latency-runs", 1),
		positive("tolerance"),
	}
}

// checkFlagRanges returns a usage error (exit code 2) naming the first
// flag the user set to a value outside its range, with the valid range.
func checkFlagRanges(c *cli.Context, cmd string) error {
	for _, r := range flagRanges() {
		if !c.IsSet(r.Name) {
			continue
		}
		var v float64
		switch x := c.Value(r.Name).(type) {
		case int:
			v = float64(x)
		case int64:
			v = float64(x)
		case uint64:
			v = float64(x)
		case float64:
			v = x
		default:
			continue
		}
		if !r.contains(v) {
			return cli.Exit(fmt.Sprintf("%s: --%s %v: must be %s", cmd, r.Name, c.Value(r.Name), r.describe()), 2)
		}
	}
	return nil
}
