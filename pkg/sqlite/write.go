package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
	"unsafe"

	"github.com/mattn/go-sqlite3"
	"golang.org/x/sys/unix"

	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/store/rollup"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// Rows are encoded by the caller rather than by the writer: the callers run
// in parallel while the writer is the one bottleneck, and the row then holds
// a snapshot that does not change if the caller reuses its tensors.

type predRow struct {
	id, model, version string
	timeUS, latencyUS  int64
	// inputs and outputs are the binary stored form (store.AppendStoredTensors),
	// nil for NULL: bound as BLOBs.
	inputs, outputs []byte
	// inputsSHA256 is "" when the inputs are stored: readers hash the stored
	// copy (store.StoredInputs). Over the cap it is the JSON form's hash.
	inputsSHA256 string
	inputsSize   int
	status, err  string
	cpuUS        sql.NullInt64
	roll         rollup.Prediction
}

type shadowRow struct {
	id, shadow, version, primary, primaryVersion string
	timeUS, latencyUS                            int64
	outputs                                      []byte // binary stored form; nil for NULL
	status, err                                  string
	agreement, maxAbsDiff, meanAbsDiff           sql.NullFloat64
	primaryClass, shadowClass                    sql.NullInt64
	comparison                                   string
	sumSq, primaryScore, shadowScore             sql.NullFloat64
	elements, cpuUS, primaryLatencyUS            sql.NullInt64
	roll                                         rollup.Shadow
}

type skipKey struct {
	shadow, version string
	minute          int64
}

type skipRow struct {
	skipKey
	sampledOut, dropped int64
}

// flushReq is closed by the writer once everything queued before it is
// committed or counted lost.
type flushReq chan struct{}

// WritePrediction queues a prediction for writing. It never blocks: when the
// queue is full or the store is closed the row is counted as lost.
func (db *DB) WritePrediction(p *understudy.Prediction) {
	db.enqueue(db.predRow(p), &db.preds)
}

func (db *DB) predRow(p *understudy.Prediction) *predRow {
	r := &predRow{
		id:        p.ID,
		model:     p.Model,
		version:   p.Version,
		timeUS:    db.micros(p.Time),
		latencyUS: p.Latency.Microseconds(),
		status:    p.Status,
		err:       p.Error,
		cpuUS:     nullDuration(p.CPU),
	}
	// One buffer for both tensor maps: one allocation per row.
	in := store.StoredTensorsSize(p.Inputs)
	buf := make([]byte, 0, in+store.StoredTensorsSize(p.Outputs))
	buf = store.AppendStoredTensors(buf, p.Inputs)
	stored := buf[:len(buf):len(buf)]
	r.inputsSize = len(stored)
	if inputCap := db.opts.InputCap; inputCap < 0 || len(stored) > inputCap {
		// Over the cap (or no inputs kept at all): keep the hash and size
		// of the JSON form, as before the binary form; store the inputs
		// anyway if that form fits, so that nothing stored before is not
		// stored now.
		j := store.EncodeTensors(p.Inputs)
		r.inputsSHA256, r.inputsSize = store.InputsDigest(j), len(j)
		if inputCap < 0 || len(j) > inputCap {
			stored = nil
		}
	}
	r.inputs = stored
	if p.Outputs != nil {
		r.outputs = store.AppendStoredTensors(buf[len(buf):], p.Outputs)
	}
	r.roll = rollup.PredictionOf(p, r.timeUS)
	return r
}

// bytesString returns b as a string without copying it. Only for buffers
// nothing writes to afterwards, such as a fresh encoding handed to a row.
func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// WriteShadowResult queues a shadow result for writing. It never blocks.
func (db *DB) WriteShadowResult(s *understudy.ShadowResult) {
	db.enqueue(db.shadowRow(s), &db.shadows)
}

