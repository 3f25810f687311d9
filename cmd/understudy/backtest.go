package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/peterbourgon/ff/v3"
	"github.com/rs/zerolog"

	"github.com/understudy-ml/understudy/pkg/onnx"
	"github.com/understudy-ml/understudy/pkg/postgres"
	"github.com/understudy-ml/understudy/pkg/registry"
	"github.com/understudy-ml/understudy/pkg/report"
	"github.com/understudy-ml/understudy/pkg/shadow"
	"github.com/understudy-ml/understudy/pkg/sqlite"
	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file is `understudy backtest`: a candidate model judged on stored
// traffic in one process, for a CI gate. It reads the newest stored
// requests of the primary, runs the candidate on them, and builds the
// report's verdict over exactly those pairs: they go, with copies of their
// predictions and labels, into a throwaway SQLite store, which report.Build
// reads as it reads the server's. So the verdict, checks and figures are
// the report's own; only latency differs, judged on the candidate's CPU
// time per run, since there is no live pair to judge it on.

// Exit statuses of understudy backtest.
const (
	exitReady    = 0
	exitNotReady = 1
	exitBadInput = 2
)

// exitError carries an exit status other than 1 to main.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// badInput is a usage or input error: exit status 2.
func badInput(format string, args ...any) error {
	return &exitError{code: exitBadInput, err: fmt.Errorf(format, args...)}
}

// BacktestConfig is what `understudy backtest` can be told; each flag has
// an UNDERSTUDY_BACKTEST_<FLAG> environment override.
type BacktestConfig struct {
	DB        string
	ModelsDir string
	Primary   string
	Rows      int
	Window    time.Duration
	Store     bool
	JSON      bool
	ORTLib    string
	Tolerance float64
	Timeout   time.Duration
	Candidate string
}

const backtestUsage = `Usage: understudy backtest --db DB [flags] CANDIDATE.onnx

Runs CANDIDATE.onnx on the newest stored requests of the primary and prints
the report's verdict, checks and figures for it, as if it had shadowed them.
It stores nothing unless --store is given. Exit status: 0 when the verdict
is ready, 1 when it is not, 2 on bad usage or input (an unreadable model,
inputs the primary's requests do not fit, no stored history).

Flags:
`

func parseBacktest(args []string, stderr io.Writer) (*BacktestConfig, error) {
	c := &BacktestConfig{DB: "understudy.db", Rows: 10_000, Window: 24 * time.Hour, Timeout: 5 * time.Second}
	fs := flag.NewFlagSet("understudy backtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, backtestUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.DB, "db", c.DB, "the server's SQLite database file, or its postgres:// URL")
	fs.StringVar(&c.ModelsDir, "models-dir", c.ModelsDir, "the server's models directory, to read the primary's signature from its file when the store has none")
	fs.StringVar(&c.Primary, "primary", c.Primary, "the primary whose stored requests to run on (default: the deployment's, else the model of the newest request)")
	fs.IntVar(&c.Rows, "rows", c.Rows, "newest stored requests to run on")
	fs.DurationVar(&c.Window, "window", c.Window, "only requests stored within this long before now")
	fs.BoolVar(&c.Store, "store", c.Store, "also store the candidate's results in the database, as backtest pairs the server's report shows")
	fs.BoolVar(&c.JSON, "json", c.JSON, "print JSON instead of text")
	fs.StringVar(&c.ORTLib, "ort-lib", c.ORTLib, "ONNX Runtime shared library (default: the copy make fetched)")
	fs.DurationVar(&c.Timeout, "timeout", c.Timeout, "time limit of one run of the candidate, as the server's --shadow-timeout; runs over it count as timeouts")
	fs.Float64Var(&c.Tolerance, "tolerance", c.Tolerance, "|Δ| under which a float output counts as matching (as the report's tolerance)")
	if err := ff.Parse(fs, args, ff.WithEnvVarPrefix("UNDERSTUDY_BACKTEST")); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, &exitError{code: exitBadInput, err: errUsage}
		}
		return nil, &exitError{code: exitBadInput, err: err}
	}
	switch {
	case fs.NArg() != 1:
		fs.Usage()
		return nil, badInput("want one candidate model file, got %d arguments", fs.NArg())
	case c.Rows <= 0:
		return nil, badInput("--rows %d: want a positive number of requests", c.Rows)
	case c.Timeout <= 0:
		return nil, badInput("--timeout %v: want a positive duration, e.g. 5s", c.Timeout)
	case c.Window <= 0:
		return nil, badInput("--window %v: want a positive duration, e.g. 24h", c.Window)
	case !(c.Tolerance >= 0):
		return nil, badInput("--tolerance %v: want a number ≥ 0", c.Tolerance)
	}
	c.Candidate = fs.Arg(0)
	return c, nil
}

