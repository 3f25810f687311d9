package reporttest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/pkg/report"
	"github.com/understudy-ml/understudy/pkg/store/storetest"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// Ensure each window counts exactly the rows from now − window, rounded
// down to the minute, to the end of now's minute: a microsecond earlier or
// at the end is out, in every part of the report.
func testBuildWindows(t *testing.T, open storetest.Opener) {
	db := open(t)
	at := map[string]time.Time{
		"a-before-15m":   time.Date(2030, 3, 10, 11, 44, 59, 999999000, time.UTC),
		"b-start-15m":    time.Date(2030, 3, 10, 11, 45, 0, 0, time.UTC),
		"c-end":          time.Date(2030, 3, 10, 12, 0, 59, 999999000, time.UTC),
		"d-after-end":    time.Date(2030, 3, 10, 12, 1, 0, 0, time.UTC),
		"e-yesterday":    now.Add(-26 * time.Hour),
		"f-before-7d":    time.Date(2030, 3, 3, 11, 59, 30, 0, time.UTC),
		"g-start-7d":     time.Date(2030, 3, 3, 12, 0, 0, 0, time.UTC),
		"h-before-1h":    time.Date(2030, 3, 10, 10, 59, 59, 0, time.UTC),
		"i-hour-edge":    time.Date(2030, 3, 10, 11, 0, 0, 0, time.UTC),
		"j-day-boundary": time.Date(2030, 3, 10, 0, 0, 0, 0, time.UTC),
	}
	var names []string
	for name := range at {
		names = append(names, name)
	}
	slices.Sort(names)
	var reqs []*req
	var runs []*run
	for i, name := range names {
		r := &req{id: name, at: at[name], model: "m", version: "1", class: 0, probs: []float32{1, 0, 0},
			latency: time.Duration(i+1) * time.Millisecond, label: ptr(0.0), cpu: time.Millisecond}
		reqs = append(reqs, r)
		runs = append(runs, &run{req: r, shadow: "s", version: "2", at: r.at, status: understudy.StatusOK,
			class: 1, probs: []float32{0, 1 - float32(i)/100, 0}, latency: time.Duration(i+1) * time.Millisecond})
		db.CountSkips("s", "2", r.at, 1, 2)
	}
	write(t, db, reqs, runs)

	for _, tt := range []struct {
		window string
		from   time.Time
		want   []string
	}{
		{"15m", time.Date(2030, 3, 10, 11, 45, 0, 0, time.UTC), []string{"b-start-15m", "c-end"}},
		{"1h", time.Date(2030, 3, 10, 11, 0, 0, 0, time.UTC), []string{"a-before-15m", "b-start-15m", "c-end", "i-hour-edge"}},
		{"24h", time.Date(2030, 3, 9, 12, 0, 0, 0, time.UTC), []string{"a-before-15m", "b-start-15m", "c-end", "h-before-1h", "i-hour-edge", "j-day-boundary"}},
		{"7d", time.Date(2030, 3, 3, 12, 0, 0, 0, time.UTC), []string{"a-before-15m", "b-start-15m", "c-end", "e-yesterday", "g-start-7d", "h-before-1h", "i-hour-edge", "j-day-boundary"}},
		{"all", time.Time{}, []string{"a-before-15m", "b-start-15m", "c-end", "e-yesterday", "f-before-7d", "g-start-7d", "h-before-1h", "i-hour-edge", "j-day-boundary"}},
	} {
		t.Run(tt.window, func(t *testing.T) {
			got, err := report.Build(context.Background(), db, report.Query{Window: tt.window}, report.DefaultThresholds, now)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			assertEqual(t, "From", got.From.Equal(tt.from), true)
			assertEqual(t, "To", got.To.Equal(time.Date(2030, 3, 10, 12, 1, 0, 0, time.UTC)), true)
			n := int64(len(tt.want))
			assertEqual(t, "Requests", got.Requests, n)
			sr := got.Shadows[0]
			assertEqual(t, "Mirrored", sr.Traffic.Mirrored, n)
			assertEqual(t, "SampledOut", sr.Traffic.SampledOut, n)
			assertEqual(t, "Dropped", sr.Traffic.Dropped, 2*n)
			assertEqual(t, "Classification.Pairs", sr.Classification.Pairs, n)
			assertEqual(t, "Confusion", fmt.Sprint(sr.Classification.Confusion), fmt.Sprintf("[[0 %d] [0 0]]", n))
			assertEqual(t, "Regression.Pairs", sr.Regression.Pairs, n)
			assertEqual(t, "Latency.N", sr.Latency.N, n)
			assertEqual(t, "Accuracy.Labelled", sr.Accuracy.Labelled, n)
			assertEqual(t, "KSSamples", sr.Drift.KSSamples, int(n))
			assertEqual(t, "PrimaryCPUUS", sr.Resources.PrimaryCPUUS, 1000.0)

			// Every pair disagrees: Latest lists them all, newest first.
			want := slices.Clone(tt.want)
			slices.SortFunc(want, func(a, b string) int { return at[b].Compare(at[a]) })
			assertEqual(t, "Latest", strings.Join(pairIDs(sr.Disagreements.Latest), " "), strings.Join(want, " "))
			largest := pairIDs(sr.Disagreements.Largest)
			slices.Sort(largest)
			assertEqual(t, "Largest", strings.Join(largest, " "), strings.Join(tt.want, " "))

			var points float64
			for _, p := range sr.Charts.Agreement {
				points += p.B
			}
			assertEqual(t, "pairs in the agreement chart", points, float64(n))
		})
	}
}
