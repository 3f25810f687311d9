package store

import (
	"encoding/json"
	"math"
	"slices"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file is the stored form of a comparison.

// MarshalComparison encodes c as the JSON stored with a shadow result.
// JSON has no NaN or infinity, so a comparison holding one is written with
// those fields left out; a backend's numeric columns still hold them.
func MarshalComparison(c *understudy.Comparison) []byte {
	if b, err := json.Marshal(c); err == nil {
		return b
	}
	finite := func(f *float64) *float64 {
		if f == nil || math.IsNaN(*f) || math.IsInf(*f, 0) {
			return nil
		}
		return f
	}
	cc := *c
	cc.Agreement, cc.MaxAbsDiff, cc.MeanAbsDiff = finite(c.Agreement), finite(c.MaxAbsDiff), finite(c.MeanAbsDiff)
	cc.Outputs = slices.Clone(c.Outputs)
	for i := range cc.Outputs {
		o := &cc.Outputs[i]
		o.MaxAbsDiff, o.MeanAbsDiff = finite(o.MaxAbsDiff), finite(o.MeanAbsDiff)
	}
	b, err := json.Marshal(&cc)
	if err != nil {
		return []byte("null")
	}
	return b
}

// HeadlineOutputs returns the names of the first class output and the first
// float output of c: the outputs its Agreement, classes and differences
// come from.
func HeadlineOutputs(c *understudy.Comparison) (class, float string) {
	for _, o := range c.Outputs {
		if class == "" && o.Kind == understudy.KindClass && o.Rows > 0 {
			class = o.Name
		}
		if float == "" && o.MaxAbsDiff != nil {
			float = o.Name
		}
	}
	return class, float
}
