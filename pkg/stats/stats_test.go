package stats_test

import (
	"math"
	"testing"
)

// rel is the relative tolerance for reference values: the references carry
// at least 16 correct digits, and the implementations lose at most a few
// thousand ulps, except McNemar's incomplete beta near n = 1e6, which has
// its own.
const rel = 1e-9

// assertClose fails unless got is within rel of want, relatively; a want of
// exactly 0 must be matched exactly, and NaN matches only NaN.
func assertClose(t *testing.T, name string, got, want float64) {
	t.Helper()
	assertCloseTol(t, name, got, want, rel)
}

// assertCloseTol is assertClose with relative tolerance tol.
func assertCloseTol(t *testing.T, name string, got, want, tol float64) {
	t.Helper()
	switch {
	case math.IsNaN(want):
		if !math.IsNaN(got) {
			t.Errorf("%s = %v, want NaN", name, got)
		}
	case want == 0 || math.IsInf(want, 0):
		if got != want {
			t.Errorf("%s = %v, want exactly %v", name, got, want)
		}
	case !(math.Abs(got-want) <= tol*math.Abs(want)):
		t.Errorf("%s = %.17g, want %.17g (relative error %.2g)", name, got, want, math.Abs(got-want)/math.Abs(want))
	}
}

// assertPanics fails unless f panics.
func assertPanics(t *testing.T, name string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s did not panic", name)
		}
	}()
	f()
}
