package sqlite

import (
	"testing"
	"time"
)

// BenchmarkEncodePair measures the caller's share of a write: encoding and
// hashing one prediction and one shadow result, without the queue.
func BenchmarkEncodePair(b *testing.B) {
	db := &DB{opts: Options{InputCap: DefaultInputCap, Now: time.Now}}
	p, s := SamplePair("0f8fad5b-d9cb-469f-a165-70867728950e", time.Now())
	b.ReportAllocs()
	for b.Loop() {
		_ = db.predRow(p)
		_ = db.shadowRow(s)
	}
}
