package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/understudy-ml/understudy/pkg/onnxbuild"
)

// shadowFiles returns two shadows for a model: for the demo its v2 and a
// retrained variant, for a generated model two other seeds.
func shadowFiles(m benchModel) (map[string][]byte, error) {
	if strings.HasPrefix(m.name, "iris") {
		v2, err := os.ReadFile("models/iris-v2.onnx")
		if err != nil {
			return nil, err
		}
		alt, err := onnxbuild.RandomMLP(3, 4, []int{8}, 3).Model("alt").Marshal()
		return map[string][]byte{"shadow-a": v2, "shadow-b": alt}, err
	}
	// The same shape as the model, so that the shadows take its inputs.
	in, hidden, classes := onnxbuild.LargeMLPInputs, []int{1024, 1024, 1024, 1024}, 10
	if d := m.mlp; d != nil {
		in, hidden, classes = d.Inputs(), nil, d.Classes()
		for _, l := range d.Layers[:len(d.Layers)-1] {
			hidden = append(hidden, len(l.W))
		}
	}
	a, err := onnxbuild.RandomMLP(2, in, hidden, classes).Model("a").Marshal()
	if err != nil {
		return nil, err
	}
	b, err := onnxbuild.RandomMLP(3, in, hidden, classes).Model("b").Marshal()
	return map[string][]byte{"shadow-a": a, "shadow-b": b}, err
}

// benchShadows measures what two shadows at sampling 1.0 cost the primary.
func benchShadows(m benchModel) error {
	shadows, err := shadowFiles(m)
	if err != nil {
		return err
	}
	plain, err := startServer(map[string][]byte{"primary": m.file}, "primary")
	if err != nil {
		return err
	}
	defer plain.stop()
	files := map[string][]byte{"primary": m.file}
	for k, v := range shadows {
		files[k] = v
	}
	shadowed, err := startServer(files, "primary")
	if err != nil {
		return err
	}
	defer shadowed.stop()

	fmt.Printf("== 2 shadows at sampling 1.0 vs none: %s ==\n", m.name)
	// Maximum throughput, alternating rounds.
	var without, with []float64
	for range rounds {
		a, err := closedLoop(plain.url+"/predict", m.body, 4, *duration/rounds)
		if err != nil {
			return err
		}
		b, err := closedLoop(shadowed.url+"/predict", m.body, 4, *duration/rounds)
		if err != nil {
			return err
		}
		// The jobs shed at full load are backfilled once the server is
		// idle: in the next round without shadows, unless waited for here.
		if err := quiesce(shadowed.url); err != nil {
			return err
		}
		without, with = append(without, a.rate), append(with, b.rate)
	}
	maxRate := median(without)
	drops, mirrored := shadowCounts(shadowed.url)
	// Fixed rate at half the no-shadow maximum, unless -shadow-rate sets
	// it: two builds compared at their own half maximum would load their
	// shadows differently.
	rate := maxRate / 2
	if *shadowRate > 0 {
		rate = *shadowRate
	}
	roundsA, roundsB, err := pairedOpenLoop(plain.url, shadowed.url, m.body, rate, *p99Time)
	if err != nil {
		return err
	}
	la, lb := loadResult{lat: slices.Concat(roundsA...)}, loadResult{lat: slices.Concat(roundsB...)}
	drops2, mirrored2 := shadowCounts(shadowed.url)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "measure\tno shadows\t2 shadows\tratio\ttarget\t")
	fmt.Fprintf(tw, "max /predict/s (c=4)\t%.0f\t%.0f\t%.2f\t≥ 0.85\t\n", maxRate, median(with), median(with)/maxRate)
	fmt.Fprintf(tw, "p99 at %.0f req/s\t%v\t%v\t%.2f\t≤ 1.15\t\n", rate, la.p(99), lb.p(99), float64(lb.p(99))/float64(la.p(99)))
	fmt.Fprintf(tw, "p50 at %.0f req/s\t%v\t%v\t%.2f\t\t\n", rate, la.p(50), lb.p(50), float64(lb.p(50))/float64(la.p(50)))
	tw.Flush()
	lo, hi := quantileRatioInterval(roundsA, roundsB, 0.99, latencyBlock)
	fmt.Printf("p99 ratio 95%% interval, rounds resampled: %.2f–%.2f, so the ≤ 1.15 target is %s by this run\n", lo, hi, verdict(lo, hi, 1.15))
	fmt.Printf("(%d pairs of %v rounds in ABBA order, resampled in runs of %d)\n", len(roundsA), latencySlice, latencyBlock)
	fmt.Printf("shadow shed rate: %.1f%% at maximum load (%d shed, %d run live), %.1f%% at the fixed rate\n",
		pct(drops, drops+mirrored), drops, mirrored, pct(drops2-drops, drops2-drops+mirrored2-mirrored))
	if ss, err := scrape(shadowed.url); err == nil {
		fmt.Printf("(shed jobs are deferred and backfilled when idle, by default: %.0f backfilled, %.0f dropped for good)\n",
			ss.sum("understudy_shadow_offline_runs_total", "origin", "backfill"), ss.droppedForGood())
	}
	fmt.Println()
	return nil
}

