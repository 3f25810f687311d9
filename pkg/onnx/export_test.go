package onnx

import "github.com/understudy-ml/understudy/pkg/understudy"

// ShortBatch returns the largest batch whose runs skip the cancellation
// plumbing (see Session.shortBatch).
func ShortBatch(r understudy.Runner) int64 { return r.(*Session).shortBatch.Load() }

// IdleSlots returns how many idle slots r keeps for runs of rows rows.
func IdleSlots(r understudy.Runner, rows int) int {
	s := r.(*Session)
	if rows > len(s.slots) {
		return 0
	}
	return len(s.slots[rows-1])
}

// Presizing reports whether r still sizes outputs before its runs.
func Presizing(r understudy.Runner) bool { return r.(*Session).presize.Load() }
