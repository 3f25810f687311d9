package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// PairOrder orders the pairs Pairs returns.
type PairOrder int

// The orders of Pairs.
const (
	// ByTime is newest first.
	ByTime PairOrder = iota
	// ByDiff is largest per-pair max|Δ| first, and only pairs that have one.
	ByDiff
)

// DefaultPairLimit is the Limit of a PairFilter that sets none.
const DefaultPairLimit = 100

// PairFilter selects stored primary/shadow pairs.
type PairFilter struct {
	// Shadow and Version "" select every one.
	Shadow, Version string
	// Since and Until bound the shadow row's time to [Since, Until); zero
	// values leave that side open.
	Since, Until time.Time
	// DisagreeOnly keeps the pairs whose shadow run failed or timed out,
	// whose classes disagree (agreement < 1), or, when the pair has no
	// class output, whose max|Δ| is above Tolerance.
	DisagreeOnly bool
	Tolerance    float64
	Order        PairOrder
	// Limit is the most pairs returned; default 100.
	Limit int
}

// PairRecord is one stored pair with the request's inputs and both outputs
// as stored (JSON; empty when not stored).
type PairRecord struct {
	RequestID                    string
	Time                         time.Time // when the shadow run finished
	Shadow, Version              string
	PrimaryModel, PrimaryVersion string
	Status, Error                string
	PrimaryClass, ShadowClass    *int64
	Agreement, MaxAbsDiff        *float64
	Latency                      time.Duration
	PrimaryLatency               *time.Duration
	Label                        *float64
	Inputs, PrimaryOutputs       string
	ShadowOutputs                string
}

// Pairs returns the pairs selected by f through a snapshot of its own.
func (db *DB) Pairs(ctx context.Context, f PairFilter) ([]PairRecord, error) {
	s, err := db.BeginRead(ctx)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return s.Pairs(ctx, f)
}

// disagreeSQL is the condition of PairFilter.DisagreeOnly; it takes the
// tolerance.
const disagreeSQL = `(status <> 'ok' OR agreement < 1 OR (agreement IS NULL AND max_abs_diff > ?))`

type pairKey struct {
	id, timeUS int64
	diff       float64
}

// Pairs returns the pairs selected by f. Newest pairs come from one indexed
// range scan. Disagreements and the largest differences can be rare among
// millions of pairs, so for those the rollups say where a match can be: the
// search descends from days to hours to minutes, only into spans that can
// hold one, and reads the rows of those minutes only: newest first until
// the limit is reached, or, by difference, in order of the spans' largest
// |Δ| until no unread span can beat the pairs found.
func (s *Snapshot) Pairs(ctx context.Context, f PairFilter) ([]PairRecord, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultPairLimit
	}
	lo, hi := microRange(f.Since, f.Until)
	var keys []pairKey
	var err error
	switch {
	case !f.DisagreeOnly && f.Order == ByTime:
		keys, err = s.pairKeys(ctx, f, lo, hi, limit)
	case f.Order == ByTime:
		keys, err = s.newestPairs(ctx, f, lo, hi, limit)
	default:
		keys, err = s.largestPairs(ctx, f, lo, hi, limit)
	}
	if err != nil {
		return nil, err
	}
	return s.pairRecords(ctx, keys)
}

