package postgres

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/store/rollup"
)

// The writer keeps rollups in the same transaction as the rows they
// summarise. Several replicas add to the same rollup rows at once, so each
// statement adds a batch's counts to the stored ones in SQL (or takes the
// GREATEST), never reading them first: one statement per table with one
// array per column, the batch's keys summed by store/rollup (a statement
// cannot update one row twice) and sorted, so that concurrent writers take
// the row locks in the same order. A deadlock or serialization failure that
// slips through anyway fails the batch transiently, and it is retried.
//
// Histograms are rows of shadow_rollup_buckets, one per bucket with a
// count, added to like the rest. Every writer that touches a rollup row's
// buckets holds that row's lock (it upserted the row just before in the
// same transaction), so the buckets cannot deadlock either.

const upsertPrimaryRollups = `INSERT INTO primary_rollups AS t (span, start, model, version, requests, errors, cpu_us, cpu_runs)
	SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[])
	ON CONFLICT (span, start, model, version) DO UPDATE SET requests = t.requests + EXCLUDED.requests,
		errors = t.errors + EXCLUDED.errors, cpu_us = t.cpu_us + EXCLUDED.cpu_us, cpu_runs = t.cpu_runs + EXCLUDED.cpu_runs`

const upsertShadowRollups = `INSERT INTO shadow_rollups AS t (shadow, version, span, start, primary_model, primary_version, origin,
		pairs, ok, errors, timeouts, class_pairs, disagree_pairs, class_rows, agree_rows,
		float_pairs, elements, sum_abs, sum_sq, max_abs, cpu_us, cpu_runs)
	SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $22::text[],
		$7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[], $14::bigint[],
		$15::bigint[], $16::bigint[], $17::float8[], $18::float8[], $19::float8[], $20::bigint[], $21::bigint[])
	ON CONFLICT (shadow, version, span, start, primary_model, primary_version, origin) DO UPDATE SET
		pairs = t.pairs + EXCLUDED.pairs, ok = t.ok + EXCLUDED.ok, errors = t.errors + EXCLUDED.errors,
		timeouts = t.timeouts + EXCLUDED.timeouts, class_pairs = t.class_pairs + EXCLUDED.class_pairs,
		disagree_pairs = t.disagree_pairs + EXCLUDED.disagree_pairs, class_rows = t.class_rows + EXCLUDED.class_rows,
		agree_rows = t.agree_rows + EXCLUDED.agree_rows, float_pairs = t.float_pairs + EXCLUDED.float_pairs,
		elements = t.elements + EXCLUDED.elements, sum_abs = t.sum_abs + EXCLUDED.sum_abs, sum_sq = t.sum_sq + EXCLUDED.sum_sq,
		max_abs = GREATEST(t.max_abs, EXCLUDED.max_abs),
		cpu_us = t.cpu_us + EXCLUDED.cpu_us, cpu_runs = t.cpu_runs + EXCLUDED.cpu_runs
	RETURNING id, shadow, version, span, start, primary_model, primary_version, origin`

const upsertBuckets = `INSERT INTO shadow_rollup_buckets AS t (rollup_id, kind, bucket, n)
	SELECT * FROM unnest($1::bigint[], $2::smallint[], $3::integer[], $4::bigint[])
	ON CONFLICT (rollup_id, kind, bucket) DO UPDATE SET n = t.n + EXCLUDED.n`

const upsertConfusion = `INSERT INTO confusion_rollups AS t (shadow, version, span, start, primary_class, shadow_class, origin, n)
	SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $8::text[], $7::bigint[])
	ON CONFLICT (shadow, version, span, start, primary_class, shadow_class, origin) DO UPDATE SET n = t.n + EXCLUDED.n`

// The kinds of shadow_rollup_buckets.
const (
	kindDiff int16 = iota
	kindLatency
	kindPrimaryLatency
)

// writeRollups adds the batch's rollups to the stored ones, inside tx.
func writeRollups(ctx context.Context, tx pgx.Tx, ru *rollup.Batch) error {
	if err := writePrimaryRollups(ctx, tx, ru); err != nil {
		return err
	}
	if err := writeShadowRollups(ctx, tx, ru); err != nil {
		return err
	}
	if err := writeReplicaMinutes(ctx, tx, ru); err != nil {
		return err
	}
	return writeConfusion(ctx, tx, ru)
}