// backtestResult is what --json prints.
type backtestResult struct {
	Candidate       understudy.ModelRef  `json:"candidate"`
	File            string               `json:"file"`
	Primary         string               `json:"primary"`
	Window          string               `json:"window"`
	Considered      int                  `json:"considered"`
	Ran             int                  `json:"ran"`
	NotBacktestable int                  `json:"not_backtestable"`
	Stored          bool                 `json:"stored"`
	Ready           bool                 `json:"ready"`
	Report          *report.ShadowReport `json:"report"`
}

func runBacktest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseBacktest(args, stderr)
	if err != nil {
		return err
	}
	log := zerolog.New(io.Discard)
	data, err := os.ReadFile(c.Candidate)
	if err != nil {
		return badInput("read the candidate: %v", err)
	}
	lib, err := findORTLib(c.ORTLib)
	if err != nil {
		return err
	}
	rt, err := onnx.Open(lib)
	if err != nil {
		return err
	}
	defer rt.Close()
	lm, err := rt.Load(data, onnx.Options{IntraOpThreads: 1})
	if err != nil {
		return badInput("load the candidate %s: %v", c.Candidate, err)
	}
	sum := sha256.Sum256(data)
	cand := understudy.ModelRef{Name: strings.TrimSuffix(filepath.Base(c.Candidate), ".onnx"), Version: hex.EncodeToString(sum[:])[:12]}
	// Run as the server runs a shadow, so that the pairs are the same.
	model := registry.NewModel(cand.Name, cand.Version, lm.Signature, lm.Runner, registry.Settings{Sampling: 1, Timeout: c.Timeout})
	defer model.Release()

	db, err := openBacktestStore(ctx, c.DB, log)
	if err != nil {
		return badInput("open --db: %v", err)
	}
	defer db.Close()
	primary, sig, err := backtestPrimary(ctx, c, db, rt)
	if err != nil {
		return err
	}

	if err := registry.Compatible(sig, lm.Signature); err != nil {
		return badInput("the candidate cannot take the primary's inputs: %v", err)
	}

	now := time.Now()
	res := backtestResult{Candidate: cand, File: c.Candidate, Primary: primary, Window: c.Window.String(), Stored: c.Store}
	scratchDir, err := os.MkdirTemp("", "understudy-backtest-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratchDir)
	scratch, err := sqlite.Open(filepath.Join(scratchDir, "backtest.db"), sqlite.Options{InputCap: -1, Log: log})
	if err != nil {
		return err
	}
	defer scratch.Close()

	q := understudy.InputQuery{Model: primary, From: now.Add(-c.Window)}
	var labels []understudy.Label
	for res.Considered < c.Rows {
		q.Limit = min(256, c.Rows-res.Considered)
		page, err := db.RecentInputs(ctx, q)
		if err != nil {
			return fmt.Errorf("read the stored requests: %w", err)
		}
		if len(page) == 0 {
			break
		}
		for _, in := range page {
			res.Considered++
			if in.Inputs == nil || in.ServedBy == understudy.ServedCandidate {
				res.NotBacktestable++
				continue
			}
			r, ok := shadow.Replay(ctx, model, in, sig.Outputs, understudy.OriginBacktest)
			if !ok {
				return ctx.Err()
			}
			res.Ran++
			scratch.WritePrediction(&understudy.Prediction{ID: in.RequestID, Time: in.Time, Model: in.Model, Version: in.Version,
				Outputs: in.Outputs, Latency: in.Latency, Status: understudy.StatusOK})
			scratch.WriteShadowResult(r)
			if c.Store {
				db.WriteShadowResult(r)
			}
			if in.Label != nil {
				labels = append(labels, understudy.Label{ID: in.RequestID, Value: *in.Label})
			}
		}
		last := page[len(page)-1]
		q.Before, q.BeforeID = last.Time, last.RequestID
		// A page at a time, so that no writer's queue fills up.
		if err := flushAll(ctx, scratch, db, c.Store); err != nil {
			return err
		}
	}
	if res.Ran == 0 {
		return badInput("no stored requests of %s to run on in the last %v (%d considered, %d with inputs over the input cap or answered by a canary)",
			primary, c.Window, res.Considered, res.NotBacktestable)
	}
	if len(labels) > 0 {
		if _, err := scratch.SetLabels(ctx, labels); err != nil {
			return fmt.Errorf("copy the labels: %w", err)
		}
	}
	rep, err := report.Build(ctx, scratch, report.Query{Window: "all", Shadow: cand.Name, Version: cand.Version, Tolerance: c.Tolerance,
		Primary: understudy.ModelRef{Name: primary}, LatencyOrigin: understudy.OriginBacktest}, report.DefaultThresholds, time.Now())
	if err != nil {
		return err
	}
	for i := range rep.Shadows {
		if rep.Shadows[i].Name == cand.Name && rep.Shadows[i].Version == cand.Version {
			res.Report = &rep.Shadows[i]
		}
	}
	if res.Report == nil {
		return fmt.Errorf("the report has no figures for %s version %s", cand.Name, cand.Version)
	}
	res.Ready = res.Report.Verdict.Ready
	if c.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		printBacktest(stdout, &res)
	}
	if !res.Ready {
		return &exitError{code: exitNotReady, err: fmt.Errorf("%s is not ready to promote on this traffic", cand.Name)}
	}
	return nil
}

