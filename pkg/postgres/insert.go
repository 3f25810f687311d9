package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/understudy-ml/understudy/pkg/store/rollup"
)

// A batch is one transaction of a few statements, whatever its size: each
// table's rows go in as one INSERT ... SELECT FROM unnest of one array per
// column, ON CONFLICT DO NOTHING RETURNING the keys of the rows that were
// inserted. Only those rows are counted into the rollups, so a duplicate,
// or a row that an earlier attempt at the same batch did commit, never is.
// Rows are inserted in the order they were queued (WITH ORDINALITY), so
// that ids increase in storage order.

const insertPredictions = `INSERT INTO predictions (request_id, time_us, model, version, inputs, inputs_sha256, inputs_size,
		outputs, latency_us, status, error, cpu_us, replica, served_by)
	SELECT request_id, time_us, model, version, inputs, inputs_sha256, inputs_size, outputs, latency_us, status, error, cpu_us, $13, served_by
	FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[],
		$8::text[], $9::bigint[], $10::text[], $11::text[], $12::bigint[], $14::text[])
		WITH ORDINALITY AS r(request_id, time_us, model, version, inputs, inputs_sha256, inputs_size, outputs, latency_us, status, error, cpu_us, served_by, ord)
	ORDER BY ord
	ON CONFLICT (request_id) DO NOTHING
	RETURNING request_id`

const insertShadows = `INSERT INTO shadow_results (request_id, time_us, shadow, version, primary_model, primary_version, outputs,
		latency_us, status, error, agreement, primary_class, shadow_class, max_abs_diff, mean_abs_diff, comparison,
		sum_sq_diff, elements, primary_score, shadow_score, cpu_us, primary_latency_us, replica, served_by, origin)
	SELECT request_id, time_us, shadow, version, primary_model, primary_version, outputs,
		latency_us, status, error, agreement, primary_class, shadow_class, max_abs_diff, mean_abs_diff, comparison,
		sum_sq_diff, elements, primary_score, shadow_score, cpu_us, primary_latency_us, $23, served_by, origin
	FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
		$8::bigint[], $9::text[], $10::text[], $11::float8[], $12::bigint[], $13::bigint[], $14::float8[], $15::float8[], $16::text[],
		$17::float8[], $18::bigint[], $19::float8[], $20::float8[], $21::bigint[], $22::bigint[], $24::text[], $25::text[])
		WITH ORDINALITY AS r(request_id, time_us, shadow, version, primary_model, primary_version, outputs,
			latency_us, status, error, agreement, primary_class, shadow_class, max_abs_diff, mean_abs_diff, comparison,
			sum_sq_diff, elements, primary_score, shadow_score, cpu_us, primary_latency_us, served_by, origin, ord)
	ORDER BY ord
	ON CONFLICT (request_id, shadow, version) DO NOTHING
	RETURNING request_id, shadow, version`

// exec writes b in one transaction and counts its rows into n.
func (db *DB) exec(ctx context.Context, b *batch, n *batchCounts) error {
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{})
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	// A no-op after Commit.
	defer func() { _ = tx.Rollback(context.Background()) }()
	ru := rollup.NewBatch(db.opts.Replica)
	if len(b.preds) > 0 {
		if err := db.insertPredictions(ctx, tx, b.preds, ru, n); err != nil {
			return err
		}
	}
	if len(b.shadows) > 0 {
		if err := db.insertShadows(ctx, tx, b.shadows, ru, n); err != nil {
			return err
		}
	}
	if err := db.writeHistory(ctx, tx, b, n); err != nil {
		return err
	}
	if err := writeRollups(ctx, tx, ru); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func (db *DB) insertPredictions(ctx context.Context, tx pgx.Tx, rows []*predRow, ru *rollup.Batch, n *batchCounts) error {
	k := len(rows)
	var (
		id, model, version, sha, status, errs = make([]string, k), make([]string, k), make([]string, k), make([]string, k), make([]string, k), make([]string, k)
		timeUS, size, latency                 = make([]int64, k), make([]int64, k), make([]int64, k)
		inputs, outputs                       = make([]*string, k), make([]*string, k)
		cpu                                   = make([]*int64, k)
		served                                = make([]string, k)
	)
	for i, r := range rows {
		id[i], model[i], version[i], sha[i], status[i], errs[i] = r.id, r.model, r.version, r.inputsSHA256, r.status, r.err
		timeUS[i], size[i], latency[i] = r.timeUS, r.inputsSize, r.latencyUS
		inputs[i], outputs[i], cpu[i], served[i] = r.inputs, r.outputs, r.cpuUS, r.servedBy
	}
	res, err := tx.Query(ctx, insertPredictions, id, timeUS, model, version, inputs, sha, size, outputs, latency, status, errs, cpu, db.opts.Replica, served)
	if err != nil {
		return fmt.Errorf("insert predictions: %w", err)
	}
	inserted := make(map[string]bool, k)
	var s string
	_, err = pgx.ForEachRow(res, []any{&s}, func() error { inserted[s] = true; return nil })
	if err != nil {
		return fmt.Errorf("insert predictions: %w", err)
	}
	// The first of several rows with one id is the one inserted.
	for _, r := range rows {
		if inserted[r.id] {
			delete(inserted, r.id)
			n.preds.written++
			ru.AddPrediction(&r.roll)
			continue
		}
		n.preds.duplicate++
		db.duplicate("predictions", r.id)
	}
	return nil
}

