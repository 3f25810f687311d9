package store

// This file is the storage side of canary mode. A backend stores each
// prediction's and each pair's ServedBy (understudy.ServedPrimary when
// empty) and counts, per window, what canaries answered and where they
// fell back (Snapshot.ServedCounts).

// ServedCounts is one canary version's part of the traffic in a window.
type ServedCounts struct {
	Model, Version string
	// Answered counts the predictions it answered (served_by candidate).
	Answered int64
	// Fallbacks counts its failed runs on requests routed to it, which the
	// primary answered instead (pairs with served_by fallback).
	Fallbacks int64
}
