package sqlite_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/pkg/sqlite"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// BenchmarkWriteShadowResults measures the writer's sustained rate for
// iris-sized pairs: one prediction and one shadow result per op.
func BenchmarkWriteShadowResults(b *testing.B) {
	rate, err := sqlite.MeasureWriteRate(b.TempDir(), b.N)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(rate, "rows/s")
	b.ReportMetric(rate/2, "pairs/s")
}

// BenchmarkEnqueue measures what a caller pays to hand a pair to the store:
// encoding, hashing and a non-blocking send.
func BenchmarkEnqueue(b *testing.B) {
	db, _ := openDB(b, sqlite.Options{QueueSize: 1 << 20})
	at := time.Now()
	type pair struct {
		p *understudy.Prediction
		s *understudy.ShadowResult
	}
	pairs := make([]pair, 1024)
	for i := range pairs {
		pairs[i].p, pairs[i].s = sqlite.SamplePair(fmt.Sprint(i), at)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		pr := pairs[i%len(pairs)]
		db.WritePrediction(pr.p)
		db.WriteShadowResult(pr.s)
		i++
	}
}
