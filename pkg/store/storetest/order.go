package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// byteOrder is a set of names whose byte order (Go's, SQLite's) differs
// from a locale's dictionary order: upper case first, then '-' before '_'
// before lower case.
var byteOrder = []string{"B", "a-x", "a_x", "ab", "b"}

// Ensure names are ordered byte by byte wherever the contract says
// "ordered by name": models, a request's shadow results and the shadow
// versions, whatever the collation a backend's database defaults to.
func testByteOrder(t *testing.T, open Opener) {
	st := open(t)
	ctx := context.Background()
	at := time.Date(2030, 6, 1, 8, 0, 0, 0, time.UTC)
	// Handed over in reverse, so that the order read is the store's.
	for i := len(byteOrder) - 1; i >= 0; i-- {
		name := byteOrder[i]
		if err := st.RecordModel(ctx, understudy.ModelInfo{Name: name, Version: "v", SHA256: "s", File: name + ".onnx", Size: 1}); err != nil {
			t.Fatal(err)
		}
		_, s := pairOf("one", at)
		s.Shadow = name
		st.WriteShadowResult(s)
	}
	flush(t, st)
	models, err := st.Models(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range models {
		got = append(got, m.Name)
	}
	assertEqual(t, "models", fmt.Sprint(got), fmt.Sprint(byteOrder))
	got = nil
	for _, s := range request(t, st, "one").Shadows {
		got = append(got, s.Shadow)
	}
	assertEqual(t, "shadow results of a request", fmt.Sprint(got), fmt.Sprint(byteOrder))
	versions, err := snapshot(t, st).ShadowVersions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	for _, v := range versions {
		got = append(got, v.Name)
	}
	assertEqual(t, "shadow versions", fmt.Sprint(got), fmt.Sprint(byteOrder))
}
