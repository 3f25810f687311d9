package sqlite_test

import (
	"context"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/pkg/sqlite"
	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/store/storetest"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// Ensure rows stored as JSON before migration 00004 and rows stored in the
// binary form read back alike: the same JSON, hash and size through the
// request page's read and the pairs' (CSV) read, and the same tensors
// through Prediction.
func TestOldAndNewTensorRows(t *testing.T) {
	db, _ := openDB(t, sqlite.Options{})
	ctx := context.Background()
	at := time.UnixMicro(1_750_000_000_000_000)
	inputs := map[string]*understudy.Tensor{"input": tensor(understudy.Float32, []int64{1, 4}, []float32{5.1, 3.5, 1.4, 0.2})}
	outputs := map[string]*understudy.Tensor{"label": tensor(understudy.Int64, []int64{1}, []int64{2})}
	shadowOut := map[string]*understudy.Tensor{"label": tensor(understudy.Int64, []int64{1}, []int64{1})}

	// The new row, through the writer.
	db.WritePrediction(&understudy.Prediction{ID: "new", Time: at, Model: "iris", Version: "v", Inputs: inputs, Outputs: outputs, Status: "ok"})
	db.WriteShadowResult(&understudy.ShadowResult{RequestID: "new", Time: at, Shadow: "s", Version: "sv", Primary: "iris", PrimaryVersion: "v",
		Outputs: shadowOut, Status: understudy.StatusOK})
	flush(t, db)
	// The old row, as the writer stored it before: JSON text and its hash.
	in, out, sout := store.EncodeTensors(inputs), store.EncodeTensors(outputs), store.EncodeTensors(shadowOut)
	w := db.WritePool()
	if _, err := w.ExecContext(ctx, `INSERT INTO predictions (request_id, time_us, model, version, inputs, inputs_sha256, inputs_size, outputs, latency_us, status)
		VALUES ('old', ?, 'iris', 'v', ?, ?, ?, ?, 0, 'ok')`, at.UnixMicro(), string(in), store.InputsDigest(in), len(in), string(out)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.ExecContext(ctx, `INSERT INTO shadow_results (request_id, time_us, shadow, version, primary_model, primary_version, outputs, latency_us, status, comparison)
		VALUES ('old', ?, 's', 'sv', 'iris', 'v', ?, 0, 'ok', '{}')`, at.UnixMicro(), string(sout)); err != nil {
		t.Fatal(err)
	}
	var kinds []string
	rows, err := w.QueryContext(ctx, `SELECT typeof(inputs) || ' ' || typeof(outputs) || ' ' || inputs_sha256 FROM predictions ORDER BY request_id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k string
		rows.Scan(&k)
		kinds = append(kinds, k)
	}
	rows.Close()
	if len(kinds) != 2 || kinds[0] != "blob blob " || kinds[1] != "text text "+store.InputsDigest(in) {
		t.Errorf("stored rows (new, old): %q; want the new one binary with no hash, the old one JSON", kinds)
	}

	snap, err := db.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	pairs, err := snap.Pairs(ctx, store.PairFilter{})
	if err != nil || len(pairs) != 2 {
		t.Fatalf("Pairs: %d, %v", len(pairs), err)
	}
	for _, p := range pairs {
		if p.Inputs != string(in) || p.PrimaryOutputs != string(out) || p.ShadowOutputs != string(sout) {
			t.Errorf("pair %s: %s %s %s; want %s %s %s", p.RequestID, p.Inputs, p.PrimaryOutputs, p.ShadowOutputs, in, out, sout)
		}
	}
	for _, id := range []string{"old", "new"} {
		r, err := snap.Request(ctx, id)
		if err != nil {
			t.Fatalf("Request(%s): %v", id, err)
		}
		p := r.Prediction
		if p.Inputs != string(in) || p.InputsSHA256 != store.InputsDigest(in) || p.InputsSize != len(in) || p.Outputs != string(out) ||
			len(r.Shadows) != 1 || r.Shadows[0].Outputs != string(sout) {
			t.Errorf("Request(%s) = %+v %+v", id, p, r.Shadows)
		}
		rec, err := db.Prediction(ctx, id)
		if err != nil {
			t.Fatalf("Prediction(%s): %v", id, err)
		}
		if rec.InputsSHA256 != store.InputsDigest(in) || rec.InputsSize != len(in) {
			t.Errorf("Prediction(%s): hash %s size %d", id, rec.InputsSHA256, rec.InputsSize)
		}
		storetest.TensorsEqual(t, rec.Inputs, inputs)
		storetest.TensorsEqual(t, rec.Outputs, outputs)
	}

	// Backfills and backtests replay both forms.
	stored, err := db.StoredInputs(ctx, []string{"old", "new"})
	if err != nil || len(stored) != 2 {
		t.Fatalf("StoredInputs: %d, %v", len(stored), err)
	}
	recent, err := db.RecentInputs(ctx, understudy.InputQuery{Model: "iris", Limit: 10})
	if err != nil || len(recent) != 2 {
		t.Fatalf("RecentInputs: %d, %v", len(recent), err)
	}
	for _, in := range append(recent, stored["old"], stored["new"]) {
		storetest.TensorsEqual(t, in.Inputs, inputs)
		storetest.TensorsEqual(t, in.Outputs, outputs)
	}
}