// flushAll waits for the scratch store's writes, and the database's when
// results are stored there; a row either could not take fails the run.
func flushAll(ctx context.Context, scratch, db store.Store, stored bool) error {
	if err := scratch.Flush(ctx); err != nil {
		return err
	}
	if st := scratch.Stats(); st.Predictions.Lost+st.ShadowResults.Lost > 0 {
		return fmt.Errorf("the scratch store lost %d rows", st.Predictions.Lost+st.ShadowResults.Lost)
	}
	if !stored {
		return nil
	}
	if err := db.Flush(ctx); err != nil {
		return fmt.Errorf("store the results: %w", err)
	}
	if lost := db.Stats().ShadowResults.Lost; lost > 0 {
		return fmt.Errorf("store the results: %d could not be stored", lost)
	}
	return nil
}

// printBacktest prints the verdict, its checks and the figures behind them.
func printBacktest(w io.Writer, r *backtestResult) {
	sr := r.Report
	fmt.Fprintf(w, "Backtest of %s (version %s) against %s: %d of the newest %d stored requests of the last %s", r.Candidate.Name, r.Candidate.Version, r.Primary, r.Ran, r.Considered, r.Window)
	if r.NotBacktestable > 0 {
		fmt.Fprintf(w, " (%d not backtestable: inputs over the input cap, or answered by a canary)", r.NotBacktestable)
	}
	fmt.Fprintln(w)
	if r.Stored {
		fmt.Fprintln(w, "Results stored as backtest pairs.")
	}
	verdict := "NOT READY"
	if sr.Verdict.Ready {
		verdict = "READY"
	}
	fmt.Fprintf(w, "\nVerdict: %s to promote\n", verdict)
	for _, ch := range sr.Verdict.Checks {
		mark := "FAIL"
		if ch.Pass {
			mark = "pass"
		}
		fmt.Fprintf(w, "  %-4s %-9s %s\n", mark, ch.Name, ch.Detail)
	}
	fmt.Fprintln(w, "\nFigures:")
	t := sr.Traffic
	fmt.Fprintf(w, "  runs         %d ok, %d errors, %d timeouts\n", t.OK, t.Errors, t.Timeouts)
	if c := sr.Classification; c != nil {
		fmt.Fprintf(w, "  agreement    %.4f on %d rows of %s (95%% Wilson %.4f–%.4f), Cohen's κ %.4f\n", c.Agreement, c.Pairs, c.Output, c.WilsonLow, c.WilsonHigh, c.Kappa)
	}
	if g := sr.Regression; g != nil {
		fmt.Fprintf(w, "  difference   %s: MAE %.4g, RMSE %.4g, max |Δ| %.4g, %.4f of pairs within %g\n", g.Output, g.MAE, g.RMSE, g.MaxAbs, g.WithinTol, g.Tolerance)
	}
	if a := sr.Accuracy; a != nil {
		if a.Numeric {
			fmt.Fprintf(w, "  labels       %d numeric: MAE candidate %.4g, primary %.4g, sign test p = %.4g\n", a.Compared, a.ShadowMAE, a.PrimaryMAE, a.McNemarP)
		} else {
			fmt.Fprintf(w, "  accuracy     %d labelled: candidate %.4f, primary %.4f, McNemar p = %.4g\n", a.Labelled, a.ShadowAcc, a.PrimaryAcc, a.McNemarP)
		}
	}
	l := sr.Latency
	fmt.Fprintf(w, "  latency      p50 %s vs %s, p99 %s vs %s (candidate's CPU time per run, offline; primary's as served)\n",
		report.Micros(l.ShadowP50), report.Micros(l.PrimaryP50), report.Micros(l.ShadowP99), report.Micros(l.PrimaryP99))
	d := sr.Drift
	if d.PSI != nil {
		fmt.Fprintf(w, "  drift        PSI %.4f of the predicted classes\n", *d.PSI)
	}
	if d.KSD != nil && d.KSP != nil {
		fmt.Fprintf(w, "  scores       KS D = %.4f, p = %.4g over %d pairs\n", *d.KSD, *d.KSP, d.KSSamples)
	}
}

