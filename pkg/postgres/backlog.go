package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/store/rollup"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// The read side of understudy.History, and the snapshot's reads of the
// skip counters and the backlog. The History reads are not in a snapshot:
// each is one statement, which sees one committed state anyway.

// SkipCounts implements store.Snapshot. The skip counters are per shadow
// version, not per origin, so a view by origin reads them all.
func (s *snapshot) SkipCounts(ctx context.Context, shadow, version string, from, to time.Time) (store.Skips, error) {
	lo, hi := rollup.MinuteRange(from, to)
	sk := store.Skips{Reasons: map[string]int64{}}
	err := s.tx.QueryRow(ctx, `SELECT coalesce(sum(sampled_out), 0)::bigint, coalesce(sum(deferred), 0)::bigint, coalesce(sum(dropped), 0)::bigint
		FROM shadow_skips WHERE shadow = $1 AND version = $2 AND minute >= $3 AND minute < $4`,
		shadow, version, lo, hi).Scan(&sk.SampledOut, &sk.Deferred, &sk.Dropped)
	if err != nil {
		return sk, fmt.Errorf("read skips of %q: %w", shadow, err)
	}
	var (
		reason string
		n      int64
	)
	err = s.each(ctx, `SELECT reason, sum(n)::bigint FROM shadow_drops
		WHERE shadow = $1 AND version = $2 AND minute >= $3 AND minute < $4 GROUP BY reason HAVING sum(n) <> 0`,
		args{shadow, version, lo, hi}, []any{&reason, &n}, func() error {
			sk.Reasons[reason] = n
			return nil
		})
	if err != nil {
		return sk, fmt.Errorf("read drops of %q: %w", shadow, err)
	}
	return sk, nil
}

// Pending implements store.Snapshot.
func (s *snapshot) Pending(ctx context.Context, shadow, version string, from, to time.Time) (int64, error) {
	lo, hi := rollup.MicroRange(from, to)
	var n int64
	err := s.tx.QueryRow(ctx, `SELECT count(*) FROM shadow_backlog
		WHERE shadow = $1 AND version = $2 AND time_us >= $3 AND time_us < $4`, shadow, version, lo, hi).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("read pending jobs of %q: %w", shadow, err)
	}
	return n, nil
}

// Deferred implements understudy.History, in the order of the backlog's
// time index.
func (db *DB) Deferred(ctx context.Context, limit int) ([]understudy.DeferredJob, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := db.pool.Query(ctx, `SELECT request_id, shadow, version, time_us FROM shadow_backlog
		ORDER BY time_us, request_id, shadow, version LIMIT $1`, limit)
	if err != nil {
		return nil, db.errorf("read deferred jobs: %w", err)
	}
	var (
		out    []understudy.DeferredJob
		j      understudy.DeferredJob
		timeUS int64
	)
	_, err = pgx.ForEachRow(rows, []any{&j.RequestID, &j.Shadow, &j.Version, &timeUS}, func() error {
		j.Time = time.UnixMicro(timeUS)
		out = append(out, j)
		return nil
	})
	if err != nil {
		return nil, db.errorf("read deferred jobs: %w", err)
	}
	return out, nil
}