// upsertReplicaMinutes adds a batch's rows per replica and minute.
const upsertReplicaMinutes = `INSERT INTO replica_minutes AS t (replica, minute, requests, errors, pairs)
	SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[])
	ON CONFLICT (replica, minute) DO UPDATE SET
		requests = t.requests + EXCLUDED.requests, errors = t.errors + EXCLUDED.errors, pairs = t.pairs + EXCLUDED.pairs`

func writeReplicaMinutes(ctx context.Context, tx pgx.Tx, ru *rollup.Batch) error {
	if len(ru.Replicas) == 0 {
		return nil
	}
	keys := sortedKeys(ru.Replicas, func(a, b rollup.ReplicaKey) int {
		return cmp.Or(strings.Compare(a.Replica, b.Replica), cmp.Compare(a.Minute, b.Minute))
	})
	var replica []string
	var minute, requests, errs, pairs []int64
	for _, k := range keys {
		d := ru.Replicas[k]
		replica, minute = append(replica, text(k.Replica)), append(minute, k.Minute)
		requests, errs, pairs = append(requests, d.Requests), append(errs, d.Errors), append(pairs, d.Pairs)
	}
	if _, err := tx.Exec(ctx, upsertReplicaMinutes, replica, minute, requests, errs, pairs); err != nil {
		return fmt.Errorf("write replica counts: %w", err)
	}
	return nil
}

func writePrimaryRollups(ctx context.Context, tx pgx.Tx, ru *rollup.Batch) error {
	if len(ru.Primaries) == 0 {
		return nil
	}
	keys := sortedKeys(ru.Primaries, func(a, b rollup.PrimaryKey) int {
		return cmp.Or(cmp.Compare(a.Span, b.Span), cmp.Compare(a.Start, b.Start), strings.Compare(a.Model, b.Model), strings.Compare(a.Version, b.Version))
	})
	var span, start, requests, errs, cpu, runs []int64
	var model, version []string
	for _, k := range keys {
		d := ru.Primaries[k]
		span, start, model, version = append(span, k.Span), append(start, k.Start), append(model, k.Model), append(version, k.Version)
		requests, errs, cpu, runs = append(requests, d.Requests), append(errs, d.Errors), append(cpu, d.CPUUS), append(runs, d.CPURuns)
	}
	if _, err := tx.Exec(ctx, upsertPrimaryRollups, span, start, model, version, requests, errs, cpu, runs); err != nil {
		return fmt.Errorf("write primary rollups: %w", err)
	}
	return nil
}

// compareShadowKeys orders the rows as their primary key does, origin
// last: any one total order that every writer uses keeps them from
// deadlocking.
func compareShadowKeys(a, b rollup.ShadowKey) int {
	return cmp.Or(strings.Compare(a.Shadow, b.Shadow), strings.Compare(a.Version, b.Version), cmp.Compare(a.Span, b.Span),
		cmp.Compare(a.Start, b.Start), strings.Compare(a.Primary, b.Primary), strings.Compare(a.PrimaryVersion, b.PrimaryVersion),
		strings.Compare(a.Origin, b.Origin))
}

