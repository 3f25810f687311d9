package report

// SetExactMaxPairs lowers the most pairs read raw, so that tests can take
// the histogram path without filling 200,000 pairs; it returns the undo.
func SetExactMaxPairs(n int64) (restore func()) {
	old := exactMaxPairs
	exactMaxPairs = n
	return func() { exactMaxPairs = old }
}
