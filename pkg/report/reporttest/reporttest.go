// Package reporttest checks the report's figures on any store backend: it
// writes a fixed set of rows through the store contract and compares what
// report.Build, report.Pairs and report.Request say with values computed
// here from those rows (traffic, agreement, κ, the confusion matrix, MAE,
// RMSE, accuracy and McNemar, latency percentiles exact and from histograms
// within their documented error, drift, the charts, the disagreement lists,
// the verdict, and which pairs each figure uses by their origin). Every
// backend must give the same numbers; a backend's test file runs it next to
// storetest.Run:
//
//	func TestReport(t *testing.T) { reporttest.Run(t, open) }
//
// It lives beside the report rather than in store/storetest so that the
// store's suite need not import the report. It may import the report, the
// store contract and its suite, pkg/stats and pkg/understudy; never a
// backend.
package reporttest

import (
	"testing"

	"github.com/understudy-ml/understudy/pkg/store/storetest"
)

// Run runs the report's tests on the stores open returns, each test on a
// store of its own.
func Run(t *testing.T, open storetest.Opener) {
	for _, tt := range []struct {
		name string
		test func(*testing.T, storetest.Opener)
	}{
		{"BuildMatchesRawValues", testBuildMatchesRawValues},
		{"BuildByHand", testBuildByHand},
		{"AccuracyCheck", testAccuracyCheck},
		{"BuildInfiniteDifference", testBuildInfiniteDifference},
		{"AgreementCheckForgivesCorrections", testAgreementCheckForgivesCorrections},
		{"BuildWindows", testBuildWindows},
		{"BuildHistogramPath", testBuildHistogramPath},
		{"BuildOrigins", testBuildOrigins},
		{"PairsAndCSV", testPairsAndCSV},
		{"Request", testRequest},
	} {
		t.Run(tt.name, func(t *testing.T) { tt.test(t, open) })
	}
}