type shadowID struct{ id, shadow, version string }

func (db *DB) insertShadows(ctx context.Context, tx pgx.Tx, rows []*shadowRow, ru *rollup.Batch, n *batchCounts) error {
	k := len(rows)
	var (
		id, shadow, version, primary, primaryVersion = make([]string, k), make([]string, k), make([]string, k), make([]string, k), make([]string, k)
		status, errs, comparison                     = make([]string, k), make([]string, k), make([]string, k)
		outputs                                      = make([]*string, k)
		timeUS, latency                              = make([]int64, k), make([]int64, k)
		agreement, maxAbs, meanAbs, sumSq            = make([]*float64, k), make([]*float64, k), make([]*float64, k), make([]*float64, k)
		primaryScore, shadowScore                    = make([]*float64, k), make([]*float64, k)
		primaryClass, shadowClass, elements          = make([]*int64, k), make([]*int64, k), make([]*int64, k)
		cpu, primaryLatency                          = make([]*int64, k), make([]*int64, k)
		served, origin                               = make([]string, k), make([]string, k)
	)
	for i, r := range rows {
		origin[i] = r.origin
		id[i], shadow[i], version[i], primary[i], primaryVersion[i] = r.id, r.shadow, r.version, r.primary, r.primaryVersion
		status[i], errs[i], comparison[i], outputs[i] = r.status, r.err, r.comparison, r.outputs
		timeUS[i], latency[i] = r.timeUS, r.latencyUS
		agreement[i], maxAbs[i], meanAbs[i], sumSq[i] = r.agreement, r.maxAbsDiff, r.meanAbsDiff, r.sumSq
		primaryScore[i], shadowScore[i] = r.primaryScore, r.shadowScore
		primaryClass[i], shadowClass[i], elements[i] = r.primaryClass, r.shadowClass, r.elements
		cpu[i], primaryLatency[i], served[i] = r.cpuUS, r.primaryLatencyUS, r.servedBy
	}
	res, err := tx.Query(ctx, insertShadows, id, timeUS, shadow, version, primary, primaryVersion, outputs,
		latency, status, errs, agreement, primaryClass, shadowClass, maxAbs, meanAbs, comparison,
		sumSq, elements, primaryScore, shadowScore, cpu, primaryLatency, db.opts.Replica, served, origin)
	if err != nil {
		return fmt.Errorf("insert shadow results: %w", err)
	}
	inserted := make(map[shadowID]bool, k)
	var key shadowID
	_, err = pgx.ForEachRow(res, []any{&key.id, &key.shadow, &key.version}, func() error { inserted[key] = true; return nil })
	if err != nil {
		return fmt.Errorf("insert shadow results: %w", err)
	}
	for _, r := range rows {
		key := shadowID{r.id, r.shadow, r.version}
		if inserted[key] {
			delete(inserted, key)
			n.shadows.written++
			ru.AddShadow(&r.roll)
			continue
		}
		n.shadows.duplicate++
		db.duplicate("shadow_results", r.id)
	}
	return nil
}

// duplicate logs an ignored duplicate, rate limited.
func (db *DB) duplicate(table, id string) {
	if ok, suppressed := db.dupLog.allow(); ok {
		db.log.Warn().Str("table", table).Str("request_id", id).Int64("suppressed", suppressed).
			Msg("duplicate request id ignored")
	}
}
