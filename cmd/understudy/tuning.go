package main

import (
	"runtime"
	"runtime/debug"

	"github.com/rs/zerolog"
)

// This file fits the Go runtime and the shadows to the machine: GOMAXPROCS
// and GOGC as shadows come and go, and how many of the primary's requests
// in flight make the shadow workers shed their jobs. The measurements behind
// each number are kept with it.

// shedAt is how many of the primary's requests in flight make a shadow
// worker drop the job it takes instead of running it: the cores left once
// each worker has one, at least one. A shadow thread at idle priority gives
// way to the primary at once, but its runs still cost the primary's tail.
// On the 2-core VM with two shadows at half the maximum rate, the demo's
// p99 with shadows over without was 1.32 (95% interval 1.13–1.53), 0.82
// and 0.83 in 4-minute runs when shedding at one request per core, and
// 0.97, 0.48 and 0.80 when shedding at one request, which sheds 60–70% of
// shadow jobs at that rate instead of 6–30%. The host's noise does not
// settle it; shedding earlier can only take CPU from shadows, and --shed-at
// gives the choice back.
func shedAt(cores, workers int) int {
	return max(1, cores-workers)
}

// defaultGCPercent is GOGC without shadows unless the environment sets it.
// The live heap is a few MB and every request allocates, so Go's default of
// 100 collects hundreds of times a second; four times the headroom cost
// about 8 µs less CPU per request on the demo model, for a few MB more.
const defaultGCPercent = 400

// runtimeTuning adapts the Go runtime to the number of shadows. Zero fields
// are left as the environment set them.
type runtimeTuning struct {
	// procs is GOMAXPROCS without shadows. While there are shadows, the
	// threads that do shadow work at lowered priority get extraProcs
	// scheduler slots (Ps) of their own: such a thread preempted by the
	// kernel while it runs Go code keeps its P, and at low priority it may
	// not run again for a long time. With the extra slots the primary never
	// has fewer than one per core. Measured on a 2-core VM with two shadows
	// on the demo model, the primary's p99 was 1.95x of what it was with
	// them. Without shadows the extra slots only cost scheduler wake-ups,
	// 30–40 µs of CPU per request there, so they are taken back.
	procs, extraProcs int
	// gc is GOGC without shadows. A shadow run allocates about as much as
	// the primary's request does, so with k shadows the heap grows k+1
	// times as fast. A collection also hurts the primary more while there
	// are shadows, since the extra slots give the collector's workers, at
	// normal priority, a larger share of the cores. So GOGC grows faster
	// than the allocation rate: by 2.5 times the base per shadow, up to four
	// shadows. Measured with two shadows on the demo at 8000 req/s, in
	// 24-round A/B runs: the primary's p99 over none was 1.21 and 1.22 at
	// GOGC 1200 (three times the base), 1.11 and 1.09 at 2400; RSS grew
	// from 129 MB to 186 MB.
	gc int
}

// apply returns the registry hook that applies t for a number of shadows.
func (t runtimeTuning) apply(log zerolog.Logger) func(shadows int) {
	return func(shadows int) {
		if t.procs > 0 {
			want := t.procs
			if shadows > 0 {
				want += t.extraProcs
			}
			if runtime.GOMAXPROCS(0) != want {
				runtime.GOMAXPROCS(want)
				log.Debug().Int("gomaxprocs", want).Int("shadows", shadows).Msg("scheduler slots adjusted")
			}
		}
		if t.gc > 0 {
			debug.SetGCPercent(t.gc * (2 + 5*min(shadows, 4)) / 2)
		}
	}
}
