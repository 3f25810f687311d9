package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file records who answered the requests routed to a canary
// (store.ServedMarker). The writer's inserts do not bind served_by yet, so
// the marks go to the served table on a writer of their own, and
// migration 00006's triggers copy them onto the request's prediction and
// pairs, whichever arrives first. Marks are a canary's share of traffic,
// and needed only until the rows arrive: they are pruned after servedKeep.

const (
	servedQueue = 4096
	servedEvery = 20 * time.Millisecond
	servedKeep  = 10 * time.Minute
)

type servedMark struct {
	id, by string
	us     int64
	flush  chan struct{}
}

type servedWriter struct {
	q      chan servedMark
	mu     sync.RWMutex // guards closed against concurrent sends
	closed bool
	done   chan struct{}
}

var _ store.ServedMarker = (*DB)(nil)

func (db *DB) startServed() {
	db.served = &servedWriter{q: make(chan servedMark, servedQueue), done: make(chan struct{})}
	go db.writeServed()
}

// MarkServed implements store.ServedMarker; a full queue loses the mark,
// counted with the lost predictions, and the rows keep 'primary'.
func (db *DB) MarkServed(requestID, servedBy string, at time.Time) {
	w := db.served
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed || servedBy == "" || servedBy == understudy.ServedPrimary {
		return
	}
	select {
	case w.q <- servedMark{id: requestID, by: servedBy, us: at.UnixMicro()}:
	default:
		db.preds.lost.Add(1)
	}
}

// FlushServed implements store.ServedMarker.
func (db *DB) FlushServed(ctx context.Context) error {
	w := db.served
	f := make(chan struct{})
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		return nil
	}
	select {
	case w.q <- servedMark{flush: f}:
	case <-ctx.Done():
		w.mu.RUnlock()
		return ctx.Err()
	}
	w.mu.RUnlock()
	select {
	case <-f:
		return nil
	case <-w.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (db *DB) closeServed() {
	w := db.served
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.q)
	}
	w.mu.Unlock()
	<-w.done
}

func (db *DB) writeServed() {
	w := db.served
	defer close(w.done)
	tick := time.NewTicker(servedEvery)
	defer tick.Stop()
	var batch []servedMark
	var flushes []chan struct{}
	lastPrune := time.Now()
	commit := func() {
		if len(batch) > 0 {
			if err := db.insertServed(batch); err != nil {
				db.preds.lost.Add(int64(len(batch)))
				if ok, suppressed := db.failLog.allow(); ok {
					db.log.Error().Err(err).Int("marks", len(batch)).Int64("suppressed_errors", suppressed).Msg("store could not record who answered canary requests")
				}
			}
			batch = batch[:0]
		}
		for _, f := range flushes {
			close(f)
		}
		flushes = flushes[:0]
		if time.Since(lastPrune) > time.Minute {
			lastPrune = time.Now()
			cut := db.opts.Now().Add(-servedKeep).UnixMicro()
			if _, err := db.write.Exec(`DELETE FROM served WHERE time_us < ?`, cut); err != nil {
				db.log.Warn().Err(err).Msg("prune served marks")
			}
		}
	}
	for {
		select {
		case m, ok := <-w.q:
			if !ok {
				commit()
				return
			}
			if m.flush != nil {
				flushes = append(flushes, m.flush)
				commit()
				continue
			}
			batch = append(batch, m)
			if len(batch) >= 256 {
				commit()
			}
		case <-tick.C:
			commit()
		}
	}
}

func (db *DB) insertServed(batch []servedMark) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	st, err := tx.PrepareContext(ctx, `INSERT INTO served (request_id, served_by, time_us) VALUES (?, ?, ?)
		ON CONFLICT (request_id) DO NOTHING`)
	if err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	defer st.Close()
	for _, m := range batch {
		if _, err := st.ExecContext(ctx, m.id, m.by, m.us); err != nil {
			return fmt.Errorf("insert served mark: %w", err)
		}
	}
	return tx.Commit()
}

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
