package postgres_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/understudy-ml/understudy/pkg/postgres"
	"github.com/understudy-ml/understudy/pkg/report"
)

// conn opens a connection of the test's own to url.
func conn(tb testing.TB, url string) *pgx.Conn {
	tb.Helper()
	c, err := pgx.Connect(context.Background(), url)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// writePairs hands n sample pairs to db, with ids prefix0.., spread over
// minutes from at, and returns how long the calls took in all.
func writePairs(db *postgres.DB, prefix string, n int, at time.Time) time.Duration {
	rng := rand.New(rand.NewPCG(uint64(len(prefix)), uint64(n)))
	var spent time.Duration
	for i := range n {
		p, s := report.SamplePair(rng, fmt.Sprint(prefix, i), at.Add(time.Duration(i)*7*time.Second))
		start := time.Now()
		db.WritePrediction(p)
		db.WriteShadowResult(s)
		db.CountSkips(s.Shadow, s.Version, s.Time, 1, 0)
		spent += time.Since(start)
	}
	return spent
}

// flush waits up to 30 s for db's rows to be committed.
func flush(tb testing.TB, db *postgres.DB) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := db.Flush(ctx); err != nil {
		tb.Fatalf("Flush: %v", err)
	}
}

// checkStored checks, in SQL, that the database holds n predictions and n
// shadow results, each request id once, and that the rollups at every span
// equal sums over those rows: requests, pairs by status, float pairs, the
// histograms' counts, the confusion cells and the skips.
func checkStored(tb testing.TB, url string, n int64) {
	tb.Helper()
	c := conn(tb, url)
	ctx := context.Background()
	one := func(q string, args ...any) int64 {
		tb.Helper()
		var v *int64
		if err := c.QueryRow(ctx, q, args...).Scan(&v); err != nil {
			tb.Fatalf("%s: %v", q, err)
		}
		if v == nil {
			return 0
		}
		return *v
	}
	for _, q := range []string{
		`SELECT count(*) FROM predictions`, `SELECT count(DISTINCT request_id) FROM predictions`,
		`SELECT count(*) FROM shadow_results`, `SELECT count(DISTINCT request_id) FROM shadow_results`,
	} {
		if got := one(q); got != n {
			tb.Errorf("%s = %d, want %d", q, got, n)
		}
	}
	raw := map[string]int64{
		"requests":    one(`SELECT count(*) FROM predictions`),
		"pairs":       one(`SELECT count(*) FROM shadow_results`),
		"ok":          one(`SELECT count(*) FROM shadow_results WHERE status = 'ok'`),
		"errors":      one(`SELECT count(*) FROM shadow_results WHERE status = 'error'`),
		"timeouts":    one(`SELECT count(*) FROM shadow_results WHERE status = 'timeout'`),
		"float_pairs": one(`SELECT count(*) FROM shadow_results WHERE status = 'ok' AND max_abs_diff IS NOT NULL`),
		"class_pairs": one(`SELECT count(*) FROM shadow_results WHERE status = 'ok' AND agreement IS NOT NULL`),
		"latency":     one(`SELECT count(*) FROM shadow_results WHERE status = 'ok'`),
		"primary":     one(`SELECT count(*) FROM shadow_results WHERE status = 'ok' AND primary_latency_us IS NOT NULL`),
	}
	for _, span := range []int64{1, 60, 1440} {
		rolled := map[string]int64{
			"requests":    one(`SELECT sum(requests) FROM primary_rollups WHERE span = $1`, span),
			"pairs":       one(`SELECT sum(pairs) FROM shadow_rollups WHERE span = $1`, span),
			"ok":          one(`SELECT sum(ok) FROM shadow_rollups WHERE span = $1`, span),
			"errors":      one(`SELECT sum(errors) FROM shadow_rollups WHERE span = $1`, span),
			"timeouts":    one(`SELECT sum(timeouts) FROM shadow_rollups WHERE span = $1`, span),
			"float_pairs": one(`SELECT sum(float_pairs) FROM shadow_rollups WHERE span = $1`, span),
			"class_pairs": one(`SELECT sum(class_pairs) FROM shadow_rollups WHERE span = $1`, span),
			"latency":     one(`SELECT sum(n) FROM shadow_rollup_buckets b JOIN shadow_rollups r ON r.id = b.rollup_id WHERE span = $1 AND kind = 1`, span),
			"primary":     one(`SELECT sum(n) FROM shadow_rollup_buckets b JOIN shadow_rollups r ON r.id = b.rollup_id WHERE span = $1 AND kind = 2`, span),
		}
		for k, want := range raw {
			if rolled[k] != want {
				tb.Errorf("span %d: %s in the rollups = %d, in the rows %d", span, k, rolled[k], want)
			}
		}
		if got, want := one(`SELECT sum(n) FROM shadow_rollup_buckets b JOIN shadow_rollups r ON r.id = b.rollup_id WHERE span = $1 AND kind = 0`, span), raw["float_pairs"]; got != want {
			tb.Errorf("span %d: max|Δ| histogram counts %d, want %d", span, got, want)
		}
		if got, want := one(`SELECT sum(n) FROM confusion_rollups WHERE span = $1`, span), raw["class_pairs"]; got != want {
			tb.Errorf("span %d: confusion cells count %d rows, want %d", span, got, want)
		}
	}
}
