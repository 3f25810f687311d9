package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/store/rollup"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// Rows are encoded by the caller rather than by the writer: the callers run
// in parallel while the writer is the one bottleneck, and the row then holds
// a snapshot that does not change if the caller reuses its tensors. Nullable
// columns are pointers, which pgx encodes as NULL elements of an array.

type predRow struct {
	id, model, version string
	timeUS, latencyUS  int64
	inputs             *string
	inputsSHA256       string
	inputsSize         int64
	outputs            *string
	status, err        string
	cpuUS              *int64
	servedBy           string // who answered the user: see understudy.ServedBy
	roll               rollup.Prediction
}

type shadowRow struct {
	id, shadow, version, primary, primaryVersion string
	timeUS, latencyUS                            int64
	outputs                                      *string
	status, err                                  string
	agreement, maxAbsDiff, meanAbsDiff           *float64
	primaryClass, shadowClass                    *int64
	comparison                                   string
	sumSq, primaryScore, shadowScore             *float64
	elements, cpuUS, primaryLatencyUS            *int64
	servedBy                                     string
	origin                                       string // stored: never ""
	roll                                         rollup.Shadow
}

type skipKey struct {
	shadow, version string
	minute          int64
}

type skipRow struct {
	skipKey
	sampledOut, dropped int64
	// deferred is never queued: the writer counts the backlog rows it
	// inserted (see writeHistory).
	deferred int64
}

// dropRow is a CountDrops call.
type dropRow struct {
	dropKey
	n int64
}

type dropKey struct {
	skipKey
	reason string
}

// deferRow is a Defer call: a backlog row.
type deferRow struct {
	id, shadow, version string
	timeUS, deferredUS  int64
}

// flushReq is closed by the writer once everything queued before it is
// committed or counted lost.
type flushReq chan struct{}

// rowOverhead estimates the bytes of a queued row beyond its strings: the
// struct, its pointers and the rollup facts.
const rowOverhead = 400

// size estimates the memory a queued row holds, for MaxBufferedBytes.
func size(it any) int64 {
	switch r := it.(type) {
	case *predRow:
		n := len(r.id) + len(r.model) + len(r.version) + len(r.inputsSHA256) + len(r.status) + len(r.err)
		if r.inputs != nil {
			n += len(*r.inputs)
		}
		if r.outputs != nil {
			n += len(*r.outputs)
		}
		return int64(n + rowOverhead)
	case *shadowRow:
		n := len(r.id) + len(r.shadow) + len(r.version) + len(r.primary) + len(r.primaryVersion) + len(r.status) + len(r.err) + len(r.comparison)
		if r.outputs != nil {
			n += len(*r.outputs)
		}
		n += 16 * (len(r.roll.PrimaryClasses) + len(r.roll.ShadowClasses))
		return int64(n + rowOverhead)
	case *skipRow:
		return int64(len(r.shadow) + len(r.version) + 64)
	case *dropRow:
		return int64(len(r.shadow) + len(r.version) + len(r.reason) + 64)
	case *deferRow:
		return int64(len(r.id) + len(r.shadow) + len(r.version) + 64)
	}
	return 0
}

// WritePrediction queues a prediction for writing. It never blocks: when the
// queue is full or the store is closed the row is counted as lost.
func (db *DB) WritePrediction(p *understudy.Prediction) {
	db.enqueue(db.predRow(p), &db.preds)
}

func (db *DB) predRow(p *understudy.Prediction) *predRow {
	in := store.EncodeTensors(p.Inputs)
	sum := sha256.Sum256(in)
	r := &predRow{
		servedBy:     text(understudy.StoredServedBy(p.ServedBy)),
		id:           text(p.ID),
		model:        text(p.Model),
		version:      text(p.Version),
		timeUS:       db.micros(p.Time),
		latencyUS:    p.Latency.Microseconds(),
		inputsSHA256: hex.EncodeToString(sum[:]),
		inputsSize:   int64(len(in)),
		status:       text(p.Status),
		err:          text(p.Error),
		cpuUS:        micros(p.CPU),
	}
	if db.opts.InputCap >= 0 && len(in) <= db.opts.InputCap {
		s := text(bytesString(in))
		r.inputs = &s
	}
	if p.Outputs != nil {
		s := text(bytesString(store.EncodeTensors(p.Outputs)))
		r.outputs = &s
	}
	r.roll = rollup.PredictionOf(p, r.timeUS)
	r.roll.Model, r.roll.Version = r.model, r.version
	return r
}