func (db *DB) shadowRow(s *understudy.ShadowResult) *shadowRow {
	c := &s.Compare
	r := &shadowRow{
		id:             s.RequestID,
		shadow:         s.Shadow,
		version:        s.Version,
		primary:        s.Primary,
		primaryVersion: s.PrimaryVersion,
		timeUS:         db.micros(s.Time),
		latencyUS:      s.Latency.Microseconds(),
		status:         s.Status,
		err:            s.Error,
		agreement:      nullFloat(c.Agreement),
		maxAbsDiff:     nullFloat(c.MaxAbsDiff),
		meanAbsDiff:    nullFloat(c.MeanAbsDiff),
		primaryClass:   nullInt(c.PrimaryClass),
		shadowClass:    nullInt(c.ShadowClass),
		sumSq:          nullFloat(c.SumSqDiff),
		primaryScore:   nullFloat(c.PrimaryScore),
		shadowScore:    nullFloat(c.ShadowScore),
		cpuUS:          nullDuration(s.CPU),
	}
	if c.MaxAbsDiff != nil && c.Elements > 0 {
		r.elements = sql.NullInt64{Int64: int64(c.Elements), Valid: true}
	}
	if s.PrimaryLatency > 0 {
		r.primaryLatencyUS = sql.NullInt64{Int64: s.PrimaryLatency.Microseconds(), Valid: true}
	}
	r.roll = rollup.ShadowOf(s, r.timeUS)
	if s.Outputs != nil {
		r.outputs = store.EncodeStoredTensors(s.Outputs)
	}
	// A fresh buffer that nothing else holds: no copy needed.
	r.comparison = bytesString(store.MarshalComparison(c))
	return r
}

// CountSkips adds sampled-out and dropped jobs of one shadow to its counters
// for the minute of at. It never blocks.
func (db *DB) CountSkips(shadow, version string, at time.Time, sampledOut, dropped int64) {
	if sampledOut == 0 && dropped == 0 {
		return
	}
	db.enqueue(&skipRow{skipKey{shadow, version, at.Unix() / 60}, sampledOut, dropped}, &db.skips)
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

func (db *DB) micros(t time.Time) int64 {
	if t.IsZero() {
		t = db.opts.Now()
	}
	return t.UnixMicro()
}

func nullFloat(f *float64) sql.NullFloat64 {
	if f == nil {
		return sql.NullFloat64{}
	}
	return sql.NullFloat64{Float64: *f, Valid: true}
}

// nullDuration is a duration in microseconds, or NULL for 0 (not measured).
func nullDuration(d time.Duration) sql.NullInt64 {
	return sql.NullInt64{Int64: d.Microseconds(), Valid: d > 0}
}

func nullInt(i *int64) sql.NullInt64 {
	if i == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: *i, Valid: true}
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
	preds    []*predRow
	shadows  []*shadowRow
	skips    map[skipKey]*skipRow // summed, so a burst of skips is one upsert
	skipRows int64
	flushes  []flushReq
}

func (b *batch) rows() int { return len(b.preds) + len(b.shadows) + int(b.skipRows) }

func (b *batch) add(it any) {
	switch r := it.(type) {
	case *predRow:
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
	case flushReq:
		b.flushes = append(b.flushes, r)
	}
}

func (b *batch) reset() {
	clear(b.preds)
	clear(b.shadows)
	clear(b.flushes)
	clear(b.skips)
	b.preds, b.shadows, b.flushes, b.skipRows = b.preds[:0], b.shadows[:0], b.flushes[:0], 0
}

// run is the writer: it collects rows until the batch is full, the flush
// interval has passed since its first row, or someone waits in Flush, and
// commits them in one transaction.
func (db *DB) run() {
	defer close(db.done)
	if db.low != nil {
		defer close(db.low.run)
	}
	b := &batch{skips: map[skipKey]*skipRow{}}
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
	// shadows' and the checkpoint at the thread's. Under contention that
	// part waits for spare CPU, and rows queue meanwhile instead of
	// delaying requests.
	db.commitRows(&batch{preds: b.preds, skips: b.skips, skipRows: b.skipRows})
	checkpoint := time.Since(db.lastCheckpoint) >= db.opts.CheckpointEvery
	if checkpoint {
		db.lastCheckpoint = time.Now()
	}
	if len(b.shadows) == 0 && !checkpoint {
		return
	}
	db.low.do(func() {
		db.commitRows(&batch{shadows: b.shadows})
		if checkpoint {
			db.checkpoint()
		}
	})
}

