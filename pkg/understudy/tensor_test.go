package understudy_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// Ensure Concat stacks tensors of any element type along the first axis and
// Rows gives each part back, sharing the data but never letting an append
// write into it.
func TestConcatAndRows(t *testing.T) {
	for _, parts := range [][]*understudy.Tensor{
		{
			{DType: understudy.String, Shape: []int64{1, 2}, Data: []string{"a", "b"}},
			{DType: understudy.String, Shape: []int64{2, 2}, Data: []string{"c", "d", "e", "f"}},
		},
		{
			{DType: understudy.Int64, Shape: []int64{2}, Data: []int64{1, 2}},
			{DType: understudy.Int64, Shape: []int64{1}, Data: []int64{3}},
			{DType: understudy.Int64, Shape: []int64{0}, Data: []int64{}},
		},
		{
			{DType: understudy.Bool, Shape: []int64{1, 1, 3}, Data: []bool{true, false, true}},
			{DType: understudy.Bool, Shape: []int64{1, 1, 3}, Data: []bool{false, false, true}},
		},
	} {
		all, err := understudy.Concat(parts)
		if err != nil {
			t.Fatal(err)
		}
		var rows int64
		var want []any
		for _, p := range parts {
			rows += p.Shape[0]
			v := reflect.ValueOf(p.Data)
			for i := range v.Len() {
				want = append(want, v.Index(i).Interface())
			}
		}
		if all.Shape[0] != rows || !reflect.DeepEqual(all.Shape[1:], parts[0].Shape[1:]) || all.Len() != len(want) {
			t.Fatalf("%v: shape %v holding %d elements, want %d rows of %v and %d elements", parts[0].DType, all.Shape, all.Len(), rows, parts[0].Shape[1:], len(want))
		}
		v := reflect.ValueOf(all.Data)
		for i, w := range want {
			if got := v.Index(i).Interface(); got != w {
				t.Fatalf("%v: element %d is %v, want %v", parts[0].DType, i, got, w)
			}
		}
		var at int64
		for i, p := range parts {
			r := all.Rows(at, at+p.Shape[0])
			at += p.Shape[0]
			if !reflect.DeepEqual(r, p) {
				t.Errorf("%v: Rows of part %d = %+v, want %+v", p.DType, i, r, p)
			}
			if rv := reflect.ValueOf(r.Data); rv.Cap() != rv.Len() {
				t.Errorf("%v: part %d has capacity %d beyond its %d elements", p.DType, i, rv.Cap(), rv.Len())
			}
		}
	}
}

func TestConcatRefusesWhatCannotStack(t *testing.T) {
	f := func(shape []int64, d ...float32) *understudy.Tensor {
		return &understudy.Tensor{DType: understudy.Float32, Shape: shape, Data: d}
	}
	for _, tc := range []struct {
		parts []*understudy.Tensor
		want  string
	}{
		{nil, "nothing"},
		{[]*understudy.Tensor{f(nil, 1)}, "scalars"},
		{[]*understudy.Tensor{f([]int64{1, 2}, 1, 2), f([]int64{1, 3}, 1, 2, 3)}, "cannot stack float32 [1,3] on float32 [1,2]"},
		{[]*understudy.Tensor{f([]int64{1}, 1), {DType: understudy.Int64, Shape: []int64{1}, Data: []int64{1}}}, "cannot stack int64"},
	} {
		if _, err := understudy.Concat(tc.parts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Concat(%v): error %v, want one saying %q", tc.parts, err, tc.want)
		}
	}
}
