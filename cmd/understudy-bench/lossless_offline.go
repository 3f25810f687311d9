package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/understudy-ml/understudy/pkg/onnxbuild"
)

// This file is the lossless section's offline work: how fast a backtest
// runs on stored traffic, and what a backtest or a backfill running on a
// server costs its primary's p99.

// backtestHistory is how many requests the backtest-cost servers store
// before the shadow arrives: far more than the comparison's idle gaps can
// get through, so that the backtest is still running at its end.
const backtestHistory = 20000

// dropModel writes a model file into a server's models directory the way a
// deployment should, by a rename, and returns when it was renamed.
func dropModel(srv *server, name string, file []byte) (time.Time, error) {
	tmp := filepath.Join(srv.dir, "models", "."+name+".tmp")
	if err := os.WriteFile(tmp, file, 0o644); err != nil {
		return time.Time{}, err
	}
	at := time.Now()
	return at, os.Rename(tmp, filepath.Join(srv.dir, "models", name+".onnx"))
}

func waitShadow(srv *server, name string) error {
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if role, _, _ := modelRole(srv.url, name); role == "shadow" {
			return nil
		}
	}
	return fmt.Errorf("%s never became a shadow", name)
}

// fill sends closed-loop traffic until the server has answered n requests,
// then waits for the store to write them.
func fill(srv *server, body []byte, n int) (int, error) {
	sent := 0
	for sent < n {
		r, err := closedLoop(srv.url+"/predict", body, 4, 500*time.Millisecond)
		if err != nil {
			return sent, err
		}
		sent += r.n
	}
	return sent, quiesce(srv.url)
}

// backtestSpeed times a backtest of a new shadow over the stored requests
// of a small primary.
func backtestSpeed(m benchModel) error {
	srv, err := startServer(map[string][]byte{"primary": m.file}, "primary")
	if err != nil {
		return err
	}
	defer srv.stop()
	const settle = time.Second // the server's default --settle
	fmt.Printf("== backtest of a new shadow on stored traffic: %s ==\n", m.name)
	sent, err := fill(srv, m.body, 2000)
	if err != nil {
		return err
	}
	want := float64(min(sent, 10000)) // the default --backtest-rows
	d := *m.mlp
	file, err := onnxbuild.RandomMLP(5, d.Inputs(), []int{len(d.Layers[0].W)}, d.Classes()).Model("b").Marshal()
	if err != nil {
		return err
	}
	const name = "backtested"
	written, err := dropModel(srv, name, file)
	if err != nil {
		return err
	}
	var loaded, counted, evented time.Duration
	var detail string
	for deadline := written.Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		since := time.Since(written)
		if loaded == 0 {
			if role, _, _ := modelRole(srv.url, name); role == "shadow" {
				loaded = since
			}
		}
		if counted == 0 && metricSum(srv.url, "understudy_shadow_offline_runs_total", "origin", "backtest") >= want {
			counted = since
		}
		if ev, ok := findEvent(srv.url, name, "backtest"); ok {
			evented, detail = since, ev
			break
		}
	}
	ran := metricSum(srv.url, "understudy_shadow_offline_runs_total", "origin", "backtest")
	if counted == 0 {
		return fmt.Errorf("the backtest ran %.0f of %.0f stored requests in 2 minutes", ran, want)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "stored\tran\tshadow after write\tdone after write\tdone after settle\trows/s after settle\ttarget\t")
	fmt.Fprintf(tw, "%d\t%.0f\t%v\t%v\t%v\t%.0f\t%s\t\n", sent, ran, loaded.Round(time.Millisecond), counted.Round(time.Millisecond),
		(counted - settle).Round(time.Millisecond), want/(counted-settle).Seconds(), metOrNot(want >= 2000 && counted-settle < 10*time.Second))
	tw.Flush()
	fmt.Printf("target: 2,000 stored requests in < 10 s after the file settles (--settle %v)\n", settle)
	if evented > 0 {
		fmt.Printf("event after %v: %s\n", evented.Round(time.Millisecond), detail)
	}
	fmt.Println()
	return nil
}

// side is one server of a paired comparison of rounds made of load
// phases (on) and idle gaps (off).
type side struct {
	srv    *server
	lc     *loadClient
	rounds [][]time.Duration
	sent   int64
	// offline runs of the round's origin counted while load was on, in
	// the first and the second half of each load phase: the idle gate
	// should stop them in the first few milliseconds.
	offline [2]float64
}

