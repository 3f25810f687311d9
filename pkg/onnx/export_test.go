package onnx

import "github.com/understudy-ml/understudy/pkg/understudy"

// ShortBatch returns the largest batch whose runs skip the cancellation
// plumbing (see Session.shortBatch).
func ShortBatch(r understudy.Runner) int64 { return r.(*Session).shortBatch.Load() }