// WriteShadowResult queues a shadow result for writing. It never blocks.
func (db *DB) WriteShadowResult(s *understudy.ShadowResult) {
	db.enqueue(db.shadowRow(s), &db.shadows)
}

func (db *DB) shadowRow(s *understudy.ShadowResult) *shadowRow {
	c := &s.Compare
	r := &shadowRow{
		servedBy:       text(understudy.StoredServedBy(s.ServedBy)),
		origin:         text(understudy.StoredOrigin(s.Origin)),
		id:             text(s.RequestID),
		shadow:         text(s.Shadow),
		version:        text(s.Version),
		primary:        text(s.Primary),
		primaryVersion: text(s.PrimaryVersion),
		timeUS:         db.micros(s.Time),
		latencyUS:      s.Latency.Microseconds(),
		status:         text(s.Status),
		err:            text(s.Error),
		agreement:      c.Agreement,
		maxAbsDiff:     c.MaxAbsDiff,
		meanAbsDiff:    c.MeanAbsDiff,
		primaryClass:   c.PrimaryClass,
		shadowClass:    c.ShadowClass,
		sumSq:          c.SumSqDiff,
		primaryScore:   c.PrimaryScore,
		shadowScore:    c.ShadowScore,
		cpuUS:          micros(s.CPU),
		comparison:     text(bytesString(store.MarshalComparison(c))),
	}
	if c.MaxAbsDiff != nil && c.Elements > 0 {
		n := int64(c.Elements)
		r.elements = &n
	}
	if s.PrimaryLatency > 0 {
		us := s.PrimaryLatency.Microseconds()
		r.primaryLatencyUS = &us
	}
	r.roll = rollup.ShadowOf(s, r.timeUS)
	r.roll.Shadow, r.roll.Version, r.roll.Primary, r.roll.PrimaryVersion = r.shadow, r.version, r.primary, r.primaryVersion
	r.roll.Origin = r.origin
	if s.Outputs != nil {
		o := text(bytesString(store.EncodeTensors(s.Outputs)))
		r.outputs = &o
	}
	return r
}

// CountSkips adds sampled-out and dropped jobs of one shadow to its counters
// for the minute of at; the dropped ones are counted for DropShed too. It
// never blocks.
func (db *DB) CountSkips(shadow, version string, at time.Time, sampledOut, dropped int64) {
	if sampledOut == 0 && dropped == 0 {
		return
	}
	db.enqueue(&skipRow{skipKey: skipKey{text(shadow), text(version), at.Unix() / 60}, sampledOut: sampledOut, dropped: dropped}, &db.skips)
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

// counters returns the counters of the table a queued row goes to.
func (db *DB) counters(it any) *tableCounters {
	switch it.(type) {
	case *predRow:
		return &db.preds
	case *shadowRow:
		return &db.shadows
	case *skipRow, *dropRow, *deferRow:
		// The backlog's rows are counted with the skip counters they add
		// to.
		return &db.skips
	}
	return nil
}

func (db *DB) micros(t time.Time) int64 {
	if t.IsZero() {
		t = db.opts.Now()
	}
	return t.UnixMicro()
}

// micros is a duration in microseconds, or nil (NULL) for 0: not measured.
func micros(d time.Duration) *int64 {
	if d <= 0 {
		return nil
	}
	us := d.Microseconds()
	return &us
}

// bytesString returns b as a string without copying it. Only for buffers
// nothing writes to afterwards, such as a fresh encoding handed to a row.
func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// text makes s storable in a TEXT column, which refuses NUL and invalid
// UTF-8: one such string (a model's error message, say) would otherwise
// fail its whole batch. Valid strings, nearly all, are returned as they are.
func text(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "\uFFFD")
}

// Flush waits until every row queued before the call is committed or
// counted lost, or until ctx is done. While PostgreSQL is unreachable that
// is until it is back (or ctx is done).
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
