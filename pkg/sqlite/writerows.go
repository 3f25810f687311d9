package sqlite

import (
	"database/sql"
	"time"
	"unsafe"

	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/store/rollup"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file builds the rows the writer stores.

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
	servedBy     string // who answered the user: see understudy.ServedBy
	roll         rollup.Prediction
}

// boxes keeps the interface values of the last few distinct strings
// boxed, for the writer's goroutine alone: database/sql takes every
// argument as an interface, and boxing a string allocates, so the strings
// that repeat from row to row (model, version, status, served by) are
// boxed once.
type boxes struct {
	s    [16]string
	v    [16]any
	next int
}

// of returns s as an interface, boxed once while it stays among the last
// 16 distinct strings asked for.
func (b *boxes) of(s string) any {
	for i, v := range b.v {
		if v != nil && b.s[i] == s {
			return v
		}
	}
	v := any(s)
	b.s[b.next], b.v[b.next] = s, v
	b.next = (b.next + 1) % len(b.s)
	return v
}

type shadowRow struct {
	id, shadow, version, primary, primaryVersion string
	timeUS, latencyUS                            int64
	outputs                                      []byte // binary stored form; nil for NULL
	status, err                                  string
	servedBy                                     string
	origin                                       string // as stored: never ""
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

// dropRow is a CountDrops call: n jobs dropped for reason, counted in
// shadow_skips.dropped and in shadow_drops.
type dropRow struct {
	dropKey
	n int64
}

type dropKey struct {
	skipKey
	reason string
}

// deferRow is a Defer call: a job for the backlog.
type deferRow struct {
	id, shadow, version string
	timeUS, deferredUS  int64
}

// encodePred fills r from p, appending its tensors' stored forms to buf,
// and returns buf. r's tensors point into buf.
func (db *DB) encodePred(r *predRow, buf []byte, p *understudy.Prediction) []byte {
	*r = predRow{
		servedBy:  understudy.StoredServedBy(p.ServedBy),
		id:        p.ID,
		model:     p.Model,
		version:   p.Version,
		timeUS:    db.micros(p.Time),
		latencyUS: p.Latency.Microseconds(),
		status:    p.Status,
		err:       p.Error,
		cpuUS:     nullDuration(p.CPU),
	}
	// No room made ahead with StoredTensorsSize: buf is the writer's,
	// reused batch after batch, so it has long had the room, and sizing
	// walked both maps again, a third of the encoding's cost. A row keeps
	// its slice of buf even if a later append moves buf elsewhere.
	start := len(buf)
	buf = store.AppendStoredTensors(buf, p.Inputs)
	stored := buf[start:len(buf):len(buf)]
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
		o := len(buf)
		buf = store.AppendStoredTensors(buf, p.Outputs)
		r.outputs = buf[o:len(buf):len(buf)]
	}
	r.roll = rollup.PredictionOf(p, r.timeUS)
	return buf
}

// predRows encodes a batch's predictions for its insert, into rows and a
// buffer that the writer reuses from batch to batch: a request hands over
// only its Prediction, and no encoded row outlives its batch. Only the
// writer's goroutine calls it; the rows are good until the next call.
func (db *DB) predRows(preds []*understudy.Prediction) []*predRow {
	if cap(db.predScratch) < len(preds) {
		db.predScratch = make([]predRow, len(preds))
	}
	rows := db.predScratch[:len(preds)]
	ptrs, buf := db.predPtrs[:0], db.predBuf[:0]
	if cap(buf) > maxPredBuf {
		buf = nil // grown by a batch of large inputs: let it go
	}
	for i, p := range preds {
		buf = db.encodePred(&rows[i], buf, p)
		ptrs = append(ptrs, &rows[i])
	}
	db.predPtrs, db.predBuf = ptrs, buf
	return ptrs
}

// maxPredBuf is the largest encoding buffer the writer keeps between
// batches.
const maxPredBuf = 4 << 20

// bytesString returns b as a string without copying it. Only for buffers
// nothing writes to afterwards, such as a fresh encoding handed to a row.
func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func (db *DB) shadowRow(s *understudy.ShadowResult) *shadowRow {
	c := &s.Compare
	r := &shadowRow{
		servedBy:       understudy.StoredServedBy(s.ServedBy),
		origin:         understudy.StoredOrigin(s.Origin),
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
