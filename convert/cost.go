package convert

// CostAt returns the parameters and multiply-accumulates the layer would
// have at the given rank with its residual kind: those of its LPR module
// when rank >= 1, its original ones (ParamsBefore, MACsBefore) when rank
// is 0 (kept). It counts like NewPlan's per-layer figures.
func (l *LayerPlan) CostAt(rank int) (params, macs int64) {
	if rank <= 0 {
		return l.ParamsBefore, l.MACsBefore
	}
	return moduleCost(l.Candidate, rank, l.Residual, anyNonZero(l.Bias))
}
