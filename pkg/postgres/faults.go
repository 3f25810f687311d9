package postgres

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// PostgreSQL is remote: it can go away while the server keeps serving.
// The writer then keeps the rows of the batch that failed, and the rows
// that keep coming, in its buffer (up to MaxBufferedRows and
// MaxBufferedBytes; beyond, new rows are dropped and counted as lost), and
// retries with a growing pause until a commit succeeds. A retried batch is
// safe: rows that an earlier attempt did commit meet ON CONFLICT DO
// NOTHING, are counted as duplicates, and are not counted again into the
// rollups, since only the rows an INSERT returns are.

// Backoff between retries of a failed batch.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// buffer is the writer's FIFO of rows and flush requests, oldest first: the
// rows taken from the queue and not yet committed. Only the writer touches
// it, except for the counts that Stats and Degraded read.
type buffer struct {
	items   []any
	head    int
	rows    int   // rows in items (flush requests are not rows)
	bytes   int64 // their estimated size
	flushes int   // flush requests in items
}

func (b *buffer) len() int { return len(b.items) - b.head }

func (b *buffer) push(it any, n int64) {
	if b.head > 0 && b.head == len(b.items) {
		b.items, b.head = b.items[:0], 0
	}
	b.items = append(b.items, it)
	if _, ok := it.(flushReq); ok {
		b.flushes++
	} else {
		b.rows++
		b.bytes += n
	}
}

// pop removes the first n items, releasing their flush requests.
func (b *buffer) pop(n int) {
	for _, it := range b.items[b.head : b.head+n] {
		if f, ok := it.(flushReq); ok {
			close(f)
			b.flushes--
		} else {
			b.rows--
			b.bytes -= size(it)
		}
	}
	clear(b.items[b.head : b.head+n])
	b.head += n
	// Compact once the consumed front is most of the slice, so that a long
	// outage does not keep a huge array alive.
	if b.head > 1024 && b.head > len(b.items)/2 {
		n := copy(b.items, b.items[b.head:])
		clear(b.items[n:])
		b.items, b.head = b.items[:n], 0
	}
}

// health is what Degraded reports, and the buffer's counts for Stats.
type health struct {
	rows, bytes      atomic.Int64 // held by the writer
	droppedWhileDown atomic.Int64
	retries          atomic.Int64
	mu               sync.Mutex
	since            time.Time // zero when healthy
	err              string
	down             bool // the last error says unreachable
}

// take adds an item from the queue to the buffer, or drops a row that does
// not fit (counting it as lost).
func (db *DB) take(b *buffer, it any) {
	if _, ok := it.(flushReq); ok {
		b.push(it, 0)
		return
	}
	n := size(it)
	if b.rows+1 > db.opts.MaxBufferedRows || b.bytes+n > db.opts.MaxBufferedBytes {
		db.counters(it).lost.Add(1)
		if db.degraded() {
			db.health.droppedWhileDown.Add(1)
		}
		return
	}
	b.push(it, n)
	db.health.rows.Store(int64(b.rows))
	db.health.bytes.Store(b.bytes)
}

// degrade records a failed attempt; the first one of an outage is logged.
func (db *DB) degrade(err error, b *buffer) {
	h := &db.health
	h.retries.Add(1)
	h.mu.Lock()
	first := h.since.IsZero()
	if first {
		h.since = time.Now()
	}
	h.err = db.errorf("%w", err).Error()
	h.down = unreachable(err)
	h.mu.Unlock()
	if first {
		db.log.Error().Str("db", db.url).Str("err", h.err).Int("buffered_rows", b.rows).
			Msg("PostgreSQL writes fail; rows are buffered and retried")
	}
}

// recovered ends an outage, if there was one.
func (db *DB) recovered(b *buffer) {
	h := &db.health
	h.mu.Lock()
	since := h.since
	h.since, h.err = time.Time{}, ""
	h.mu.Unlock()
	if !since.IsZero() {
		db.log.Info().Str("db", db.url).Dur("down", time.Since(since)).Int("buffered_rows", b.rows).
			Int64("dropped_while_down", h.droppedWhileDown.Load()).Msg("PostgreSQL writes succeed again")
	}
}

func (db *DB) degraded() bool {
	db.health.mu.Lock()
	defer db.health.mu.Unlock()
	return !db.health.since.IsZero()
}

// Degraded returns "" while writes succeed, and otherwise why they do not:
// since when, the last error (without the password) and the rows buffered.
func (db *DB) Degraded() string {
	h := &db.health
	h.mu.Lock()
	since, msg, down := h.since, h.err, h.down
	h.mu.Unlock()
	if since.IsZero() {
		return ""
	}
	what := "PostgreSQL writes failing"
	if down {
		what = "PostgreSQL unreachable"
	}
	return fmt.Sprintf("%s since %s: %s; %d rows buffered", what, since.Format("15:04:05"), msg, h.rows.Load())
}

// unreachable reports whether err says the server could not be reached or
// went away, rather than that it refused a statement.
func unreachable(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return true
	}
	return pgErr.Code[:2] == "08" || pgErr.Code[:2] == "57"
}

// BufferStats are the writer's counts of rows held for PostgreSQL.
type BufferStats struct {
	// Rows and Bytes are the rows taken from the queue and not yet
	// committed (a batch's worth when healthy; everything since the
	// outage began when PostgreSQL is unreachable).
	Rows  int64
	Bytes int64
	// DroppedWhileDown counts rows dropped because the buffer was full
	// while writes failed; they are also in Stats' Lost.
	DroppedWhileDown int64
	// Retries counts failed attempts at a batch that were retried.
	Retries int64
}

// Buffer returns the buffer's counts.
func (db *DB) Buffer() BufferStats {
	h := &db.health
	return BufferStats{Rows: h.rows.Load(), Bytes: h.bytes.Load(), DroppedWhileDown: h.droppedWhileDown.Load(), Retries: h.retries.Load()}
}

// rolledBack reports whether the server rolled the transaction back to
// resolve a conflict with another one (SQLSTATE class 40: serialization
// failure, deadlock).
func rolledBack(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code[:2] == "40"
}

// transient reports whether a batch that failed with err may succeed if
// retried as it is: the server is unreachable, restarting, out of
// resources, or rolled the transaction back (serialization failure,
// deadlock). Anything else (the server refused the data or the statement)
// would fail again.
func transient(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return true // network errors, timeouts, closed connections
	}
	switch pgErr.Code[:2] {
	case "08", // connection exception
		"40", // transaction rollback: serialization failure, deadlock
		"53", // insufficient resources: disk full, too many connections
		"57", // operator intervention: shutdown, cannot connect now
		"58": // system error
		return true
	}
	return false
}