func writeShadowRollups(ctx context.Context, tx pgx.Tx, ru *rollup.Batch) error {
	if len(ru.Shadows) == 0 {
		return nil
	}
	keys := sortedKeys(ru.Shadows, compareShadowKeys)
	var c struct {
		shadow, version, primary, primaryVersion, origin         []string
		span, start, pairs, ok, errs, timeouts                   []int64
		classPairs, disagree, classRows, agreeRows, floats, elts []int64
		sumAbs, sumSq                                            []float64
		maxAbs                                                   []*float64
		cpu, runs                                                []int64
	}
	for _, k := range keys {
		d := ru.Shadows[k]
		c.shadow, c.version, c.primary, c.primaryVersion = append(c.shadow, k.Shadow), append(c.version, k.Version), append(c.primary, k.Primary), append(c.primaryVersion, k.PrimaryVersion)
		c.span, c.start, c.origin = append(c.span, k.Span), append(c.start, k.Start), append(c.origin, k.Origin)
		c.pairs, c.ok, c.errs, c.timeouts = append(c.pairs, d.Pairs), append(c.ok, d.OK), append(c.errs, d.Errors), append(c.timeouts, d.Timeouts)
		c.classPairs, c.disagree = append(c.classPairs, d.ClassPairs), append(c.disagree, d.DisagreePairs)
		c.classRows, c.agreeRows = append(c.classRows, d.ClassRows), append(c.agreeRows, d.AgreeRows)
		c.floats, c.elts = append(c.floats, d.FloatPairs), append(c.elts, d.Elements)
		c.sumAbs, c.sumSq = append(c.sumAbs, d.SumAbs), append(c.sumSq, d.SumSq)
		var m *float64
		if d.HasMaxAbs {
			m = &d.MaxAbs
		}
		c.maxAbs = append(c.maxAbs, m)
		c.cpu, c.runs = append(c.cpu, d.CPUUS), append(c.runs, d.CPURuns)
	}
	rows, err := tx.Query(ctx, upsertShadowRollups, c.shadow, c.version, c.span, c.start, c.primary, c.primaryVersion,
		c.pairs, c.ok, c.errs, c.timeouts, c.classPairs, c.disagree, c.classRows, c.agreeRows,
		c.floats, c.elts, c.sumAbs, c.sumSq, c.maxAbs, c.cpu, c.runs, c.origin)
	if err != nil {
		return fmt.Errorf("write shadow rollups: %w", err)
	}
	ids := make(map[rollup.ShadowKey]int64, len(keys))
	var (
		id int64
		k  rollup.ShadowKey
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &k.Shadow, &k.Version, &k.Span, &k.Start, &k.Primary, &k.PrimaryVersion, &k.Origin}, func() error {
		ids[k] = id
		return nil
	})
	if err != nil {
		return fmt.Errorf("write shadow rollups: %w", err)
	}
	// The buckets, in the order of the rows' ids and then kind and bucket.
	var rid, n []int64
	var kind []int16
	var bucket []int32
	add := func(id int64, kd int16, s store.Sparse) {
		for _, b := range s {
			rid, kind, bucket, n = append(rid, id), append(kind, kd), append(bucket, int32(b.I)), append(n, b.N)
		}
	}
	slices.SortFunc(keys, func(a, b rollup.ShadowKey) int { return cmp.Compare(ids[a], ids[b]) })
	for _, k := range keys {
		id, ok := ids[k]
		if !ok {
			return fmt.Errorf("write shadow rollups: no id returned for %+v", k)
		}
		diff, lat, plat := ru.Shadows[k].Histograms()
		add(id, kindDiff, diff)
		add(id, kindLatency, lat)
		add(id, kindPrimaryLatency, plat)
	}
	if len(rid) == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, upsertBuckets, rid, kind, bucket, n); err != nil {
		return fmt.Errorf("write rollup buckets: %w", err)
	}
	return nil
}

func writeConfusion(ctx context.Context, tx pgx.Tx, ru *rollup.Batch) error {
	if len(ru.Confusion) == 0 {
		return nil
	}
	keys := sortedKeys(ru.Confusion, func(a, b rollup.ConfusionKey) int {
		return cmp.Or(strings.Compare(a.Shadow, b.Shadow), strings.Compare(a.Version, b.Version), cmp.Compare(a.Span, b.Span),
			cmp.Compare(a.Start, b.Start), cmp.Compare(a.PrimaryClass, b.PrimaryClass), cmp.Compare(a.ShadowClass, b.ShadowClass),
			strings.Compare(a.Origin, b.Origin))
	})
	var shadow, version, origin []string
	var span, start, pc, sc, n []int64
	for _, k := range keys {
		shadow, version, span, start = append(shadow, k.Shadow), append(version, k.Version), append(span, k.Span), append(start, k.Start)
		pc, sc, n = append(pc, k.PrimaryClass), append(sc, k.ShadowClass), append(n, ru.Confusion[k])
		origin = append(origin, k.Origin)
	}
	if _, err := tx.Exec(ctx, upsertConfusion, shadow, version, span, start, pc, sc, n, origin); err != nil {
		return fmt.Errorf("write confusion rollups: %w", err)
	}
	return nil
}

func sortedKeys[K comparable, V any](m map[K]V, compare func(a, b K) int) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compare)
	return keys
}