// pairKeys runs one query for the pairs of f in [lo, hi) in f's order.
func (s *Snapshot) pairKeys(ctx context.Context, f PairFilter, lo, hi int64, limit int) ([]pairKey, error) {
	where, args := shadowWhere(f.Shadow, f.Version)
	where += "time_us >= ? AND time_us < ?"
	args = append(args, lo, hi)
	if f.DisagreeOnly {
		where += " AND " + disagreeSQL
		args = append(args, f.Tolerance)
	}
	order := "time_us DESC, id DESC"
	if f.Order == ByDiff {
		where += " AND max_abs_diff IS NOT NULL"
		order = "max_abs_diff DESC, time_us DESC, id DESC"
	}
	args = append(args, limit)
	rows, err := s.tx.QueryContext(ctx, `SELECT id, time_us, coalesce(max_abs_diff, 0) FROM shadow_results WHERE `+where+` ORDER BY `+order+` LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("read pairs: %w", err)
	}
	defer rows.Close()
	var out []pairKey
	for rows.Next() {
		var k pairKey
		if err := rows.Scan(&k.id, &k.timeUS, &k.diff); err != nil {
			return nil, fmt.Errorf("read pairs: %w", err)
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// node is a rollup span that may hold matching pairs: at most bound, none
// with a max|Δ| above maxAbs.
type node struct {
	span, start int64
	bound       int64
	maxAbs      float64
}

// nodes returns the spans of one length starting in [lo, hi) (minutes)
// that may hold pairs matching f.
func (s *Snapshot) nodes(ctx context.Context, f PairFilter, span, lo, hi int64) ([]node, error) {
	where, args := shadowWhere(f.Shadow, f.Version)
	byStart := map[int64]*node{}
	tolBucket := store.DiffBuckets.Index(f.Tolerance)
	err := s.each(ctx, `SELECT start, disagree_pairs + errors + timeouts, ok - class_pairs, float_pairs, max_abs,
			CASE WHEN ok > class_pairs THEN diff_hist END
		FROM shadow_rollups WHERE `+where+` span = ? AND start >= ? AND start < ?`, append(args, span, lo, hi),
		func(rows *sql.Rows) error {
			var (
				start, disagree, noClass, floats int64
				maxAbs                           sql.NullFloat64
				hist                             []byte
			)
			if err := rows.Scan(&start, &disagree, &noClass, &floats, &maxAbs, &hist); err != nil {
				return err
			}
			bound := floats
			if f.DisagreeOnly {
				// Pairs without a class output disagree above the
				// tolerance: at most those in its bucket and above.
				var above int64
				if noClass > 0 {
					if err := store.DecodeSparse(hist, func(i int, n int64) error {
						if i >= tolBucket {
							above += n
						}
						return nil
					}); err != nil {
						return err
					}
				}
				bound = disagree + min(noClass, above)
			}
			n := byStart[start]
			if n == nil {
				n = &node{span: span, start: start}
				byStart[start] = n
			}
			n.bound += bound
			if maxAbs.Valid {
				n.maxAbs = max(n.maxAbs, maxAbs.Float64)
			}
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("read pair rollups: %w", err)
	}
	out := make([]node, 0, len(byStart))
	for _, n := range byStart {
		if n.bound > 0 {
			out = append(out, *n)
		}
	}
	return out, nil
}

// roots are the nodes covering [lo, hi) (microseconds).
func (s *Snapshot) roots(ctx context.Context, f PairFilter, lo, hi int64) ([]node, error) {
	var out []node
	for _, seg := range cover(minuteOf(lo), minuteOf(hi-1)+1, rollupSpans) {
		ns, err := s.nodes(ctx, f, seg.span, seg.lo, seg.hi)
		if err != nil {
			return nil, err
		}
		out = append(out, ns...)
	}
	return out, nil
}

// children are the nodes of the next finer span inside n.
func (s *Snapshot) children(ctx context.Context, f PairFilter, n node) ([]node, error) {
	i := slices.Index(rollupSpans, n.span)
	return s.nodes(ctx, f, rollupSpans[i-1], n.start, n.start+n.span)
}

// minutePairs reads the pairs of f in minute n, within [lo, hi).
func (s *Snapshot) minutePairs(ctx context.Context, f PairFilter, n node, lo, hi int64, limit int) ([]pairKey, error) {
	return s.pairKeys(ctx, f, max(lo, n.start*60e6), min(hi, (n.start+1)*60e6), limit)
}

func byStartDesc(a, b node) int { return cmp.Compare(b.start, a.start) }

// newestPairs walks the nodes newest first, depth first.
func (s *Snapshot) newestPairs(ctx context.Context, f PairFilter, lo, hi int64, limit int) ([]pairKey, error) {
	var found []pairKey
	var visit func(ns []node) error
	visit = func(ns []node) error {
		slices.SortFunc(ns, byStartDesc)
		for _, n := range ns {
			if len(found) >= limit {
				return nil
			}
			if n.span == 1 {
				ks, err := s.minutePairs(ctx, f, n, lo, hi, limit-len(found))
				if err != nil {
					return err
				}
				found = append(found, ks...)
				continue
			}
			kids, err := s.children(ctx, f, n)
			if err != nil {
				return err
			}
			if err := visit(kids); err != nil {
				return err
			}
		}
		return nil
	}
	roots, err := s.roots(ctx, f, lo, hi)
	if err != nil {
		return nil, err
	}
	return found, visit(roots)
}

// largestPairs takes nodes in order of their largest |Δ|, expanding them
// down to minutes, until no node left can beat the limit-th pair found.
func (s *Snapshot) largestPairs(ctx context.Context, f PairFilter, lo, hi int64, limit int) ([]pairKey, error) {
	queue, err := s.roots(ctx, f, lo, hi)
	if err != nil {
		return nil, err
	}
	var found []pairKey
	for len(queue) > 0 {
		// The queue stays short (a few dozen nodes), so a scan for the
		// largest beats a heap.
		i := 0
		for j, n := range queue {
			if n.maxAbs > queue[i].maxAbs || n.maxAbs == queue[i].maxAbs && n.start > queue[i].start {
				i = j
			}
		}
		n := queue[i]
		queue = slices.Delete(queue, i, i+1)
		if len(found) >= limit && n.maxAbs <= found[limit-1].diff {
			break
		}
		if n.span > 1 {
			kids, err := s.children(ctx, f, n)
			if err != nil {
				return nil, err
			}
			queue = append(queue, kids...)
			continue
		}
		ks, err := s.minutePairs(ctx, f, n, lo, hi, limit)
		if err != nil {
			return nil, err
		}
		found = append(found, ks...)
		slices.SortStableFunc(found, func(a, b pairKey) int {
			return cmp.Or(cmp.Compare(b.diff, a.diff), cmp.Compare(b.timeUS, a.timeUS), cmp.Compare(b.id, a.id))
		})
		found = found[:min(len(found), limit)]
	}
	return found, nil
}

// pairRecords reads the pairs of keys, in the order of keys.
func (s *Snapshot) pairRecords(ctx context.Context, keys []pairKey) ([]PairRecord, error) {
	pos := make(map[int64]int, len(keys))
	for i, k := range keys {
		pos[k.id] = i
	}
	recs := make([]PairRecord, len(keys))
	for chunk := range slices.Chunk(keys, 500) {
		args := make([]any, len(chunk))
		for i, k := range chunk {
			args[i] = k.id
		}
		rows, err := s.tx.QueryContext(ctx, `SELECT s.id, s.request_id, s.time_us, s.shadow, s.version, s.primary_model, s.primary_version,
				s.status, coalesce(s.error, ''), s.primary_class, s.shadow_class, s.agreement, s.max_abs_diff,
				s.latency_us, s.primary_latency_us, p.label, coalesce(p.inputs, ''), coalesce(p.outputs, ''), coalesce(s.outputs, '')
			FROM shadow_results s LEFT JOIN predictions p ON p.request_id = s.request_id
			WHERE s.id IN (?`+strings.Repeat(", ?", len(chunk)-1)+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("read pairs: %w", err)
		}
		for rows.Next() {
			var (
				id, timeUS, latencyUS int64
				r                     PairRecord
				pc, sc, platency      sql.NullInt64
				agreement, diff, lbl  sql.NullFloat64
			)
			if err := rows.Scan(&id, &r.RequestID, &timeUS, &r.Shadow, &r.Version, &r.PrimaryModel, &r.PrimaryVersion,
				&r.Status, &r.Error, &pc, &sc, &agreement, &diff, &latencyUS, &platency, &lbl,
				&r.Inputs, &r.PrimaryOutputs, &r.ShadowOutputs); err != nil {
				rows.Close()
				return nil, fmt.Errorf("read pairs: %w", err)
			}
			r.Time = time.UnixMicro(timeUS)
			r.Latency = time.Duration(latencyUS) * time.Microsecond
			r.PrimaryClass, r.ShadowClass = ptrInt(pc), ptrInt(sc)
			r.Agreement, r.MaxAbsDiff, r.Label = ptrFloat(agreement), ptrFloat(diff), ptrFloat(lbl)
			if platency.Valid {
				d := time.Duration(platency.Int64) * time.Microsecond
				r.PrimaryLatency = &d
			}
			recs[pos[id]] = r
		}
		if err := rows.Err(); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read pairs: %w", err)
		}
		rows.Close()
	}
	// Both reads are in one snapshot, so every key has its record.
	return recs, nil
}

func ptrInt(n sql.NullInt64) *int64 {
	if !n.Valid {
		return nil
	}
	return &n.Int64
}

func ptrFloat(f sql.NullFloat64) *float64 {
	if !f.Valid {
		return nil
	}
	return &f.Float64
}

// StoredPrediction is a prediction row as stored, tensors as JSON.
type StoredPrediction struct {
	RequestID      string
	Time           time.Time
	Model, Version string
	// Inputs is "" when they were over the input cap; the hash and size
	// are always kept.
	Inputs       string
	InputsSHA256 string
	InputsSize   int
	Outputs      string
	Latency      time.Duration
	CPU          time.Duration // 0 if not measured
	Status       string
	Error        string
	Label        *float64
	LabelTime    time.Time
}

// StoredShadowResult is a shadow row as stored, outputs as JSON.
type StoredShadowResult struct {
	Time                         time.Time
	Shadow, Version              string
	PrimaryModel, PrimaryVersion string
	Outputs                      string
	Latency                      time.Duration
	PrimaryLatency               *time.Duration
	CPU                          time.Duration // 0 if not measured
	Status, Error                string
	Compare                      understudy.Comparison
}

// StoredRequest is everything stored about one request.
type StoredRequest struct {
	// Prediction is nil when the prediction row was lost or deleted.
	Prediction *StoredPrediction
	// Shadows are ordered by shadow and version.
	Shadows []StoredShadowResult
}

// Request returns everything stored about a request, or ENOTFOUND when
// nothing is.
func (db *DB) Request(ctx context.Context, requestID string) (*StoredRequest, error) {
	s, err := db.BeginRead(ctx)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	var out StoredRequest
	var (
		p                      StoredPrediction
		timeUS, latencyUS      int64
		cpuUS, labelTimeUS     sql.NullInt64
		label                  sql.NullFloat64
		inputs, outputs, errTx sql.NullString
	)
	err = s.tx.QueryRowContext(ctx, `SELECT request_id, time_us, model, version, inputs, inputs_sha256, inputs_size, outputs,
			latency_us, cpu_us, status, error, label, label_time_us
		FROM predictions WHERE request_id = ?`, requestID).
		Scan(&p.RequestID, &timeUS, &p.Model, &p.Version, &inputs, &p.InputsSHA256, &p.InputsSize, &outputs,
			&latencyUS, &cpuUS, &p.Status, &errTx, &label, &labelTimeUS)
	switch {
	case err == nil:
		p.Time = time.UnixMicro(timeUS)
		p.Inputs, p.Outputs, p.Error = inputs.String, outputs.String, errTx.String
		p.Latency = time.Duration(latencyUS) * time.Microsecond
		p.CPU = time.Duration(cpuUS.Int64) * time.Microsecond
		p.Label = ptrFloat(label)
		if labelTimeUS.Valid {
			p.LabelTime = time.UnixMicro(labelTimeUS.Int64)
		}
		out.Prediction = &p
	case !errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("read request %q: %w", requestID, err)
	}
	rows, err := s.tx.QueryContext(ctx, `SELECT time_us, shadow, version, primary_model, primary_version, coalesce(outputs, ''),
			latency_us, primary_latency_us, cpu_us, status, coalesce(error, ''), comparison
		FROM shadow_results WHERE request_id = ? ORDER BY shadow, version`, requestID)
	if err != nil {
		return nil, fmt.Errorf("read request %q: %w", requestID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			r                 StoredShadowResult
			timeUS, latencyUS int64
			platency, cpu     sql.NullInt64
			cmp               []byte
		)
		if err := rows.Scan(&timeUS, &r.Shadow, &r.Version, &r.PrimaryModel, &r.PrimaryVersion, &r.Outputs,
			&latencyUS, &platency, &cpu, &r.Status, &r.Error, &cmp); err != nil {
			return nil, fmt.Errorf("read request %q: %w", requestID, err)
		}
		r.Time = time.UnixMicro(timeUS)
		r.Latency = time.Duration(latencyUS) * time.Microsecond
		if platency.Valid {
			d := time.Duration(platency.Int64) * time.Microsecond
			r.PrimaryLatency = &d
		}
		r.CPU = time.Duration(cpu.Int64) * time.Microsecond
		if len(cmp) > 0 {
			if err := json.Unmarshal(cmp, &r.Compare); err != nil {
				return nil, fmt.Errorf("read request %q of %s comparison: %w", requestID, r.Shadow, err)
			}
		}
		out.Shadows = append(out.Shadows, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read request %q: %w", requestID, err)
	}
	if out.Prediction == nil && len(out.Shadows) == 0 {
		return nil, understudy.Errorf(understudy.ENOTFOUND, "nothing stored for request id %q", requestID)
	}
	return &out, nil
}
