package main

import "testing"

// Ensure shadows are shed once the primary's requests fill the cores the
// shadow workers leave it, and never later than at one request.
func TestShedAt(t *testing.T) {
	for _, tt := range []struct{ cores, workers, want int }{
		{1, 1, 1},
		{2, 1, 1},
		{4, 2, 2},
		{32, 16, 16},
		{8, 1, 7},
		{2, 4, 1},
	} {
		if got := shedAt(tt.cores, tt.workers); got != tt.want {
			t.Errorf("shedAt(%d cores, %d workers) = %d, want %d", tt.cores, tt.workers, got, tt.want)
		}
	}
}