// verdict says whether an interval lies wholly within an upper target.
func verdict(lo, hi, target float64) string {
	switch {
	case hi <= target:
		return "met"
	case lo > target:
		return "missed"
	}
	return "neither met nor missed"
}

// latencySlice is the length of one round of the fixed-rate latency
// comparison. Host stalls on a shared VM last from milliseconds to
// seconds; rounds this short put most of a stall's effect on both sides of
// a pair, so that it cancels in the ratio instead of widening it.
const latencySlice = 250 * time.Millisecond

// latencyBlock is how many consecutive pairs of rounds the bootstrap
// draws together, 4 s, so that a burst of a few seconds mostly falls
// inside one draw instead of counting as independent evidence.
const latencyBlock = 8

// quiesce waits until the server at url has no shadow jobs or rows
// queued and no deferred jobs left to backfill, so that work left from one
// round does not run in the other server's round: shadow work spilling
// into the rounds without shadows would hide its own cost. Backfill starts
// only after the server has been idle for --backfill-idle, so it would
// otherwise run in exactly the other server's round. A backtest is not
// waited for: it can take minutes (the lossless section pauses the other
// server instead).
func quiesce(url string) error {
	// A backlog of a few thousand jobs of a large model takes seconds.
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		ss, err := scrape(url)
		if err != nil {
			return err
		}
		if ss.sum("understudy_shadow_queue_depth")+ss.sum("understudy_store_queue_depth")+ss.sum("understudy_shadow_backlog_pending") == 0 {
			return nil
		}
	}
	return fmt.Errorf("%s: queues or backlog not empty after 60 s", url)
}

// pairedOpenLoop sends the same fixed rate to two servers in short
// alternating rounds for d in all, A B B A, so that a host that slows or
// speeds up steadily favours neither. Only one server has traffic or
// queued work at a time. Each server keeps its connections across rounds.
func pairedOpenLoop(urlA, urlB string, body []byte, rate float64, d time.Duration) (roundsA, roundsB [][]time.Duration, err error) {
	ca, err := newLoadClient(urlA+"/predict", body)
	if err != nil {
		return
	}
	defer ca.close()
	cb, err := newLoadClient(urlB+"/predict", body)
	if err != nil {
		return
	}
	defer cb.close()
	pairs := max(int(d/(2*latencySlice)), 2)
	for i := range pairs {
		first, second, url1, url2 := ca, cb, urlA, urlB
		if i%2 == 1 {
			first, second, url1, url2 = cb, ca, urlB, urlA
		}
		r1, err1 := openLoop(first, rate, latencySlice)
		err3 := quiesce(url1)
		r2, err2 := openLoop(second, rate, latencySlice)
		err4 := quiesce(url2)
		if err = errors.Join(err1, err2, err3, err4); err != nil {
			return
		}
		a, b := r1, r2
		if i%2 == 1 {
			a, b = r2, r1
		}
		roundsA, roundsB = append(roundsA, a.lat), append(roundsB, b.lat)
	}
	return
}

