// Package stats holds the statistics behind the comparison report: intervals
// and tests for agreement between the primary and shadow models, drift
// measures between their output distributions, latency percentiles and
// regression error summaries.
//
// Every function is pure: it performs no I/O and never modifies its inputs.
// Inputs that can only come from a programming error (negative counts,
// mismatched lengths, an unsorted slice passed as sorted) panic; inputs that
// merely carry no information (an empty sample) give a documented value.
//
// It imports gonum and the standard library only, nothing of Understudy's,
// not even the domain: its inputs are counts and samples, so the report,
// its suite (report/reporttest) and the store's tests can all use it.
package stats

// Z95 is the two-sided 95% standard normal quantile, Φ⁻¹(0.975), to pass to
// [Wilson].
const Z95 = 1.959963984540054
