package main

import (
	"math"
	"testing"

	"github.com/prometheus/procfs"
)

// Ensure the idle share counts idle and I/O wait over all CPU time, steal
// included, between two readings, and is 0 when no time passed.
func TestIdleBetween(t *testing.T) {
	a := procfs.CPUStat{User: 100, System: 50, Idle: 300, Iowait: 10, Steal: 5, IRQ: 1, SoftIRQ: 2, Nice: 3}
	b := a
	b.User += 6 // busy
	b.System += 2
	b.Idle += 1.5 // idle
	b.Iowait += 0.5
	b.Steal += 1 // neither: taken by other guests
	// 2 s idle of 11 s in all.
	if got, want := idleBetween(a, b), 2.0/11; math.Abs(got-want) > 1e-12 {
		t.Errorf("idle share %v, want %v", got, want)
	}
	if got := idleBetween(a, a); got != 0 {
		t.Errorf("no time passed: idle share %v, want 0", got)
	}
}