func pct(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

// shadowCounts reads shed and completed live shadow jobs from /metrics:
// shed are those dropped or deferred to the backlog.
func shadowCounts(url string) (shed, ran int64) {
	ss, err := scrape(url)
	if err != nil {
		return 0, 0
	}
	return int64(ss.sum("understudy_shadow_dropped_total") + ss.sum("understudy_shadow_deferred_total")),
		int64(ss.sum("understudy_model_runs_total", "role", "shadow"))
}

// benchLifecycle measures how long a file dropped into models/ takes to
// become a serving shadow, with the default settle interval.
func benchLifecycle(models []benchModel) error {
	srv, err := startServer(map[string][]byte{"primary": models[0].file}, "primary")
	if err != nil {
		return err
	}
	defer srv.stop()
	fmt.Println("== drop a file into models/ until it is a serving shadow (default --settle 1s) ==")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "model\tsize\tto shadow\tload\twarm-up\t")
	for i, m := range models {
		name := fmt.Sprintf("dropped-%d", i)
		tmp := filepath.Join(srv.dir, "models", "."+name+".tmp")
		if err := os.WriteFile(tmp, m.file, 0o644); err != nil {
			return err
		}
		start := time.Now()
		if err := os.Rename(tmp, filepath.Join(srv.dir, "models", name+".onnx")); err != nil {
			return err
		}
		var load, warm float64
		for {
			if time.Since(start) > time.Minute {
				return fmt.Errorf("%s never became a shadow", name)
			}
			// The generated model does not take the demo's inputs, so it
			// is loaded as incompatible; the time to load is the same.
			if role, l, w := modelRole(srv.url, name); role == "shadow" || role == "incompatible" {
				load, warm = l, w
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		fmt.Fprintf(tw, "%s\t%.1f MB\t%v\t%.1f ms\t%.1f ms\t\n", m.name, float64(len(m.file))/1e6, time.Since(start).Round(time.Millisecond), load, warm)
	}
	tw.Flush()
	fmt.Println()
	return nil
}

// benchSoak runs a constant load with two shadows and compares resident
// memory after one minute and at the end.
func benchSoak(m benchModel) error {
	shadows, err := shadowFiles(m)
	if err != nil {
		return err
	}
	files := map[string][]byte{"primary": m.file}
	for k, v := range shadows {
		files[k] = v
	}
	srv, err := startServer(files, "primary")
	if err != nil {
		return err
	}
	defer srv.stop()
	fmt.Printf("== memory under constant load for %v (%s, 2 shadows) ==\n", *soak, m.name)
	const rate = 1000.0
	lc, err := newLoadClient(srv.url+"/predict", m.body)
	if err != nil {
		return err
	}
	defer lc.close()
	start := time.Now()
	var at1 int64
	for elapsed := time.Duration(0); elapsed < *soak; elapsed = time.Since(start) {
		step := min(30*time.Second, *soak-elapsed)
		if _, err := openLoop(lc, rate, step); err != nil {
			return err
		}
		// Each step ends once its last answer is in, a hair before 30s
		// have passed; the second one is the one-minute mark.
		if at1 == 0 && time.Since(start) >= time.Minute-time.Second {
			at1 = procRSS(srv.cmd.Process.Pid)
			fmt.Printf("RSS after %v: %.1f MB\n", time.Since(start).Round(time.Second), float64(at1)/1e6)
		}
	}
	end := procRSS(srv.cmd.Process.Pid)
	fmt.Printf("RSS after %v: %.1f MB", time.Since(start).Round(time.Second), float64(end)/1e6)
	if at1 > 0 {
		fmt.Printf(" (%.1f%% of the 1-minute figure; target within 10%%)", 100*float64(end)/float64(at1))
	}
	fmt.Print("\n\n")
	return nil
}
