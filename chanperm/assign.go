package chanperm

import (
	"context"
	"fmt"
	"math"
)

// MaxAssignment solves the linear assignment problem on the n×n matrix a
// (row-major): it returns the permutation p, p[i] the column given to row
// i, that maximizes Σᵢ a[i, p(i)].
//
// It is the Kuhn–Munkres method in its shortest-augmenting-path form: rows
// enter one at a time, and each entry grows the matching by one along a
// cheapest alternating path found with Dijkstra over reduced costs
// c[i, j] − u[i] − v[j] ≥ 0, where c = −a and the dual potentials u, v
// keep every reduced cost non-negative. The matching is optimal because
// Σ u + Σ v equals its cost at the end (linear programming duality). Time
// O(n³), memory O(n).
func MaxAssignment(ctx context.Context, a []float64, n int) ([]int, error) {
	if n < 0 || len(a) != n*n {
		return nil, fmt.Errorf("assignment: %d values for a %d×%d matrix", len(a), n, n)
	}
	for _, x := range a {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("assignment: matrix holds %v", x)
		}
	}
	// Columns and rows are numbered from 1; column 0 is the virtual start
	// of each augmenting path.
	u := make([]float64, n+1)
	v := make([]float64, n+1)
	rowOf := make([]int, n+1) // rowOf[j]: row matched to column j (0: none)
	prev := make([]int, n+1)  // previous column on the cheapest path
	dist := make([]float64, n+1)
	done := make([]bool, n+1)
	for i := 1; i <= n; i++ {
		if i%64 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		rowOf[0] = i
		j0 := 0
		for j := range dist {
			dist[j], done[j] = math.Inf(1), false
		}
		for {
			done[j0] = true
			i0 := rowOf[j0]
			row := a[(i0-1)*n : i0*n]
			delta, j1 := math.Inf(1), 0
			for j := 1; j <= n; j++ {
				if done[j] {
					continue
				}
				if c := -row[j-1] - u[i0] - v[j]; c < dist[j] {
					dist[j], prev[j] = c, j0
				}
				if dist[j] < delta {
					delta, j1 = dist[j], j
				}
			}
			for j := 0; j <= n; j++ {
				if done[j] {
					u[rowOf[j]] += delta
					v[j] -= delta
				} else {
					dist[j] -= delta
				}
			}
			j0 = j1
			if rowOf[j0] == 0 {
				break
			}
		}
		for j0 != 0 { // flip the path
			j1 := prev[j0]
			rowOf[j0] = rowOf[j1]
			j0 = j1
		}
	}
	p := make([]int, n)
	for j := 1; j <= n; j++ {
		p[rowOf[j]-1] = j - 1
	}
	return p, nil
}
