package understudy

import (
	"fmt"
	"math"
	"slices"
)

// Compare compares the outputs of a primary and a shadow for one request.
// The rules, also documented in docs/statistics.md:
//
//   - Only outputs with the same name in both models are compared; an output
//     in one model only, or with a different shape or element family, is
//     recorded as incomparable with the reason.
//   - Integer, bool and string tensors are class labels: each element is one
//     row's class. Float tensors of rank ≥ 2 whose last axis is longer than 1
//     are class scores: the predicted class of each row is the argmax over the
//     last axis (ties go to the lowest index, as ArgMax does). For both, the
//     comparison counts the rows whose class agrees.
//   - Every float output (scores included) also gets the max and mean absolute
//     difference over all elements. Elements that are NaN in both models
//     count as equal; NaN in one model only makes the output incomparable.
//
// The pair's headline fields come from the first class output in the
// primary's output order (agreement and the first row's classes) and the first
// float output (absolute differences).
func Compare(outputs []TensorInfo, primary, shadow map[string]*Tensor) Comparison {
	var c Comparison
	seen := map[string]bool{}
	for _, info := range outputs {
		p, ok := primary[info.Name]
		if !ok {
			continue
		}
		seen[info.Name] = true
		s, ok := shadow[info.Name]
		if !ok {
			c.Outputs = append(c.Outputs, OutputComparison{Name: info.Name, Kind: KindIncomparable, Reason: "the shadow has no output of this name"})
			continue
		}
		oc := compareOne(info.Name, p, s)
		c.Outputs = append(c.Outputs, oc)
		if oc.Kind == KindClass && c.Agreement == nil && oc.Rows > 0 {
			a := float64(oc.Agree) / float64(oc.Rows)
			c.Agreement = &a
			if len(oc.PrimaryClasses) > 0 {
				pc, sc := oc.PrimaryClasses[0], oc.ShadowClasses[0]
				c.PrimaryClass, c.ShadowClass = &pc, &sc
			}
		}
		if oc.MaxAbsDiff != nil && c.MaxAbsDiff == nil {
			c.MaxAbsDiff, c.MeanAbsDiff, c.SumSqDiff, c.Elements = oc.MaxAbsDiff, oc.MeanAbsDiff, oc.sumSq, oc.elements
			c.PrimaryScore, c.ShadowScore = topScore(p), topScore(shadow[info.Name])
		}
	}
	var extra []string
	for name := range shadow {
		if !seen[name] {
			extra = append(extra, name)
		}
	}
	slices.Sort(extra)
	for _, name := range extra {
		c.Outputs = append(c.Outputs, OutputComparison{Name: name, Kind: KindIncomparable, Reason: "the primary has no output of this name"})
	}
	return c
}

func compareOne(name string, p, s *Tensor) OutputComparison {
	oc := OutputComparison{Name: name, Kind: KindIncomparable}
	if !slices.Equal(p.Shape, s.Shape) {
		oc.Reason = fmt.Sprintf("shapes differ: primary %s, shadow %s", FormatShape(p.Shape), FormatShape(s.Shape))
		return oc
	}
	pf, sf := p.DType.IsFloat(), s.DType.IsFloat()
	if pf != sf || (p.DType == String) != (s.DType == String) {
		oc.Reason = fmt.Sprintf("element types differ: primary %v, shadow %v", p.DType, s.DType)
		return oc
	}
	switch {
	case p.DType == String:
		ps, ss := p.Data.([]string), s.Data.([]string)
		oc.Kind, oc.Rows = KindClass, len(ps)
		for i := range ps {
			if ps[i] == ss[i] {
				oc.Agree++
			}
		}
		return oc
	case !pf:
		oc.Kind = KindClass
		oc.PrimaryClasses, oc.ShadowClasses = labels(p), labels(s)
	case len(p.Shape) >= 2 && p.Shape[len(p.Shape)-1] > 1:
		oc.Kind = KindClass
		oc.PrimaryClasses, oc.ShadowClasses = argmaxRows(p), argmaxRows(s)
	default:
		oc.Kind = KindFloat
	}
	if oc.Kind == KindClass {
		oc.Rows = len(oc.PrimaryClasses)
		for i := range oc.PrimaryClasses {
			if oc.PrimaryClasses[i] == oc.ShadowClasses[i] {
				oc.Agree++
			}
		}
	}
	if pf {
		a, b := p.Float64s(), s.Float64s()
		var max, sum, sq float64
		n := 0
		for i := range a {
			an, bn := math.IsNaN(a[i]), math.IsNaN(b[i])
			if an && bn {
				n++
				continue
			}
			if an || bn {
				oc.Kind, oc.Reason = KindIncomparable, fmt.Sprintf("element %d is NaN in one model only", i)
				oc.PrimaryClasses, oc.ShadowClasses, oc.Rows, oc.Agree = nil, nil, 0, 0
				return oc
			}
			d := math.Abs(a[i] - b[i])
			if math.IsInf(a[i], 0) && a[i] == b[i] {
				d = 0
			}
			if d > max || math.IsInf(d, 0) {
				max = d
			}
			sum += d
			if d != 0 {
				sq += d * d
			}
			n++
		}
		if n > 0 {
			mean := sum / float64(n)
			oc.MaxAbsDiff, oc.MeanAbsDiff = &max, &mean
			oc.sumSq, oc.elements = &sq, n
		}
	}
	return oc
}

// topScore is the largest element of the first row of the last axis (the
// first element when there is no class axis): a classifier's confidence.
func topScore(t *Tensor) *float64 {
	f := t.Float64s()
	if len(f) == 0 {
		return nil
	}
	k := 1
	if len(t.Shape) >= 2 {
		k = int(t.Shape[len(t.Shape)-1])
	}
	best := f[0]
	for _, v := range f[1:min(k, len(f))] {
		best = math.Max(best, v)
	}
	if math.IsNaN(best) || math.IsInf(best, 0) {
		return nil
	}
	return &best
}

// labels reads an integer or bool tensor as one class per element.
func labels(t *Tensor) []int64 {
	f := t.Float64s()
	out := make([]int64, len(f))
	for i, v := range f {
		out[i] = int64(v)
	}
	if d, ok := t.Data.([]uint64); ok {
		for i, v := range d {
			out[i] = int64(v)
		}
	}
	if d, ok := t.Data.([]int64); ok {
		copy(out, d)
	}
	return out
}

// argmaxRows returns the index of the largest element of each row of the
// last axis, the first one on ties.
func argmaxRows(t *Tensor) []int64 {
	f := t.Float64s()
	k := int(t.Shape[len(t.Shape)-1])
	rows := len(f) / k
	out := make([]int64, rows)
	for r := range rows {
		best := 0
		for j := 1; j < k; j++ {
			if f[r*k+j] > f[r*k+best] {
				best = j
			}
		}
		out[r] = int64(best)
	}
	return out
}
