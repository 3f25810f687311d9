package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// flushReq is closed by the writer once everything queued before it is
// committed or counted lost.
type flushReq chan struct{}

// WritePrediction queues a prediction for writing. It never blocks: when the
// queue is full or the store is closed the row is counted as lost. The
// writer encodes it (predRows), so p must not change once handed over,
// which holds for answered predictions: the shadows read them too.
func (db *DB) WritePrediction(p *understudy.Prediction) {
	db.enqueue(p, &db.preds)
}

// WriteShadowResult queues a shadow result for writing. It never blocks.
func (db *DB) WriteShadowResult(s *understudy.ShadowResult) {
	db.enqueue(db.shadowRow(s), &db.shadows)
}

// CountSkips adds sampled-out and dropped jobs of one shadow to its counters
// for the minute of at. It never blocks.
func (db *DB) CountSkips(shadow, version string, at time.Time, sampledOut, dropped int64) {
	if sampledOut == 0 && dropped == 0 {
		return
	}
	db.enqueue(&skipRow{skipKey{shadow, version, at.Unix() / 60}, sampledOut, dropped}, &db.skips)
}

// Defer queues a job for the backlog (understudy.History). It never
// blocks; like CountSkips, it is counted in Stats' Skips, as a duplicate
// when the job was already pending.
func (db *DB) Defer(j understudy.DeferredJob) {
	db.enqueue(&deferRow{id: j.RequestID, shadow: j.Shadow, version: j.Version,
		timeUS: db.micros(j.Time), deferredUS: db.opts.Now().UnixMicro()}, &db.skips)
}

// CountDrops adds n jobs dropped for reason to the counters of the minute
// of at (understudy.History). It never blocks; it is counted in Stats'
// Skips.
func (db *DB) CountDrops(shadow, version string, at time.Time, reason string, n int64) {
	if n == 0 {
		return
	}
	db.enqueue(&dropRow{dropKey{skipKey{shadow, version, at.Unix() / 60}, reason}, n}, &db.skips)
}

func (db *DB) enqueue(row any, c *tableCounters) {
	db.senders.Add(1)
	defer db.senders.Add(-1)
	if db.closed.Load() {
		c.lost.Add(1)
		return
	}
	select {
	case db.queue <- row:
	default:
		c.lost.Add(1)
	}
}

