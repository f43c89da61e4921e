package sweep

import (
	"fmt"
	"strconv"
	"strings"
)

// Shard selects the part of a sweep that one worker runs: shard Index of
// Count. The zero Shard is the whole sweep.
//
// Assignment is by position in the canonical configuration order (the
// order Grid returns: residuals outer, then ratios, then budgets): shard I
// of N runs the contiguous block of configurations [I·M/N, (I+1)·M/N) of
// the M configurations. It depends only on the flags that define the grid,
// never on what is already finished, so every shard of one command, and
// every re-run of it, agrees on who runs what. Blocks (rather than a hash
// of the configuration's name) give every shard ⌊M/N⌋ or ⌈M/N⌉
// configurations, and keep configurations of one residual together, so
// that a shard's budget configurations share its per-residual sensitivity
// measurement.
type Shard struct {
	Index, Count int
}

// Sharded reports whether s is a part of the sweep rather than all of it.
func (s Shard) Sharded() bool { return s.Count > 0 }

// String returns the form ParseShard reads, e.g. "1/4"; "" for the whole
// sweep.
func (s Shard) String() string {
	if !s.Sharded() {
		return ""
	}
	return strconv.Itoa(s.Index) + "/" + strconv.Itoa(s.Count)
}

// ParseShard reads "I/N": shard I (0-based) of N, with N ≥ 1 and
// 0 ≤ I < N.
func ParseShard(text string) (Shard, error) {
	i, n, ok := strings.Cut(strings.TrimSpace(text), "/")
	if !ok {
		return Shard{}, fmt.Errorf("shard %q: want I/N with N >= 1 and 0 <= I <= N-1, e.g. 0/4 for the first of 4 shards", text)
	}
	index, err1 := strconv.Atoi(strings.TrimSpace(i))
	count, err2 := strconv.Atoi(strings.TrimSpace(n))
	switch {
	case err1 != nil || err2 != nil:
		return Shard{}, fmt.Errorf("shard %q: want whole numbers I/N with N >= 1 and 0 <= I <= N-1, e.g. 0/4 for the first of 4 shards", text)
	case count < 1:
		return Shard{}, fmt.Errorf("shard %q: the shard count N must be at least 1 (and 0 <= I <= N-1)", text)
	case index < 0 || index >= count:
		return Shard{}, fmt.Errorf("shard %q: the shard index I must be in 0..%d (0 <= I <= N-1 for N = %d)", text, count-1, count)
	}
	return Shard{Index: index, Count: count}, nil
}

// Validate checks a Shard built without ParseShard.
func (s Shard) Validate() error {
	if s == (Shard{}) {
		return nil
	}
	if s.Count < 1 || s.Index < 0 || s.Index >= s.Count {
		return fmt.Errorf("shard %d/%d: want 0 <= I < N", s.Index, s.Count)
	}
	return nil
}

// Range returns the indices [lo, hi) of the configurations, out of m in
// canonical order, that s runs; the whole sweep runs [0, m).
func (s Shard) Range(m int) (lo, hi int) {
	if !s.Sharded() {
		return 0, m
	}
	return s.Index * m / s.Count, (s.Index + 1) * m / s.Count
}