// round runs cycles of on at rate then off idle. Each load phase is sent
// as two halves with a scrape between, which is no gap to the idle gate.
func (s *side) round(rate float64, on, off time.Duration, cycles int, origin string) error {
	var lat []time.Duration
	count := func() float64 { return metricSum(s.srv.url, "understudy_shadow_offline_runs_total", "origin", origin) }
	for range cycles {
		before := count()
		for half := range 2 {
			r, err := openLoop(s.lc, rate, on/2)
			if err != nil {
				return err
			}
			after := count()
			s.offline[half] += after - before
			before = after
			lat, s.sent = append(lat, r.lat...), s.sent+int64(r.n)
		}
		time.Sleep(off)
	}
	s.rounds = append(s.rounds, lat)
	return nil
}

// pairedSides runs rounds of a and b in A B B A order for d in all. Each
// turn ends by waiting for the server's queues and backlog to empty
// (quiesce), or, with pause, the server out of its turn is stopped
// (SIGSTOP) instead: a backtest, which quiesce cannot wait for, must not
// run in the other's turn either, and its results keep the store's queue
// from ever emptying. The stopped server's clock runs on, so when it is
// continued its idle gate has long passed and the backtest run it was in
// resumes just as its load starts, which is the case to measure.
func pairedSides(a, b *side, d time.Duration, pause bool, round func(*side) error) error {
	sig := func(s *side, sig syscall.Signal) {
		if pause {
			s.srv.cmd.Process.Signal(sig)
		}
	}
	defer sig(a, syscall.SIGCONT)
	defer sig(b, syscall.SIGCONT)
	turn := func(s, other *side) error {
		sig(other, syscall.SIGSTOP)
		sig(s, syscall.SIGCONT)
		if err := round(s); err != nil || pause {
			return err
		}
		return quiesce(s.srv.url)
	}
	per := time.Now()
	if err := turn(a, b); err != nil {
		return err
	}
	if err := turn(b, a); err != nil {
		return err
	}
	pairs := max(int(d/time.Since(per)), 4)
	for i := 1; i < pairs; i++ {
		first, second := a, b
		if i%2 == 1 {
			first, second = b, a
		}
		if err := turn(first, second); err != nil {
			return err
		}
		if err := turn(second, first); err != nil {
			return err
		}
	}
	return nil
}

func newSide(files map[string][]byte, body []byte, extra ...string) (*side, error) {
	srv, err := startServer(files, "primary", extra...)
	if err != nil {
		return nil, err
	}
	lc, err := newLoadClient(srv.url+"/predict", body)
	if err != nil {
		srv.stop()
		return nil, err
	}
	return &side{srv: srv, lc: lc}, nil
}

func (s *side) close() {
	s.lc.close()
	s.srv.stop()
}

// printSides prints the p50 and p99 of a and b and their ratio with a
// bootstrap interval.
func printSides(labelA, labelB string, a, b *side) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "measure\t%s\t%s\tratio\t95%% interval\tmedian of pairs\ttarget\t\n", labelA, labelB)
	for _, q := range []float64{50, 99} {
		pa, pb := roundsP(a.rounds, q), roundsP(b.rounds, q)
		lo, hi := quantileRatioInterval(a.rounds, b.rounds, q/100, 2)
		target := ""
		if q == 99 {
			target = "≤ 1.15"
		}
		fmt.Fprintf(tw, "p%.0f\t%v\t%v\t%.2f\t%.2f–%.2f\t%.2f\t%s\t\n", q, pa, pb, ratioOf(pa, pb), lo, hi, medianRatio(a.rounds, b.rounds, q), target)
	}
	tw.Flush()
	fmt.Printf("(%d pairs of rounds in ABBA order, resampled in runs of 2)\n", len(a.rounds))
}

