package postgres

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/understudy-ml/understudy/pkg/store/rollup"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// The write side of understudy.History. Defer and CountDrops are queued
// like CountSkips, so that they never block and are buffered through an
// outage; the writer commits them with the rows of the same batch. Every
// transaction that touches them takes its locks table by table in one
// order (shadow_backlog, shadow_skips, shadow_drops, then the rollups) and,
// within a table, in key order, so that replicas do not deadlock on them.

// Defer implements understudy.History. It never blocks.
func (db *DB) Defer(j understudy.DeferredJob) {
	db.enqueue(&deferRow{id: text(j.RequestID), shadow: text(j.Shadow), version: text(j.Version),
		timeUS: db.micros(j.Time), deferredUS: db.opts.Now().UnixMicro()}, &db.skips)
}

// CountDrops implements understudy.History. It never blocks.
func (db *DB) CountDrops(shadow, version string, at time.Time, reason string, n int64) {
	if n == 0 {
		return
	}
	db.enqueue(&dropRow{dropKey{skipKey{text(shadow), text(version), at.Unix() / 60}, text(reason)}, n}, &db.skips)
}

// insertBacklog adds the jobs that are not pending yet; it returns those
// it added, so that only they are counted as deferred.
const insertBacklog = `INSERT INTO shadow_backlog (request_id, shadow, version, time_us, deferred_us)
	SELECT request_id, shadow, version, time_us, deferred_us
	FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])
		WITH ORDINALITY AS r(request_id, shadow, version, time_us, deferred_us, ord)
	ORDER BY ord
	ON CONFLICT (request_id, shadow, version) DO NOTHING
	RETURNING shadow, version, time_us`

// deleteBacklog removes jobs, returning those it removed.
const deleteBacklog = `DELETE FROM shadow_backlog b USING unnest($1::text[], $2::text[], $3::text[]) AS j(request_id, shadow, version)
	WHERE b.request_id = j.request_id AND b.shadow = j.shadow AND b.version = j.version
	RETURNING b.shadow, b.version, b.time_us`

const upsertSkips = `INSERT INTO shadow_skips AS t (shadow, version, minute, sampled_out, dropped, deferred)
	SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[])
	ON CONFLICT (shadow, version, minute) DO UPDATE SET sampled_out = t.sampled_out + EXCLUDED.sampled_out,
		dropped = t.dropped + EXCLUDED.dropped, deferred = t.deferred + EXCLUDED.deferred`

const upsertDrops = `INSERT INTO shadow_drops AS t (shadow, version, minute, reason, n)
	SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::bigint[])
	ON CONFLICT (shadow, version, minute, reason) DO UPDATE SET n = t.n + EXCLUDED.n`

// jobKey is a backlog row's key.
type jobKey struct{ id, shadow, version string }

func compareJobs(a, b jobKey) int {
	return cmp.Or(strings.Compare(a.id, b.id), strings.Compare(a.shadow, b.shadow), strings.Compare(a.version, b.version))
}

// writeHistory writes a batch's backlog and skip counters, inside tx, after
// its shadow results: the jobs deferred are added before the backfill
// results of the batch remove theirs, so that a job deferred and run
// within one batch leaves no row behind. b is left as it is, for a retry.
func (db *DB) writeHistory(ctx context.Context, tx pgx.Tx, b *batch, n *batchCounts) error {
	skips := make(map[skipKey]*skipRow, len(b.skips))
	for k, r := range b.skips {
		c := *r
		skips[k] = &c
	}
	if len(b.defers) > 0 {
		rows := make(map[jobKey]*deferRow, len(b.defers))
		for _, r := range b.defers {
			if _, ok := rows[jobKey{r.id, r.shadow, r.version}]; !ok {
				rows[jobKey{r.id, r.shadow, r.version}] = r
			}
		}
		var id, shadow, version []string
		var timeUS, deferredUS []int64
		for _, k := range sortedKeys(rows, compareJobs) {
			r := rows[k]
			id, shadow, version = append(id, k.id), append(shadow, k.shadow), append(version, k.version)
			timeUS, deferredUS = append(timeUS, r.timeUS), append(deferredUS, r.deferredUS)
		}
		res, err := tx.Query(ctx, insertBacklog, id, shadow, version, timeUS, deferredUS)
		if err != nil {
			return fmt.Errorf("insert backlog: %w", err)
		}
		added, err := countJobs(res, skips, func(s *skipRow) { s.deferred++ })
		if err != nil {
			return fmt.Errorf("insert backlog: %w", err)
		}
		n.defers.written, n.defers.duplicate = added, int64(len(b.defers))-added
	}
	done := map[jobKey]bool{}
	for _, r := range b.shadows {
		if r.origin == understudy.OriginBackfill {
			done[jobKey{r.id, r.shadow, r.version}] = true
		}
	}
	if len(done) > 0 {
		var id, shadow, version []string
		for _, k := range sortedKeys(done, compareJobs) {
			id, shadow, version = append(id, k.id), append(shadow, k.shadow), append(version, k.version)
		}
		if _, err := tx.Exec(ctx, deleteBacklog, id, shadow, version); err != nil {
			return fmt.Errorf("delete backfilled jobs: %w", err)
		}
	}
	return upsertCounts(ctx, tx, skips, b.drops)
}

