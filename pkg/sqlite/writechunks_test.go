package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/understudy-ml/understudy/pkg/sqlite"
	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// Ensure predictions written in multi-row chunks end up exactly as if each
// had been inserted alone: a duplicate within a chunk, one already stored,
// a row SQLite refuses and the rows after the last whole chunk are each
// counted right, stored once with the first copy's values, and rolled up
// once.
func TestPredictionChunks(t *testing.T) {
	logs := &logBuffer{}
	db, path := openDB(t, sqlite.Options{Log: zerolog.New(logs), BatchSize: 1000, FlushInterval: time.Hour})
	at := time.Now()
	old, _ := sqlite.SamplePair("old", at)
	db.WritePrediction(old)
	flush(t, db)

	// A row the database refuses, as a full-featured schema can (a CHECK
	// or a trigger): the writer must lose that row alone.
	other, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.Exec(`CREATE TRIGGER refuse BEFORE INSERT ON predictions WHEN NEW.request_id LIKE 'bad%'
		BEGIN SELECT RAISE(ABORT, 'refused'); END`); err != nil {
		t.Fatal(err)
	}

	const n = 3*32 + 5 // three whole chunks and a rest
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprint("r", i)
	}
	ids[3] = "r1"     // a duplicate within the first chunk
	ids[40] = "old"   // already stored by an earlier batch
	ids[70] = "bad70" // refused
	ids[99] = "r97"   // a duplicate within the rest
	for i, id := range ids {
		p, _ := sqlite.SamplePair(id, at)
		p.Latency = time.Duration(i+1) * time.Microsecond
		db.WritePrediction(p)
	}
	flush(t, db)

	wantWritten := int64(1 + n - 4)
	st := db.Stats()
	if want := (store.TableStats{Written: wantWritten, Duplicate: 3, Lost: 1}); st.Predictions != want {
		t.Errorf("prediction stats = %+v, want %+v", st.Predictions, want)
	}
	if got, _ := counts(t, db); got != wantWritten {
		t.Errorf("%d predictions stored, want %d", got, wantWritten)
	}
	// The first copy of a duplicate is the one kept.
	for id, want := range map[string]int64{"r1": 2, "r97": 98, "old": 87, "r3": 0, "r4": 5} {
		got := queryInt(t, other, `SELECT COALESCE(MAX(latency_us), 0) FROM predictions WHERE request_id = ?`, id)
		if got != want {
			t.Errorf("latency_us of %s = %d, want %d", id, got, want)
		}
	}
	if got := queryInt(t, other, `SELECT COUNT(*) FROM predictions WHERE request_id LIKE 'bad%'`); got != 0 {
		t.Errorf("%d refused rows stored", got)
	}
	// Every rollup span counts each written prediction once.
	checkSpanSums(t, other, `SELECT span, SUM(requests) FROM primary_rollups GROUP BY span`, wantWritten)
	if got := logs.count("store could not write a row"); got != 1 {
		t.Errorf("%d lost rows logged, want 1; log:\n%s", got, logs)
	}
}

