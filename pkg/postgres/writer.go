package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// commitTimeout bounds one attempt at a batch, so that a connection that
// hangs (rather than fails) is given up and retried.
const commitTimeout = 30 * time.Second

// batch is what the writer commits in one transaction.
type batch struct {
	preds   []*predRow
	shadows []*shadowRow
	defers  []*deferRow
	// Summed, so that a burst of skips is one row. Every drop is in both:
	// shadow_skips.dropped is the sum of a minute's reasons.
	skips    map[skipKey]*skipRow
	drops    map[dropKey]int64
	skipRows int64 // CountSkips and CountDrops calls
}

func (b *batch) rows() int {
	return len(b.preds) + len(b.shadows) + len(b.defers) + int(b.skipRows)
}

func (b *batch) reset() {
	clear(b.preds)
	clear(b.shadows)
	clear(b.defers)
	clear(b.skips)
	clear(b.drops)
	b.preds, b.shadows, b.defers, b.skipRows = b.preds[:0], b.shadows[:0], b.defers[:0], 0
}

// skip returns the batch's skip counts of k.
func (b *batch) skip(k skipKey) *skipRow {
	s, ok := b.skips[k]
	if !ok {
		s = &skipRow{skipKey: k}
		b.skips[k] = s
	}
	return s
}

// fill resets b to the oldest rows of buf: up to max rows, and no further
// than the first flush request. It returns how many items it took.
func (b *batch) fill(buf *buffer, max int) int {
	b.reset()
	n := 0
	for _, it := range buf.items[buf.head:] {
		if b.rows() >= max {
			break
		}
		n++
		switch r := it.(type) {
		case *predRow:
			b.preds = append(b.preds, r)
		case *shadowRow:
			b.shadows = append(b.shadows, r)
		case *deferRow:
			b.defers = append(b.defers, r)
		case *skipRow:
			b.skipRows++
			// Summed into the batch's own rows: the buffered row stays as
			// it was, for a retry that rebuilds the batch.
			s := b.skip(r.skipKey)
			s.sampledOut += r.sampledOut
			s.dropped += r.dropped
			if r.dropped != 0 {
				b.drops[dropKey{r.skipKey, understudy.DropShed}] += r.dropped
			}
		case *dropRow:
			b.skipRows++
			b.skip(r.skipKey).dropped += r.n
			b.drops[r.dropKey] += r.n
		case flushReq:
			return n
		}
	}
	return n
}

