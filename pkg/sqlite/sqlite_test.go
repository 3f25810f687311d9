package sqlite_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"io/fs"
	"math"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/understudy-ml/understudy/migrations"
	"github.com/understudy-ml/understudy/pkg/sqlite"
	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/store/storetest"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// Ensure migrations apply to a fresh file and a second open changes nothing.
func TestOpenMigrates(t *testing.T) {
	files, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("embedded migrations: %v %v", files, err)
	}
	latest := int64(len(files))
	path := filepath.Join(t.TempDir(), "understudy.db")
	for i := range 2 {
		db, err := sqlite.Open(path, sqlite.Options{})
		if err != nil {
			t.Fatalf("Open #%d: %v", i+1, err)
		}
		w := db.WritePool()
		for _, table := range []string{"predictions", "shadow_results", "shadow_skips", "models", "deployment", "events"} {
			if got := queryInt(t, w, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?`, table); got != 1 {
				t.Errorf("open #%d: table %s: got %d, want 1", i+1, table, got)
			}
		}
		if got, want := queryInt(t, w, `SELECT max(version_id) FROM goose_db_version`), latest; got != want {
			t.Errorf("open #%d: schema version %d, want %d", i+1, got, want)
		}
		// goose records version 0 when it creates its table, then one row per migration.
		if got, want := queryInt(t, w, `SELECT count(*) FROM goose_db_version`), latest+1; got != want {
			t.Errorf("open #%d: %d goose rows, want %d", i+1, got, want)
		}
		if err := db.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
}

// Ensure every connection of both pools runs with the pragmas of the DSN,
// and that the read pool cannot write.
func TestPragmas(t *testing.T) {
	db, _ := openDB(t, sqlite.Options{ReadConns: 3})
	ctx := context.Background()
	pools := []struct {
		name      string
		pool      *sql.DB
		conns     int
		queryOnly int64
	}{
		{"write", db.WritePool(), 1, 0},
		{"read", db.ReadPool(), 3, 1},
	}
	for _, p := range pools {
		t.Run(p.name, func(t *testing.T) {
			// Hold every connection at once so each one is checked.
			var conns []*sql.Conn
			for range p.conns {
				c, err := p.pool.Conn(ctx)
				if err != nil {
					t.Fatalf("Conn: %v", err)
				}
				defer c.Close()
				conns = append(conns, c)
			}
			for i, c := range conns {
				var mode string
				if err := c.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil {
					t.Fatal(err)
				}
				if got, want := mode, "wal"; got != want {
					t.Errorf("conn %d: journal_mode = %s, want %s", i, got, want)
				}
				for _, pr := range []struct {
					pragma string
					want   int64
				}{
					{"foreign_keys", 1},
					{"synchronous", 1},
					{"busy_timeout", 5000},
					{"query_only", p.queryOnly},
				} {
					if got := queryInt(t, c, "PRAGMA "+pr.pragma); got != pr.want {
						t.Errorf("conn %d: %s = %d, want %d", i, pr.pragma, got, pr.want)
					}
				}
			}
		})
	}
	if _, err := db.ReadPool().ExecContext(ctx, `DELETE FROM predictions`); err == nil {
		t.Error("read pool deleted rows; want it read-only")
	}
}

// Ensure predictions and shadow results read back as written, tensors
// included, and that only inputs within the cap are stored.
func TestRoundTrip(t *testing.T) {
	db, _ := openDB(t, sqlite.Options{InputCap: 200})
	ctx := context.Background()
	at := time.UnixMicro(1_750_000_000_123_456)
	small := map[string]*understudy.Tensor{"input": tensor(understudy.Float32, []int64{1, 4}, []float32{5.1, 3.5, 1.4, 0.2})}
	big := map[string]*understudy.Tensor{"input": tensor(understudy.Float64, []int64{1, 64}, make([]float64, 64))}
	outputs := map[string]*understudy.Tensor{
		"probabilities": tensor(understudy.Float32, []int64{1, 3}, []float32{0.9, 0.07, float32(math.NaN())}),
		"label":         tensor(understudy.Int64, []int64{1}, []int64{2}),
	}
	preds := []*understudy.Prediction{
		{ID: "small", Time: at, Model: "iris", Version: "0123456789ab", Inputs: small, Outputs: outputs, Latency: 1234 * time.Microsecond, Status: "ok"},
		{ID: "big", Time: at, Model: "iris", Version: "0123456789ab", Inputs: big, Outputs: outputs, Latency: time.Millisecond, Status: "ok"},
		{ID: "failed", Time: at, Model: "iris", Version: "0123456789ab", Inputs: small, Status: "error", Error: "model failed"},
	}
	for _, p := range preds {
		db.WritePrediction(p)
	}
	shadows := []*understudy.ShadowResult{
		{RequestID: "small", Time: at.Add(time.Millisecond), Shadow: "iris-v2", Version: "ba9876543210", Primary: "iris", PrimaryVersion: "0123456789ab",
			Outputs: outputs, Latency: 2 * time.Millisecond, Status: understudy.StatusOK,
			Compare: understudy.Comparison{
				Outputs:   []understudy.OutputComparison{{Name: "label", Kind: understudy.KindClass, Rows: 1, Agree: 0, PrimaryClasses: []int64{2}, ShadowClasses: []int64{1}}},
				Agreement: f64(0), PrimaryClass: i64(2), ShadowClass: i64(1), MaxAbsDiff: f64(0.25), MeanAbsDiff: f64(0.125),
			}},
		{RequestID: "small", Time: at.Add(time.Second), Shadow: "slow", Version: "cccccccccccc", Primary: "iris", PrimaryVersion: "0123456789ab",
			Latency: time.Second, Status: understudy.StatusTimeout, Error: "deadline exceeded"},
	}
	for _, s := range shadows {
		db.WriteShadowResult(s)
	}
	flush(t, db)

	for _, want := range preds {
		t.Run("prediction "+want.ID, func(t *testing.T) {
			got, err := db.Prediction(ctx, want.ID)
			if err != nil {
				t.Fatalf("Prediction: %v", err)
			}
			enc := store.EncodeTensors(want.Inputs)
			sum := sha256.Sum256(enc)
			if got, want := got.InputsSHA256, hex.EncodeToString(sum[:]); got != want {
				t.Errorf("InputsSHA256 = %s, want %s", got, want)
			}
			if got, want := got.InputsSize, len(enc); got != want {
				t.Errorf("InputsSize = %d, want %d", got, want)
			}
			if len(enc) > 200 {
				if got.Inputs != nil {
					t.Errorf("inputs of %d bytes stored over a cap of 200", len(enc))
				}
			} else {
				storetest.TensorsEqual(t, got.Inputs, want.Inputs)
			}
			storetest.TensorsEqual(t, got.Outputs, want.Outputs)
			if want.Outputs == nil && got.Outputs != nil {
				t.Errorf("Outputs = %v, want nil", got.Outputs)
			}
			if !got.Time.Equal(want.Time) || got.Model != want.Model || got.Version != want.Version || got.Latency != want.Latency ||
				got.Status != want.Status || got.Error != want.Error || got.Label != nil {
				t.Errorf("got %+v, want %+v", got.Prediction, want)
			}
		})
	}
	t.Run("shadow results", func(t *testing.T) {
		got, err := db.ShadowResults(ctx, "small")
		if err != nil {
			t.Fatalf("ShadowResults: %v", err)
		}
		if len(got) != len(shadows) {
			t.Fatalf("got %d shadow results, want %d", len(got), len(shadows))
		}
		for i, want := range shadows {
			g := got[i]
			storetest.TensorsEqual(t, g.Outputs, want.Outputs)
			if !g.Time.Equal(want.Time) {
				t.Errorf("%s: Time = %v, want %v", want.Shadow, g.Time, want.Time)
			}
			if g.Origin != understudy.OriginLive {
				t.Errorf("%s: Origin = %q, want the stored origin of a live result", want.Shadow, g.Origin)
			}
			g.Outputs, g.Time, g.Origin = want.Outputs, want.Time, want.Origin
			if !reflect.DeepEqual(g, want) {
				t.Errorf("got %+v,\nwant %+v", g, want)
			}
		}
		var agreement, maxDiff float64
		var primaryClass, shadowClass int64
		err = db.ReadPool().QueryRowContext(ctx, `SELECT agreement, primary_class, shadow_class, max_abs_diff FROM shadow_results WHERE shadow = 'iris-v2'`).
			Scan(&agreement, &primaryClass, &shadowClass, &maxDiff)
		if err != nil {
			t.Fatal(err)
		}
		if agreement != 0 || primaryClass != 2 || shadowClass != 1 || maxDiff != 0.25 {
			t.Errorf("comparison columns = %v %v %v %v, want 0 2 1 0.25", agreement, primaryClass, shadowClass, maxDiff)
		}
	})
	t.Run("unknown", func(t *testing.T) {
		_, err := db.Prediction(ctx, "nope")
		if got, want := understudy.ErrorCode(err), understudy.ENOTFOUND; got != want {
			t.Errorf("Prediction(unknown) code = %q (%v), want %q", got, err, want)
		}
		got, err := db.ShadowResults(ctx, "nope")
		if err != nil || len(got) != 0 {
			t.Errorf("ShadowResults(unknown) = %v, %v; want none", got, err)
		}
	})
}

// Ensure a request id already stored is ignored and counted, within one
// batch and across batches, and that other shadows of the id are not.
func TestDuplicates(t *testing.T) {
	logs := &logBuffer{}
	db, _ := openDB(t, sqlite.Options{Log: zerolog.New(logs)})
	at := time.Now()
	p, s := sqlite.SamplePair("dup", at)
	db.WritePrediction(p)
	db.WritePrediction(p)
	db.WriteShadowResult(s)
	flush(t, db)
	db.WritePrediction(p)
	db.WriteShadowResult(s)
	other := *s
	other.Version = "ffffffffffff"
	db.WriteShadowResult(&other)
	flush(t, db)

	gotP, gotS := counts(t, db)
	if gotP != 1 || gotS != 2 {
		t.Errorf("counts = %d, %d; want 1, 2", gotP, gotS)
	}
	st := db.Stats()
	for _, tt := range []struct {
		name string
		got  store.TableStats
		want store.TableStats
	}{
		{"predictions", st.Predictions, store.TableStats{Written: 1, Duplicate: 2}},
		{"shadow results", st.ShadowResults, store.TableStats{Written: 2, Duplicate: 1}},
	} {
		if tt.got != tt.want {
			t.Errorf("%s stats = %+v, want %+v", tt.name, tt.got, tt.want)
		}
	}
	if logs.count("duplicate request id ignored") == 0 {
		t.Errorf("no duplicate logged; log:\n%s", logs)
	}
}

// Ensure skip counters add up per shadow, version and minute.
func TestSkips(t *testing.T) {
	db, _ := openDB(t, sqlite.Options{})
	ctx := context.Background()
	minute := time.Unix(1_750_000_020, 0)
	db.CountSkips("s", "v1", minute, 1, 0)
	db.CountSkips("s", "v1", minute.Add(30*time.Second), 2, 1)
	db.CountSkips("s", "v2", minute, 0, 4)
	db.CountSkips("s", "v1", minute.Add(time.Hour), 10, 0)
	db.CountSkips("other", "v1", minute, 100, 100)
	db.CountSkips("s", "v1", minute, 0, 0) // nothing to count
	flush(t, db)
	db.CountSkips("s", "v1", minute, 1000, 0)
	flush(t, db)

	tests := []struct {
		shadow              string
		sampledOut, dropped int64
	}{
		{"s", 1013, 5},
		{"other", 100, 100},
		{"none", 0, 0},
	}
	for _, tt := range tests {
		sampledOut, dropped, err := db.Skips(ctx, tt.shadow)
		if err != nil {
			t.Fatal(err)
		}
		if sampledOut != tt.sampledOut || dropped != tt.dropped {
			t.Errorf("Skips(%s) = %d, %d; want %d, %d", tt.shadow, sampledOut, dropped, tt.sampledOut, tt.dropped)
		}
	}
	if got, want := queryInt(t, db.ReadPool(), `SELECT count(*) FROM shadow_skips`), int64(4); got != want {
		t.Errorf("%d skip rows, want %d (one per shadow, version and minute)", got, want)
	}
	if got, want := db.Stats().Skips.Written, int64(6); got != want {
		t.Errorf("skips written = %d, want %d", got, want)
	}
}
