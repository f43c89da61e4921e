package engine

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// StepTime is the measured time of one step of a program.
type StepTime struct {
	Index  int    // node index in the graph
	OpType string // operator type
	Name   string // node name
	Shape  []int  // shape of the first output
	Time   time.Duration
}

// ProfileSteps runs the program runs times on inputs and returns the mean
// time of every step, in execution order.
func (p *Program) ProfileSteps(inputs map[string]*Tensor, runs int) ([]StepTime, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	res := make([]StepTime, len(p.steps))
	for i, st := range p.steps {
		res[i] = StepTime{Index: st.Index, OpType: st.Node.OpType, Name: st.Node.Name, Shape: st.Out[0].Shape}
	}
	for r := 0; r < max(runs, 1); r++ {
		if err := p.forward(inputs); err != nil { // also loads the inputs
			return nil, err
		}
		for i, st := range p.steps {
			t0 := time.Now()
			if err := st.Op.Forward(p.ctx, st.In, st.Out); err != nil {
				return nil, fmt.Errorf("profile: node %d (%s %q): %w", st.Index, st.Node.OpType, st.Node.Name, err)
			}
			res[i].Time += time.Since(t0)
		}
	}
	for i := range res {
		res[i].Time /= time.Duration(max(runs, 1))
	}
	return res, nil
}

// FormatProfile summarizes step times per operator type and lists the
// slowest steps.
func FormatProfile(times []StepTime, top int) string {
	var sb strings.Builder
	per := map[string]time.Duration{}
	var total time.Duration
	for _, t := range times {
		per[t.OpType] += t.Time
		total += t.Time
	}
	var ops []string
	for op := range per {
		ops = append(ops, op)
	}
	sort.Slice(ops, func(i, j int) bool { return per[ops[i]] > per[ops[j]] })
	fmt.Fprintf(&sb, "total %v\n", total)
	for _, op := range ops {
		fmt.Fprintf(&sb, "  %-20s %10v %5.1f%%\n", op, per[op], 100*float64(per[op])/float64(max(total, 1)))
	}
	sorted := append([]StepTime(nil), times...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Time > sorted[j].Time })
	for _, t := range sorted[:min(top, len(sorted))] {
		fmt.Fprintf(&sb, "  node %3d %-18s %-24q %v %v\n", t.Index, t.OpType, t.Name, t.Shape, t.Time)
	}
	return sb.String()
}
