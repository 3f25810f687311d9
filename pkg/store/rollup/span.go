// Package rollup is the part of every storage backend that is not SQL:
// which rollup spans exist and how a window is covered by them, how a
// stored row is counted into the rollups, how rollup rows add up into the
// sums the report reads, and the search for disagreements through the
// rollups. A backend supplies the queries; this package supplies the
// arithmetic, so that two backends given the same rows give the same
// numbers.
//
// It may import pkg/store, pkg/understudy and the standard library only:
// never a backend, never the report.
package rollup

import (
	"math"
	"time"
)

// Rollups exist at three spans: minutes, hours and days. A rollup row of
// span s starts at a unix minute that is a multiple of s (hours start on
// the hour, days at midnight UTC) and counts the rows of the minutes
// [start, start+s).

// Spans are the rollup spans in minutes, finest first.
var Spans = []int64{1, 60, 1440}

// Day is the coarsest span.
var Day = Spans[len(Spans)-1]

// FloorDiv is a/b rounded toward −∞, so that times before 1970 fall in the
// minute, hour or day that holds them.
func FloorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

// MinuteOf returns the unix minute holding the unix microsecond us.
func MinuteOf(us int64) int64 { return FloorDiv(us, 60e6) }

// StartOf returns the start of the rollup of span holding minute.
func StartOf(minute, span int64) int64 { return FloorDiv(minute, span) * span }

// MinuteRange turns [from, to) into whole minutes [lo, hi), rounding from
// down and to up; a zero from or to leaves that side open.
func MinuteRange(from, to time.Time) (lo, hi int64) {
	// Far enough from the int64 limits that rounding to a day cannot
	// overflow.
	lo = math.MinInt64 / 4
	if !from.IsZero() {
		lo = MinuteOf(from.UnixMicro())
	}
	hi = math.MaxInt64 / 4
	if !to.IsZero() {
		hi = MinuteOf(to.UnixMicro() - 1 + 60e6)
	}
	return lo, hi
}

// MicroRange is [from, to) in unix microseconds; zero times are unbounded.
func MicroRange(from, to time.Time) (lo, hi int64) {
	lo, hi = math.MinInt64, math.MaxInt64
	if !from.IsZero() {
		lo = from.UnixMicro()
	}
	if !to.IsZero() {
		hi = to.UnixMicro()
	}
	return lo, hi
}

// Segment is the rollups of one span whose start is in [Lo, Hi) (unix
// minutes).
type Segment struct {
	Span, Lo, Hi int64
}

// Cover splits the minutes [lo, hi) into segments of the coarsest spans
// that fit whole, finest at the edges: whole days in the middle, hours
// around them and minutes at the ends. spans are the usable spans, finest
// (1) first.
func Cover(lo, hi int64, spans []int64) []Segment {
	if lo >= hi {
		return nil
	}
	s := spans[len(spans)-1]
	if s == 1 {
		return []Segment{{1, lo, hi}}
	}
	a, b := -FloorDiv(-lo, s)*s, FloorDiv(hi, s)*s
	if a >= b {
		return Cover(lo, hi, spans[:len(spans)-1])
	}
	out := Cover(lo, a, spans[:len(spans)-1])
	out = append(out, Segment{s, a, b})
	return append(out, Cover(b, hi, spans[:len(spans)-1])...)
}

// SpansFor returns the spans whose rollups fall in one step of a series
// cut into steps of step minutes aligned to the epoch (0: any span).
func SpansFor(step int64) []int64 {
	if step == 0 {
		return Spans
	}
	var out []int64
	for _, s := range Spans {
		if s <= step && step%s == 0 {
			out = append(out, s)
		}
	}
	return out
}

// Finer returns the span just finer than span, or 0 for minutes.
func Finer(span int64) int64 {
	for i, s := range Spans {
		if s == span && i > 0 {
			return Spans[i-1]
		}
	}
	return 0
}

// TrimBefore returns, for retention, the start below which the rollups of
// span are deleted, given the minutes of the oldest rows kept (math.MaxInt64
// for a table left empty). One bound for all spans and tables: readers
// take days, hours or minutes as the window suits, and a report that read
// a trimmed hour beside an untrimmed day would contradict itself. So the
// rollups keep up to a day more than the rows, whole: those ending by the
// start of the day of the oldest row kept go.
func TrimBefore(span int64, oldestMinutes ...int64) int64 {
	oldest := int64(math.MaxInt64)
	for _, m := range oldestMinutes {
		oldest = min(oldest, m)
	}
	// The start of that day, and the last start whose rollup ends by it.
	return StartOf(oldest, Day) - span + 1
}