// openBacktestStore opens --db as the server does, without metrics.
func openBacktestStore(ctx context.Context, dsn string, log zerolog.Logger) (store.Store, error) {
	if isPostgresURL(dsn) {
		return postgres.Open(ctx, dsn, postgres.Options{Replica: "backtest", Log: log})
	}
	if _, err := os.Stat(dsn); err != nil {
		// Opening would create an empty database.
		return nil, err
	}
	return sqlite.Open(dsn, sqlite.Options{Replica: "backtest", Log: log})
}

// backtestPrimary names the primary and returns its signature: from the
// store's record of its newest version, or else from its file in
// --models-dir.
func backtestPrimary(ctx context.Context, c *BacktestConfig, db store.Store, rt *onnx.Runtime) (string, understudy.Signature, error) {
	primary := c.Primary
	if primary == "" {
		if d, err := db.LoadDeployment(ctx); err == nil && d != nil && d.Primary.Name != "" {
			primary = d.Primary.Name
		}
	}
	if primary == "" {
		snap, err := db.Snapshot(ctx)
		if err != nil {
			return "", understudy.Signature{}, err
		}
		ref, ok, err := snap.LatestPrediction(ctx)
		snap.Close()
		if err != nil {
			return "", understudy.Signature{}, err
		}
		if !ok {
			return "", understudy.Signature{}, badInput("the database holds no requests: no history to backtest on")
		}
		primary = ref.Name
	}
	models, err := db.Models(ctx)
	if err != nil {
		return "", understudy.Signature{}, err
	}
	var sig *understudy.Signature
	for _, m := range models {
		// Newest sighting last, within a name.
		if m.Name == primary && m.Signature != nil {
			sig = m.Signature
		}
	}
	if sig != nil {
		return primary, *sig, nil
	}
	if c.ModelsDir == "" {
		return "", understudy.Signature{}, badInput("the store has no model named %q; name the primary with --primary, or give --models-dir", primary)
	}
	data, err := os.ReadFile(filepath.Join(c.ModelsDir, primary+".onnx"))
	if err != nil {
		return "", understudy.Signature{}, badInput("the store has no signature of %q and its file cannot be read: %v", primary, err)
	}
	lm, err := rt.Load(data, onnx.Options{IntraOpThreads: 1})
	if err != nil {
		return "", understudy.Signature{}, badInput("load the primary %s: %v", primary, err)
	}
	lm.Runner.Close()
	return primary, lm.Signature, nil
}