// checkpoint copies the write-ahead log into the database as far as
// readers allow, without waiting for them, as SQLite's automatic
// checkpoints do.
func (db *DB) checkpoint() {
	var busy, logFrames, done int
	err := db.write.QueryRow("PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logFrames, &done)
	if err == nil {
		db.checkpoints.Add(1)
		db.checkpointTID.Store(int64(unix.Gettid()))
		return
	}
	if ok, suppressed := db.checkpointLog.allow(); ok {
		db.log.Warn().Err(err).Int64("suppressed", suppressed).Msg("checkpoint of the write-ahead log failed; the log grows until one succeeds")
	}
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
	db.skips.written.Add(b.skipRows)
	if db.failing {
		db.failing = false
		if ok, _ := db.recoverLog.allow(); ok {
			db.log.Info().Msg("store writes succeed again")
		}
	}
}

type batchCounts struct {
	preds, shadows struct{ written, duplicate, lost int64 }
}

// fail counts every row of a batch that could not be committed as lost.
func (db *DB) fail(b *batch, err error) {
	db.batches.Add(1)
	db.failedBatches.Add(1)
	db.preds.lost.Add(int64(len(b.preds)))
	db.shadows.lost.Add(int64(len(b.shadows)))
	db.skips.lost.Add(b.skipRows)
	db.failing = true
	if ok, suppressed := db.failLog.allow(); ok {
		db.log.Error().Err(err).Int("lost_rows", b.rows()).Int64("suppressed_errors", suppressed).
			Msg("store write failed; rows lost")
	}
}

// rowError reports whether err concerns one row only, so that the rest of
// its batch can still be committed. Anything else (disk full, I/O error,
// read-only database, busy) fails the whole batch.
func rowError(err error) bool {
	var e sqlite3.Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Code {
	case sqlite3.ErrConstraint, sqlite3.ErrTooBig, sqlite3.ErrMismatch, sqlite3.ErrRange:
		return true
	}
	return false
}

func (db *DB) exec(b *batch, n *batchCounts) (err error) {
	ctx := context.Background()
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	// A no-op after Commit; after a failure SQLite may have rolled back
	// already, so its error says nothing.
	defer func() { _ = tx.Rollback() }()
	rowFailed := func(table, id string, err error) {
		if ok, suppressed := db.failLog.allow(); ok {
			db.log.Error().Err(err).Str("table", table).Str("request_id", id).Int64("suppressed_errors", suppressed).
				Msg("store could not write a row; row lost")
		}
	}
	dup := func(table, id string) {
		if ok, suppressed := db.dupLog.allow(); ok {
			db.log.Warn().Str("table", table).Str("request_id", id).Int64("suppressed", suppressed).
				Msg("duplicate request id ignored")
		}
	}
	ru := rollup.NewBatch(db.opts.Replica)
	if len(b.preds) > 0 {
		st := tx.StmtContext(ctx, db.insPred)
		for _, r := range b.preds {
			res, err := st.ExecContext(ctx, r.id, r.timeUS, r.model, r.version, r.inputs, r.inputsSHA256, r.inputsSize, r.outputs, r.latencyUS, r.status, r.err, r.cpuUS)
			if err != nil {
				if !rowError(err) {
					return fmt.Errorf("insert prediction: %w", err)
				}
				n.preds.lost++
				rowFailed("predictions", r.id, err)
			} else if k, _ := res.RowsAffected(); k == 0 {
				n.preds.duplicate++
				dup("predictions", r.id)
			} else {
				n.preds.written++
				ru.AddPrediction(&r.roll)
			}
		}
	}
	if len(b.shadows) > 0 {
		st := tx.StmtContext(ctx, db.insShadow)
		for _, r := range b.shadows {
			res, err := st.ExecContext(ctx, r.id, r.timeUS, r.shadow, r.version, r.primary, r.primaryVersion, r.outputs, r.latencyUS, r.status, r.err,
				r.agreement, r.primaryClass, r.shadowClass, r.maxAbsDiff, r.meanAbsDiff, r.comparison,
				r.sumSq, r.elements, r.primaryScore, r.shadowScore, r.cpuUS, r.primaryLatencyUS)
			if err != nil {
				if !rowError(err) {
					return fmt.Errorf("insert shadow result: %w", err)
				}
				n.shadows.lost++
				rowFailed("shadow_results", r.id, err)
			} else if k, _ := res.RowsAffected(); k == 0 {
				n.shadows.duplicate++
				dup("shadow_results", r.id)
			} else {
				n.shadows.written++
				ru.AddShadow(&r.roll)
			}
		}
	}
	if len(b.skips) > 0 {
		st := tx.StmtContext(ctx, db.upsertSkip)
		for _, r := range b.skips {
			if _, err := st.ExecContext(ctx, r.shadow, r.version, r.minute, r.sampledOut, r.dropped); err != nil {
				return fmt.Errorf("upsert skips: %w", err)
			}
		}
	}
	if err := writeRollups(ctx, tx, &db.rollup, ru); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}