// countJobs calls add with the skip counts of the minute of each job that
// res returns (shadow, version, time_us), and returns how many there were.
func countJobs(res pgx.Rows, skips map[skipKey]*skipRow, add func(*skipRow)) (int64, error) {
	var (
		k      skipKey
		timeUS int64
		count  int64
	)
	_, err := pgx.ForEachRow(res, []any{&k.shadow, &k.version, &timeUS}, func() error {
		k.minute = rollup.MinuteOf(timeUS)
		s, ok := skips[k]
		if !ok {
			s = &skipRow{skipKey: k}
			skips[k] = s
		}
		add(s)
		count++
		return nil
	})
	return count, err
}

// upsertCounts adds skip counters and drops by reason, each table's rows in
// key order.
func upsertCounts(ctx context.Context, tx pgx.Tx, skips map[skipKey]*skipRow, drops map[dropKey]int64) error {
	if len(skips) > 0 {
		var shadow, version []string
		var minute, sampled, dropped, deferred []int64
		for _, k := range sortedKeys(skips, compareSkips) {
			r := skips[k]
			shadow, version, minute = append(shadow, k.shadow), append(version, k.version), append(minute, k.minute)
			sampled, dropped, deferred = append(sampled, r.sampledOut), append(dropped, r.dropped), append(deferred, r.deferred)
		}
		if _, err := tx.Exec(ctx, upsertSkips, shadow, version, minute, sampled, dropped, deferred); err != nil {
			return fmt.Errorf("upsert skips: %w", err)
		}
	}
	if len(drops) > 0 {
		var shadow, version, reason []string
		var minute, count []int64
		for _, k := range sortedKeys(drops, func(a, b dropKey) int {
			return cmp.Or(compareSkips(a.skipKey, b.skipKey), strings.Compare(a.reason, b.reason))
		}) {
			shadow, version, minute = append(shadow, k.shadow), append(version, k.version), append(minute, k.minute)
			reason, count = append(reason, k.reason), append(count, drops[k])
		}
		if _, err := tx.Exec(ctx, upsertDrops, shadow, version, minute, reason, count); err != nil {
			return fmt.Errorf("upsert drops: %w", err)
		}
	}
	return nil
}

func compareSkips(a, b skipKey) int {
	return cmp.Or(strings.Compare(a.shadow, b.shadow), strings.Compare(a.version, b.version), cmp.Compare(a.minute, b.minute))
}

// DropDeferred implements understudy.History: it deletes the jobs and
// counts those it deleted, so that a job another replica ran or dropped
// meanwhile is not counted twice.
func (db *DB) DropDeferred(ctx context.Context, jobs []understudy.DeferredJob, reason string) error {
	if len(jobs) == 0 {
		return nil
	}
	keys := make(map[jobKey]bool, len(jobs))
	for _, j := range jobs {
		keys[jobKey{text(j.RequestID), text(j.Shadow), text(j.Version)}] = true
	}
	var id, shadow, version []string
	for _, k := range sortedKeys(keys, compareJobs) {
		id, shadow, version = append(id, k.id), append(shadow, k.shadow), append(version, k.version)
	}
	if _, err := db.dropJobs(ctx, text(reason), deleteBacklog, id, shadow, version); err != nil {
		return db.errorf("drop deferred jobs: %w", err)
	}
	return nil
}

// dropJobs runs del, which deletes jobs from the backlog and returns them
// (shadow, version, time_us), and counts each one as dropped for reason
// at its request's minute, in one transaction. It returns how many it
// dropped. Like a batch, it is retried at once when the server rolls it
// back to break a deadlock.
func (db *DB) dropJobs(ctx context.Context, reason, del string, args ...any) (n int64, err error) {
	for attempt := 1; attempt <= 3; attempt++ {
		err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
			res, err := tx.Query(ctx, del, args...)
			if err != nil {
				return err
			}
			skips := map[skipKey]*skipRow{}
			if n, err = countJobs(res, skips, func(s *skipRow) { s.dropped++ }); err != nil {
				return err
			}
			drops := make(map[dropKey]int64, len(skips))
			for k, s := range skips {
				drops[dropKey{k, reason}] = s.dropped
			}
			return upsertCounts(ctx, tx, skips, drops)
		})
		if err == nil || !rolledBack(err) {
			break
		}
	}
	return n, err
}

// expireBacklog drops, in chunks, the jobs whose request is older than
// cutoffUS, for want of inputs: retention deleted or is deleting their
// predictions. Counted as dropped rather than deleted silently, so that a
// minute's deferred jobs still add up to those that ran, are pending and
// were dropped.
func (db *DB) expireBacklog(ctx context.Context, cutoffUS int64) error {
	for {
		n, err := db.dropJobs(ctx, understudy.DropNoInputs, `DELETE FROM shadow_backlog WHERE (request_id, shadow, version) IN
			(SELECT request_id, shadow, version FROM shadow_backlog WHERE time_us < $1 ORDER BY time_us LIMIT $2)
			RETURNING shadow, version, time_us`, cutoffUS, retentionChunk)
		if err != nil {
			return db.errorf("retention of shadow_backlog: %w", err)
		}
		if n < retentionChunk {
			return nil
		}
	}
}