// run is the writer: it collects rows until the batch is full, the flush
// interval has passed since its first row, or someone waits in Flush, and
// commits them in one transaction. A batch that fails because PostgreSQL
// is unreachable stays at the front of the buffer and is retried, with a
// growing pause, while new rows keep being buffered.
func (db *DB) run() {
	defer close(db.done)
	buf := &buffer{}
	b := &batch{skips: map[skipKey]*skipRow{}, drops: map[dropKey]int64{}}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	quit := db.quit // nil once seen, so that a select no longer wakes on it
	var closing time.Time
	backoff := minBackoff
	for {
		if buf.len() == 0 {
			if quit == nil && len(db.queue) == 0 {
				return
			}
			select {
			case it := <-db.queue:
				db.take(buf, it)
			case <-quit:
				quit, closing = nil, time.Now()
				continue
			}
			if quit != nil && buf.flushes == 0 && len(db.queue) < db.opts.BatchSize-buf.rows {
				// Wait for the timer alone: rows sent meanwhile wait in the
				// channel's buffer, so a request handing over a row never
				// has to wake this goroutine. With a full batch already
				// waiting there is nothing to wait for.
				timer.Reset(db.opts.FlushInterval)
				select {
				case <-timer.C:
				case <-db.kick:
					timer.Stop()
				case <-quit:
					timer.Stop()
					quit, closing = nil, time.Now()
				}
			}
		}
		db.pull(buf)
		n := b.fill(buf, db.opts.BatchSize)
		if b.rows() == 0 {
			buf.pop(n) // flush requests only
			continue
		}
		err := db.commit(b)
		if err == nil || !transient(err) {
			if err != nil {
				db.fail(b, err)
			}
			buf.pop(n)
			db.health.rows.Store(int64(buf.rows))
			db.health.bytes.Store(buf.bytes)
			db.recovered(buf)
			backoff = minBackoff
			continue
		}
		db.degrade(err, buf)
		if quit == nil && time.Since(closing) > db.opts.CloseTimeout {
			db.abandon(buf, err)
			return
		}
		quit = db.pause(backoff, buf, quit)
		if quit == nil && closing.IsZero() {
			closing = time.Now()
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// pull moves what the queue holds into the buffer without waiting.
func (db *DB) pull(buf *buffer) {
	for {
		select {
		case it := <-db.queue:
			db.take(buf, it)
		default:
			return
		}
	}
}

// pause waits d before a retry, buffering rows meanwhile. It returns nil
// if Close was called (quit seen), else quit.
func (db *DB) pause(d time.Duration, buf *buffer, quit chan struct{}) chan struct{} {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case it := <-db.queue:
			db.take(buf, it)
		case <-quit:
			quit = nil
		case <-t.C:
			return quit
		}
	}
}

// abandon counts every buffered row as lost and releases the flushes: Close
// waited CloseTimeout for PostgreSQL to come back.
func (db *DB) abandon(buf *buffer, err error) {
	db.pull(buf)
	n := 0
	for _, it := range buf.items[buf.head:] {
		if c := db.counters(it); c != nil {
			c.lost.Add(1)
		}
		n++
	}
	db.log.Error().Str("db", db.url).Str("err", db.errorf("%w", err).Error()).Int("lost_rows", buf.rows).
		Msg("store closed while PostgreSQL is unreachable; buffered rows lost")
	buf.pop(n)
	db.health.rows.Store(0)
	db.health.bytes.Store(0)
}

// commit writes b in one transaction and, once it is committed, counts
// every row as written or duplicate.
func (db *DB) commit(b *batch) (err error) {
	defer func() {
		// The store must never take the server down; a panic is not
		// worth retrying.
		if v := recover(); v != nil {
			err = fmt.Errorf("panic: %v", v)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	var n batchCounts
	for attempt := 1; ; attempt++ {
		n = batchCounts{}
		db.batches.Add(1)
		start := time.Now()
		err = db.exec(ctx, b, &n)
		if db.opts.OnCommit != nil {
			db.opts.OnCommit(b.rows(), time.Since(start), err)
		}
		if err == nil {
			break
		}
		db.failedBatches.Add(1)
		// Concurrent writers lock rollup rows in one order, but a
		// deadlock or serialization failure is still possible (with
		// retention, say): it says nothing about the server's health,
		// so the batch is retried at once, a few times, before it
		// counts as a failure.
		if !rolledBack(err) || attempt == 3 {
			return err
		}
	}
	db.preds.written.Add(n.preds.written)
	db.preds.duplicate.Add(n.preds.duplicate)
	db.shadows.written.Add(n.shadows.written)
	db.shadows.duplicate.Add(n.shadows.duplicate)
	db.skips.written.Add(b.skipRows + n.defers.written)
	db.skips.duplicate.Add(n.defers.duplicate)
	return nil
}

type batchCounts struct {
	preds, shadows, defers struct{ written, duplicate int64 }
}

// fail counts every row of a batch that PostgreSQL refused as lost.
func (db *DB) fail(b *batch, err error) {
	db.preds.lost.Add(int64(len(b.preds)))
	db.shadows.lost.Add(int64(len(b.shadows)))
	db.skips.lost.Add(b.skipRows + int64(len(b.defers)))
	if ok, suppressed := db.failLog.allow(); ok {
		db.log.Error().Str("err", db.errorf("%w", err).Error()).Int("lost_rows", b.rows()).Int64("suppressed_errors", suppressed).
			Msg("PostgreSQL refused a batch; rows lost")
	}
}