// Flush waits until every row queued before the call is committed or
// counted lost, or until ctx is done.
func (db *DB) Flush(ctx context.Context) error {
	if db.closed.Load() {
		select {
		case <-db.done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f := make(flushReq)
	select {
	case db.queue <- f:
	case <-db.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	// The writer may be waiting out its flush interval; flushes are rare
	// enough to wake it.
	select {
	case db.kick <- struct{}{}:
	default:
	}
	select {
	case <-f:
		return nil
	case <-db.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// batch is what the writer commits in one transaction.
type batch struct {
	preds   []*understudy.Prediction // encoded by the writer: predRows
	shadows []*shadowRow
	defers  []*deferRow
	// skips and drops are summed, so that a burst of skips is one upsert;
	// skipRows counts the CountSkips and CountDrops calls behind them.
	skips    map[skipKey]*skipRow
	drops    map[dropKey]int64
	skipRows int64
	flushes  []flushReq
}

func newBatch() *batch { return &batch{skips: map[skipKey]*skipRow{}, drops: map[dropKey]int64{}} }

func (b *batch) rows() int { return len(b.preds) + len(b.shadows) + len(b.defers) + int(b.skipRows) }

// primaryPart is what the writer commits at its own priority: the
// primary's predictions.
func (b *batch) primaryPart() *batch {
	return &batch{preds: b.preds}
}

// shadowPart is the rest, committed on the shadow-results thread: shadow
// results, deferred jobs, skips and drops. The skips go with the deferred
// jobs: a job that cannot be deferred is counted as a drop in the same
// transaction.
func (b *batch) shadowPart() *batch {
	return &batch{shadows: b.shadows, defers: b.defers, skips: b.skips, drops: b.drops, skipRows: b.skipRows}
}

func (b *batch) add(it any) {
	switch r := it.(type) {
	case *understudy.Prediction:
		b.preds = append(b.preds, r)
	case *shadowRow:
		b.shadows = append(b.shadows, r)
	case *skipRow:
		b.skipRows++
		if s, ok := b.skips[r.skipKey]; ok {
			s.sampledOut += r.sampledOut
			s.dropped += r.dropped
		} else {
			b.skips[r.skipKey] = r
		}
		if r.dropped != 0 {
			// CountSkips drops what could not be deferred: shed.
			b.drops[dropKey{r.skipKey, understudy.DropShed}] += r.dropped
		}
	case *dropRow:
		b.skipRows++
		if s, ok := b.skips[r.skipKey]; ok {
			s.dropped += r.n
		} else {
			b.skips[r.skipKey] = &skipRow{skipKey: r.skipKey, dropped: r.n}
		}
		b.drops[r.dropKey] += r.n
	case *deferRow:
		b.defers = append(b.defers, r)
	case flushReq:
		b.flushes = append(b.flushes, r)
	}
}

func (b *batch) reset() {
	clear(b.preds)
	clear(b.shadows)
	clear(b.flushes)
	clear(b.skips)
	clear(b.drops)
	clear(b.defers)
	b.preds, b.shadows, b.defers, b.flushes, b.skipRows = b.preds[:0], b.shadows[:0], b.defers[:0], b.flushes[:0], 0
}

// run is the writer: it collects rows until the batch is full, the flush
// interval has passed since its first row, or someone waits in Flush, and
// commits them in one transaction.
func (db *DB) run() {
	defer close(db.done)
	if db.low != nil {
		defer close(db.low.run)
	}
	b := newBatch()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case it := <-db.queue:
			b.add(it)
		case <-db.quit:
			db.drain(b)
			return
		}
		if len(b.flushes) == 0 && len(db.queue) < db.opts.BatchSize-b.rows() {
			// Wait for the timer alone: rows sent meanwhile wait in the
			// channel's buffer, so a request handing over a row never has
			// to wake this goroutine (on a VM each wake-up is a costly
			// futex call on the request path). With a full batch already
			// waiting there is nothing to wait for: the interval bounds
			// how long a row waits, never the rows per second.
			timer.Reset(db.opts.FlushInterval)
			select {
			case <-timer.C:
			case <-db.kick:
				timer.Stop()
			case <-db.quit:
				timer.Stop()
			}
		}
	collect:
		for b.rows() < db.opts.BatchSize && len(b.flushes) == 0 {
			select {
			case it := <-db.queue:
				b.add(it)
			default:
				break collect
			}
		}
		db.commit(b)
	}
}

// drain commits everything left in the queue; Close guarantees that nothing
// is added any more.
func (db *DB) drain(b *batch) {
	for {
		select {
		case it := <-db.queue:
			b.add(it)
			if b.rows() >= db.opts.BatchSize {
				db.commit(b)
			}
		default:
			db.commit(b)
			return
		}
	}
}

// commit writes b, counts every row as written, duplicate or lost, releases
// the flushes waiting on it and resets it.
func (db *DB) commit(b *batch) {
	defer b.reset()
	defer func() {
		for _, f := range b.flushes {
			close(f)
		}
	}()
	if db.low == nil {
		db.commitRows(b)
		return
	}
	// The primary's rows first, at the writer's priority; then the
	// shadows' rows, the jobs deferred for backfill with their skip and
	// drop counts, and the checkpoint at the thread's. Under contention
	// that part waits for spare CPU, and rows queue meanwhile instead of
	// delaying requests. The deferred jobs are as many as the shed ones,
	// two thirds of two shadows' jobs at half load on the demo; in the one
	// clean pair of runs measured, the primary's p99 with shadows was
	// about a fifth higher with them at the writer's priority
	// (docs/perf/request-cost.md, "Fourth round").
	db.commitRows(b.primaryPart())
	checkpoint := time.Since(db.lastCheckpoint) >= db.opts.CheckpointEvery
	if checkpoint {
		db.lastCheckpoint = time.Now()
	}
	rest := b.shadowPart()
	if rest.rows() == 0 && !checkpoint {
		return
	}
	db.low.do(func() {
		db.commitRows(rest)
		if checkpoint {
			db.checkpoint()
		}
	})
}

// commitRows writes the rows of b in one transaction and counts every row
// as written, duplicate or lost.
func (db *DB) commitRows(b *batch) {
	if b.rows() == 0 {
		return
	}
	defer func() {
		// The store must never take the server down.
		if v := recover(); v != nil {
			db.fail(b, fmt.Errorf("panic: %v", v))
		}
	}()
	var n batchCounts
	start := time.Now()
	err := db.exec(b, &n)
	if db.opts.OnCommit != nil {
		db.opts.OnCommit(b.rows(), time.Since(start), err)
	}
	if err != nil {
		db.fail(b, err)
		return
	}
	db.batches.Add(1)
	db.preds.written.Add(n.preds.written)
	db.preds.duplicate.Add(n.preds.duplicate)
	db.preds.lost.Add(n.preds.lost)
	db.shadows.written.Add(n.shadows.written)
	db.shadows.duplicate.Add(n.shadows.duplicate)
	db.shadows.lost.Add(n.shadows.lost)
	db.skips.written.Add(b.skipRows + n.defers.written)
	db.skips.duplicate.Add(n.defers.duplicate)
	if db.failing {
		db.failing = false
		if ok, _ := db.recoverLog.allow(); ok {
			db.log.Info().Msg("store writes succeed again")
		}
	}
}

type batchCounts struct {
	preds, shadows rowCounts
	defers         struct{ written, duplicate int64 }
}

type rowCounts struct{ written, duplicate, lost int64 }

// fail counts every row of a batch that could not be committed as lost.
func (db *DB) fail(b *batch, err error) {
	db.batches.Add(1)
	db.failedBatches.Add(1)
	db.preds.lost.Add(int64(len(b.preds)))
	db.shadows.lost.Add(int64(len(b.shadows)))
	db.skips.lost.Add(b.skipRows + int64(len(b.defers)))
	db.failing = true
	if ok, suppressed := db.failLog.allow(); ok {
		db.log.Error().Err(err).Int("lost_rows", b.rows()).Int64("suppressed_errors", suppressed).
			Msg("store write failed; rows lost")
	}
}
