package stats

import (
	"fmt"
	"math/big"
)

// CohensKappa returns Cohen's κ = (pₒ − pₑ)/(1 − pₑ) for a k×k confusion
// matrix (rows are the primary model's class, columns the shadow's), where
// pₒ = Σᵢ Cᵢᵢ/N and pₑ = Σᵢ rowᵢ·colᵢ/N²; it returns 1 when pₑ = 1 (which
// happens only when all N pairs fall in one diagonal cell, so pₒ = 1 too) and
// 0 for an empty or all-zero matrix.
func CohensKappa(confusion [][]int64) float64 {
	k := len(confusion)
	rows := make([]int64, k)
	cols := make([]int64, k)
	var total, diag int64
	for i, row := range confusion {
		if len(row) != k {
			panic(fmt.Sprintf("stats: CohensKappa: row %d has %d columns, want %d", i, len(row), k))
		}
		for j, c := range row {
			if c < 0 {
				panic(fmt.Sprintf("stats: CohensKappa: negative count %d at (%d, %d)", c, i, j))
			}
			rows[i] += c
			cols[j] += c
			total += c
		}
		diag += row[i]
	}
	if total == 0 {
		return 0
	}
	// Multiplying pₒ − pₑ and 1 − pₑ by N² leaves integers:
	// κ = (N·Σdiag − Σ rowᵢ·colᵢ) / (N² − Σ rowᵢ·colᵢ). Evaluating them
	// exactly avoids the cancellation in 1 − pₑ when pₑ is close to 1 (one
	// dominant class), and big.Int avoids int64 overflow of N².
	n := big.NewInt(total)
	var chance, t big.Int
	for i := range k {
		chance.Add(&chance, t.Mul(big.NewInt(rows[i]), big.NewInt(cols[i])))
	}
	num := new(big.Int).Mul(n, big.NewInt(diag))
	num.Sub(num, &chance)
	den := new(big.Int).Mul(n, n)
	den.Sub(den, &chance)
	if den.Sign() == 0 {
		return 1
	}
	kappa, _ := new(big.Rat).SetFrac(num, den).Float64()
	return kappa
}