// Ensure shadow results written in chunks are counted like predictions
// (a duplicate within a chunk, one already stored), rolled up once each,
// and that a chunk of backfill results deletes the backlog jobs it did,
// also the one whose result was a duplicate.
func TestShadowResultChunks(t *testing.T) {
	db, path := openDB(t, sqlite.Options{BatchSize: 1000, FlushInterval: time.Hour})
	other, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	at := time.Now()
	_, first := sqlite.SamplePair("s0", at)
	db.WriteShadowResult(first)
	flush(t, db)

	const n = 2*32 + 7
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprint("s", i+1)
	}
	ids[5] = "s3"  // within the first chunk
	ids[40] = "s0" // stored before: its backfill job must still go
	for _, id := range ids {
		db.Defer(understudy.DeferredJob{RequestID: id, Shadow: first.Shadow, Version: first.Version, Time: at})
	}
	flush(t, db)
	if got := queryInt(t, other, `SELECT COUNT(*) FROM shadow_backlog`); got != n-1 {
		t.Fatalf("%d jobs pending, want %d", got, n-1)
	}
	for i, id := range ids {
		_, s := sqlite.SamplePair(id, at)
		s.Origin = understudy.OriginBackfill
		s.Latency = time.Duration(i+1) * time.Microsecond
		db.WriteShadowResult(s)
	}
	flush(t, db)

	wantWritten := int64(1 + n - 2)
	st := db.Stats()
	if want := (store.TableStats{Written: wantWritten, Duplicate: 2}); st.ShadowResults != want {
		t.Errorf("shadow result stats = %+v, want %+v", st.ShadowResults, want)
	}
	if got := queryInt(t, other, `SELECT COUNT(*) FROM shadow_results`); got != wantWritten {
		t.Errorf("%d shadow results stored, want %d", got, wantWritten)
	}
	if got := queryInt(t, other, `SELECT latency_us FROM shadow_results WHERE request_id = 's3'`); got != 3 {
		t.Errorf("latency_us of s3 = %d, want 3 (the first copy's)", got)
	}
	if got := queryInt(t, other, `SELECT COUNT(*) FROM shadow_backlog`); got != 0 {
		t.Errorf("%d jobs still pending after their results were stored", got)
	}
	if got := queryInt(t, other, `SELECT COUNT(*) FROM shadow_results WHERE origin = 'backfill'`); got != wantWritten-1 {
		t.Errorf("%d backfill results, want %d", got, wantWritten-1)
	}
	// Every rollup span counts each written result once.
	checkSpanSums(t, other, `SELECT span, SUM(pairs) FROM shadow_rollups GROUP BY span`, wantWritten)
}

// checkSpanSums runs query, which returns (span, sum) rows, and checks that
// there are some and that every span sums to want.
func checkSpanSums(t *testing.T, db *sql.DB, query string, want int64) {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	spans := 0
	for rows.Next() {
		var span, sum int64
		if err := rows.Scan(&span, &sum); err != nil {
			t.Fatal(err)
		}
		spans++
		if sum != want {
			t.Errorf("%s: span %d sums to %d, want %d", query, span, sum, want)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if spans == 0 {
		t.Errorf("%s: no rows", query)
	}
}

// Ensure predictions encoded by the writer into its reused buffer come
// back exactly, batch after batch: a row of one batch must not see the
// bytes of the next. Inputs vary in size so that the buffer grows midway.
func TestPredictionsEncodedByTheWriter(t *testing.T) {
	db, _ := openDB(t, sqlite.Options{BatchSize: 40})
	at := time.Now()
	const n = 300
	want := map[string]*understudy.Prediction{}
	ids := make([]string, n)
	for i := range n {
		id := fmt.Sprint("w", i)
		ids[i] = id
		p, _ := sqlite.SamplePair(id, at)
		data := make([]float32, 1+i%37)
		for j := range data {
			data[j] = float32(i*1000 + j)
		}
		p.Inputs = map[string]*understudy.Tensor{"input": {DType: understudy.Float32, Shape: []int64{1, int64(len(data))}, Data: data}}
		want[id] = p
		db.WritePrediction(p)
	}
	flush(t, db)
	got, err := db.StoredInputs(context.Background(), ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("%d stored inputs read back, want %d", len(got), n)
	}
	for id, p := range want {
		g := got[id]
		if g == nil || g.Inputs == nil {
			t.Fatalf("%s: no stored inputs", id)
		}
		in, wantIn := g.Inputs["input"], p.Inputs["input"]
		if fmt.Sprint(in.Shape, in.Data) != fmt.Sprint(wantIn.Shape, wantIn.Data) {
			t.Fatalf("%s: inputs %v %v, want %v %v", id, in.Shape, in.Data, wantIn.Shape, wantIn.Data)
		}
		if fmt.Sprint(g.Outputs["probabilities"].Data) != fmt.Sprint(p.Outputs["probabilities"].Data) {
			t.Fatalf("%s: outputs %v, want %v", id, g.Outputs["probabilities"].Data, p.Outputs["probabilities"].Data)
		}
	}
}
