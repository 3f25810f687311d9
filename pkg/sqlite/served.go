package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"time"

	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file reads who answered the requests routed to a canary: the
// writer stores ServedBy on each prediction and pair (served_by), and the
// report counts a canary's answers and fallbacks from the rows.

// ServedCounts implements store.Snapshot.
func (s *snapshot) ServedCounts(ctx context.Context, from, to time.Time) ([]store.ServedCounts, error) {
	lo, hi := int64(-1<<62), int64(1<<62)
	if !from.IsZero() {
		lo = from.UnixMicro()
	}
	if !to.IsZero() {
		hi = to.UnixMicro()
	}
	// The WHERE terms repeat the partial indexes' so that they are used.
	byRef := map[understudy.ModelRef]*store.ServedCounts{}
	var order []understudy.ModelRef
	add := func(name, version string) *store.ServedCounts {
		ref := understudy.ModelRef{Name: name, Version: version}
		c, ok := byRef[ref]
		if !ok {
			c = &store.ServedCounts{Model: name, Version: version}
			byRef[ref] = c
			order = append(order, ref)
		}
		return c
	}
	err := s.each(ctx, `SELECT model, version, count(*) FROM predictions
		WHERE served_by != 'primary' AND served_by = 'candidate' AND time_us >= ? AND time_us < ? GROUP BY model, version`,
		[]any{lo, hi}, func(rows *rowsT) error {
			var name, version string
			var n int64
			if err := rows.Scan(&name, &version, &n); err != nil {
				return err
			}
			add(name, version).Answered = n
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("read canary answers: %w", err)
	}
	err = s.each(ctx, `SELECT shadow, version, count(*) FROM shadow_results
		WHERE served_by != 'primary' AND served_by = 'fallback' AND status != 'ok' AND time_us >= ? AND time_us < ? GROUP BY shadow, version`,
		[]any{lo, hi}, func(rows *rowsT) error {
			var name, version string
			var n int64
			if err := rows.Scan(&name, &version, &n); err != nil {
				return err
			}
			add(name, version).Fallbacks = n
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("read canary fallbacks: %w", err)
	}
	out := make([]store.ServedCounts, 0, len(order))
	for _, ref := range order {
		out = append(out, *byRef[ref])
	}
	sortServed(out)
	return out, nil
}

type rowsT = sql.Rows

func sortServed(out []store.ServedCounts) {
	sort.Slice(out, func(i, j int) bool {
		if out[i].Model != out[j].Model {
			return out[i].Model < out[j].Model
		}
		return out[i].Version < out[j].Version
	})
}
