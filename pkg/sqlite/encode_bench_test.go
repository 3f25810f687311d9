package sqlite

import (
	"testing"
	"time"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// BenchmarkEncodePair measures encoding one prediction, as the writer does
// into its reused buffer, and one shadow result, as its caller does,
// without the queue.
func BenchmarkEncodePair(b *testing.B) {
	db := &DB{opts: Options{InputCap: DefaultInputCap, Now: time.Now}}
	p, s := SamplePair("0f8fad5b-d9cb-469f-a165-70867728950e", time.Now())
	preds := []*understudy.Prediction{p}
	b.ReportAllocs()
	for b.Loop() {
		_ = db.predRows(preds)
		_ = db.shadowRow(s)
	}
}
