package oip_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file holds the assertions the tests of this package share. The
// tests themselves sit beside the code they test: datatype_test.go,
// infer_test.go and metadata_test.go.

func assertTensor(tb testing.TB, got *understudy.Tensor, dt understudy.DType, shape []int64, data any) {
	tb.Helper()
	if got == nil {
		tb.Fatal("tensor missing")
	}
	if got.DType != dt {
		tb.Errorf("dtype = %v, want %v", got.DType, dt)
	}
	if !reflect.DeepEqual(got.Shape, shape) {
		tb.Errorf("shape = %v, want %v", got.Shape, shape)
	}
	if !reflect.DeepEqual(got.Data, data) {
		tb.Errorf("data = %#v, want %#v", got.Data, data)
	}
}

// assertError checks err's code and that its message holds every one of
// want.
func assertError(tb testing.TB, err error, code string, want ...string) {
	tb.Helper()
	if got := understudy.ErrorCode(err); got != code {
		tb.Errorf("code = %q, want %q (%v)", got, code, err)
	}
	msg := understudy.ErrorMessage(err)
	for _, w := range want {
		if !strings.Contains(msg, w) {
			tb.Errorf("message %q does not contain %q", msg, w)
		}
	}
}
