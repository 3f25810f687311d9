package sqlite

import (
	"fmt"
	"testing"
)

// Ensure boxes hands back each string's own value, whatever the mix: the
// same interface value while a string is among the last 16 distinct ones,
// and the right string after it has been pushed out.
func TestBoxesKeepTheirStrings(t *testing.T) {
	var b boxes
	first := b.of("iris-v1")
	if b.of("iris-v1") != first {
		t.Fatal(`"iris-v1" boxed twice gave different values`)
	}
	for round := range 3 {
		for i := range 40 {
			s := fmt.Sprintf("model-%d", i%(10+round*10))
			if got := b.of(s); got != any(s) {
				t.Fatalf("round %d: of(%q) = %v", round, s, got)
			}
		}
	}
	if got := b.of("iris-v1"); got != any("iris-v1") {
		t.Fatalf(`of("iris-v1") after 40 others = %v`, got)
	}
	if got := b.of(""); got != any("") {
		t.Fatalf(`of("") = %#v`, got)
	}
}