// PendingJobs implements understudy.History.
func (db *DB) PendingJobs(ctx context.Context) (int64, error) {
	var n int64
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM shadow_backlog`).Scan(&n); err != nil {
		return 0, db.errorf("count deferred jobs: %w", err)
	}
	return n, nil
}

// inputRow is one stored prediction as StoredInputs and RecentInputs scan
// it: the columns of inputColumns, then whether it is paired.
type inputRow struct {
	id, model, version, servedBy string
	timeUS, latencyUS            int64
	inputs, outputs              []byte
	label                        *float64
	paired                       bool
}

const inputColumns = `request_id, time_us, model, version, inputs, outputs, latency_us, served_by, label`

func (r *inputRow) dest() []any {
	return []any{&r.id, &r.timeUS, &r.model, &r.version, &r.inputs, &r.outputs, &r.latencyUS, &r.servedBy, &r.label, &r.paired}
}

// decode returns the row as a StoredInput with its tensors decoded by the
// store's codec, which reads the JSON text that PostgreSQL stores as well
// as the binary form; NULL tensors, and those of a paired row, stay nil.
func (r *inputRow) decode() (*understudy.StoredInput, error) {
	in := &understudy.StoredInput{RequestID: r.id, Time: time.UnixMicro(r.timeUS), Model: r.model, Version: r.version,
		Latency: time.Duration(r.latencyUS) * time.Microsecond, ServedBy: r.servedBy, Label: r.label, Paired: r.paired}
	// Scanning into a nil pointer allocates a fresh value: the next row
	// must not overwrite this one's.
	r.label = nil
	if r.paired {
		return in, nil
	}
	var err error
	if r.inputs != nil {
		if in.Inputs, err = store.DecodeTensors(r.inputs); err != nil {
			return nil, fmt.Errorf("request %q: inputs: %w", r.id, err)
		}
	}
	if r.outputs != nil {
		if in.Outputs, err = store.DecodeTensors(r.outputs); err != nil {
			return nil, fmt.Errorf("request %q: outputs: %w", r.id, err)
		}
	}
	return in, nil
}

// StoredInputs implements understudy.History.
func (db *DB) StoredInputs(ctx context.Context, ids []string) (map[string]*understudy.StoredInput, error) {
	out := make(map[string]*understudy.StoredInput, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = text(id)
	}
	rows, err := db.pool.Query(ctx, `SELECT `+inputColumns+`, false FROM predictions WHERE request_id = ANY($1)`, keys)
	if err != nil {
		return nil, db.errorf("read stored inputs: %w", err)
	}
	var r inputRow
	_, err = pgx.ForEachRow(rows, r.dest(), func() error {
		in, err := r.decode()
		if err != nil {
			return err
		}
		out[in.RequestID] = in
		return nil
	})
	if err != nil {
		return nil, db.errorf("read stored inputs: %w", err)
	}
	return out, nil
}

// RecentInputs implements understudy.History. The predictions' time index,
// read backwards from the cursor, finds the page; the ties of a time are
// sorted by request id. The tensors of a paired row are not even read.
func (db *DB) RecentInputs(ctx context.Context, q understudy.InputQuery) ([]*understudy.StoredInput, error) {
	if q.Limit <= 0 {
		return nil, nil
	}
	a := args{text(q.Model)}
	where := `model = $1 AND status = 'ok'`
	if !q.From.IsZero() {
		where += ` AND time_us >= ` + a.add(q.From.UnixMicro())
	}
	if !q.Before.IsZero() {
		b := a.add(q.Before.UnixMicro())
		where += ` AND time_us <= ` + b + ` AND (time_us < ` + b + ` OR request_id < ` + a.add(text(q.BeforeID)) + `)`
	}
	paired := `false`
	if q.PairedWith.Name != "" {
		paired = `EXISTS (SELECT 1 FROM shadow_results s WHERE s.request_id = p.request_id AND s.shadow = ` + a.add(text(q.PairedWith.Name)) +
			` AND s.version = ` + a.add(text(q.PairedWith.Version)) + `)`
	}
	query := `SELECT request_id, time_us, model, version, CASE WHEN paired THEN NULL ELSE inputs END,
			CASE WHEN paired THEN NULL ELSE outputs END, latency_us, served_by, label, paired
		FROM (SELECT ` + inputColumns + `, ` + paired + ` AS paired FROM predictions p WHERE ` + where + `
			ORDER BY time_us DESC, request_id DESC LIMIT ` + a.add(q.Limit) + `) p
		ORDER BY time_us DESC, request_id DESC`
	rows, err := db.pool.Query(ctx, query, a...)
	if err != nil {
		return nil, db.errorf("read recent inputs of %q: %w", q.Model, err)
	}
	var (
		out []*understudy.StoredInput
		r   inputRow
	)
	_, err = pgx.ForEachRow(rows, r.dest(), func() error {
		in, err := r.decode()
		if err != nil {
			return err
		}
		out = append(out, in)
		return nil
	})
	if err != nil {
		return nil, db.errorf("read recent inputs of %q: %w", q.Model, err)
	}
	return out, nil
}