// backtestCost compares the primary's latency at rate on a server running
// a backtest over a long history with the same server without one.
func backtestCost(m benchModel, rate float64) error {
	files := map[string][]byte{"primary": m.file}
	shadows, err := shadowFiles(m)
	if err != nil {
		return err
	}
	// No backlog on either: only the backtest differs.
	with, err := newSide(files, m.body, "--backfill-backlog", "0", "--backtest-rows", "100000")
	if err != nil {
		return err
	}
	defer with.close()
	without, err := newSide(files, m.body, "--backfill-backlog", "0", "--backtest-rows", "0")
	if err != nil {
		return err
	}
	defer without.close()
	fmt.Printf("== the primary's latency with a backtest running: %s at %.0f req/s ==\n", m.name, rate)
	var stored [2]int
	for i, s := range []*side{with, without} {
		if stored[i], err = fill(s.srv, m.body, backtestHistory); err != nil {
			return err
		}
	}
	// The backtest starts as soon as its shadow is loaded: load it last.
	for _, s := range []*side{without, with} {
		if _, err := dropModel(s.srv, "shadow-a", shadows["shadow-a"]); err != nil {
			return err
		}
		if err := waitShadow(s.srv, "shadow-a"); err != nil {
			return err
		}
	}
	// The backtest runs in what is left of each gap after --backfill-idle
	// (100 ms), 50 ms: little enough that it is still running at the end.
	const on, off = 500 * time.Millisecond, 150 * time.Millisecond
	running := 0 // rounds of with that ended with the backtest unfinished
	err = pairedSides(without, with, *losslessTime/2, true, func(s *side) error {
		if err := s.round(rate, on, off, 1, "backtest"); err != nil || s != with {
			return err
		}
		if _, done := findEvent(s.srv.url, "shadow-a", "backtest"); !done {
			running++
		}
		return nil
	})
	if err != nil {
		return err
	}
	printSides("no backtest", "backtest", without, with)
	ran := metricSum(with.srv.url, "understudy_shadow_offline_runs_total", "origin", "backtest")
	_, done := findEvent(with.srv.url, "shadow-a", "backtest")
	fmt.Printf("stored requests: %d and %d; each round %v of load then %v idle, the other server stopped\n", stored[0], stored[1], on, off)
	// The count under load starts at the scrape just before a phase's
	// first request, so it holds the runs of those few milliseconds too.
	fmt.Printf("backtest rows run during the %d loaded phases: %.0f in their first halves (counted from just before each), %.0f in their second; %.0f in all; unfinished at the end of %d of those rounds (finished: %v)\n\n",
		len(with.rounds), with.offline[0], with.offline[1], ran, running, done)
	return nil
}

// burstShare is the bursts' rate as a share of the no-shadow maximum. At
// the maximum itself an open loop queues without bound through a burst
// (p99s of 100–230 ms), so its p99 measured the queue, not the server; at
// 0.8 the default rule still sheds most jobs.
const burstShare = 0.8

// backfillCost compares the primary's latency under bursts that shed
// shadow jobs on a server that defers them and backfills in the gaps with
// the same server that drops them.
func backfillCost(m benchModel, maxRate float64) error {
	rate := burstShare * maxRate
	shadows, err := shadowFiles(m)
	if err != nil {
		return err
	}
	files := map[string][]byte{"primary": m.file, "shadow-a": shadows["shadow-a"]}
	with, err := newSide(files, m.body, "--backtest-rows", "0")
	if err != nil {
		return err
	}
	defer with.close()
	without, err := newSide(files, m.body, "--backtest-rows", "0", "--backfill-backlog", "0")
	if err != nil {
		return err
	}
	defer without.close()
	fmt.Printf("== the primary's latency with backfill in the gaps: %s, 1 shadow, bursts at %.0f req/s ==\n", m.name, rate)
	const on, off, cycles = 500 * time.Millisecond, 500 * time.Millisecond, 2
	// After each turn quiesce waits for the backlog to empty, so backfill
	// runs only in its own server's gaps and turn.
	err = pairedSides(without, with, *losslessTime/2, false, func(s *side) error {
		return s.round(rate, on, off, cycles, "backfill")
	})
	if err != nil {
		return err
	}
	printSides("backlog 0", "backfill", without, with)
	fmt.Printf("each round %d × (%v at %.0f req/s, %.0f%% of the no-shadow maximum, then %v idle); default shedding rule\n", cycles, on, rate, 100*burstShare, off)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "server\trequests\tlive runs\tdeferred\tbackfilled\tunder load: 1st half\t2nd half\tdropped\t")
	for _, x := range []struct {
		label string
		s     *side
	}{{"backlog 0", without}, {"backfill", with}} {
		ss, err := scrape(x.s.srv.url)
		if err != nil {
			return err
		}
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t\n", x.label, x.s.sent,
			ss.sum("understudy_model_runs_total", "role", "shadow"), ss.sum("understudy_shadow_deferred_total"),
			ss.sum("understudy_shadow_offline_runs_total", "origin", "backfill"), x.s.offline[0], x.s.offline[1],
			ss.droppedForGood())
	}
	tw.Flush()
	fmt.Println()
	return nil
}
