package understudy_test

import (
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

func f32(shape []int64, d ...float32) *understudy.Tensor {
	return &understudy.Tensor{DType: understudy.Float32, Shape: shape, Data: d}
}

func i64(shape []int64, d ...int64) *understudy.Tensor {
	return &understudy.Tensor{DType: understudy.Int64, Shape: shape, Data: d}
}

// Ensure class labels, class scores and regression outputs are compared by
// the documented rules, with values worked out by hand.
func TestCompare(t *testing.T) {
	outs := []understudy.TensorInfo{{Name: "label"}, {Name: "probabilities"}, {Name: "score"}, {Name: "only_primary"}}
	primary := map[string]*understudy.Tensor{
		"label":         i64([]int64{3}, 0, 2, 1),
		"probabilities": f32([]int64{3, 3}, 0.7, 0.2, 0.1, 0.1, 0.1, 0.8, 0.3, 0.4, 0.3),
		"score":         f32([]int64{3, 1}, 1, 2, 3),
		"only_primary":  f32([]int64{1}, 1),
	}
	shadow := map[string]*understudy.Tensor{
		"label":         i64([]int64{3}, 0, 1, 1),
		"probabilities": f32([]int64{3, 3}, 0.6, 0.3, 0.1, 0.1, 0.5, 0.4, 0.3, 0.3, 0.4),
		"score":         f32([]int64{3, 1}, 1.5, 2, 2),
		"only_shadow":   f32([]int64{1}, 1),
	}
	c := understudy.Compare(outs, primary, shadow)
	byName := map[string]understudy.OutputComparison{}
	for _, o := range c.Outputs {
		byName[o.Name] = o
	}

	label := byName["label"]
	if label.Kind != understudy.KindClass || label.Rows != 3 || label.Agree != 2 || label.MaxAbsDiff != nil {
		t.Errorf("label = %+v, want class with 2 of 3 agreeing and no abs diff", label)
	}
	probs := byName["probabilities"]
	// argmax rows: primary 0, 2, 1; shadow 0, 1, 2 -> 1 of 3 agree.
	if probs.Kind != understudy.KindClass || probs.Agree != 1 || !reflect.DeepEqual(probs.PrimaryClasses, []int64{0, 2, 1}) || !reflect.DeepEqual(probs.ShadowClasses, []int64{0, 1, 2}) {
		t.Errorf("probabilities = %+v", probs)
	}
	// |diffs| = .1 .1 0 0 .4 .4 0 .1 .1 -> max .4, mean 1.2/9.
	assertNear(t, "probabilities max", *probs.MaxAbsDiff, 0.4)
	assertNear(t, "probabilities mean", *probs.MeanAbsDiff, 1.2/9)
	score := byName["score"]
	if score.Kind != understudy.KindFloat {
		t.Errorf("score kind = %q, want float (last axis 1 is not a class axis)", score.Kind)
	}
	assertNear(t, "score max", *score.MaxAbsDiff, 1)
	assertNear(t, "score mean", *score.MeanAbsDiff, 0.5)
	if o := byName["only_primary"]; o.Kind != understudy.KindIncomparable || o.Reason == "" {
		t.Errorf("only_primary = %+v, want incomparable with a reason", o)
	}
	if o := byName["only_shadow"]; o.Kind != understudy.KindIncomparable {
		t.Errorf("only_shadow = %+v, want incomparable", o)
	}
	// Headline: agreement of the first class output (label), abs diff of the first float output (probabilities).
	assertNear(t, "agreement", *c.Agreement, 2.0/3)
	if *c.PrimaryClass != 0 || *c.ShadowClass != 0 {
		t.Errorf("classes = %d/%d, want 0/0", *c.PrimaryClass, *c.ShadowClass)
	}
	assertNear(t, "headline max", *c.MaxAbsDiff, 0.4)
}

// Ensure outputs that cannot be compared say why.
func TestCompareIncomparable(t *testing.T) {
	outs := []understudy.TensorInfo{{Name: "y"}}
	tests := []struct {
		name    string
		p, s    *understudy.Tensor
		wantWhy string
	}{
		{"shape", f32([]int64{2}, 1, 2), f32([]int64{1, 2}, 1, 2), "shapes differ"},
		{"type", f32([]int64{2}, 1, 2), i64([]int64{2}, 1, 2), "element types differ"},
		{"nan", f32([]int64{2}, float32(math.NaN()), 2), f32([]int64{2}, 1, 2), "NaN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := understudy.Compare(outs, map[string]*understudy.Tensor{"y": tt.p}, map[string]*understudy.Tensor{"y": tt.s})
			o := c.Outputs[0]
			if o.Kind != understudy.KindIncomparable || !strings.Contains(o.Reason, tt.wantWhy) {
				t.Errorf("got %+v, want incomparable because %q", o, tt.wantWhy)
			}
			if c.Agreement != nil || c.MaxAbsDiff != nil {
				t.Errorf("headline fields set for an incomparable pair: %+v", c)
			}
		})
	}
}

func assertNear(tb testing.TB, what string, got, want float64) {
	tb.Helper()
	if math.Abs(got-want) > 1e-6 {
		tb.Errorf("%s = %v, want %v", what, got, want)
	}
}
