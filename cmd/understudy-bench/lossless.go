package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// This file is the lossless section: how many live shadow runs each
// shedding rule gets at half the maximum load, and at what cost to the
// primary's p99 (the coverage table); then, in lossless_offline.go, how
// fast a backtest runs and what a backtest or backfill costs the primary.

// coverageRound is the length of one round of one configuration of the
// coverage table. Nine servers take turns; rounds much shorter than this
// spend more time quiescing than measuring.
const coverageRound = time.Second

// covConfig is one server of the coverage table.
type covConfig struct {
	shadows int
	delay   time.Duration // --shed-delay; 0 is the old rule, by requests in flight
	srv     *server
	lc      *loadClient
	rounds  [][]time.Duration
	sent    int64
	start   samples // /metrics after warm-up
}

func (c *covConfig) rule() string {
	switch {
	case c.shadows == 0:
		return "-"
	case c.delay == 0:
		return "in flight (old)"
	}
	return "delay " + c.delay.String()
}

// shadowNames are the shadows of the coverage table's servers: one, or two
// of the same shape and cost (other seeds of the primary's shape).
var shadowNames = []string{"shadow-a", "shadow-b"}

func benchLossless() error {
	all, err := benchModels()
	if err != nil {
		return err
	}
	pick := func(prefix string) benchModel {
		i := slices.IndexFunc(all, func(m benchModel) bool { return strings.HasPrefix(m.name, prefix) })
		return all[i]
	}
	medium, tiny := pick("medium"), pick("tiny")
	maxRate, err := losslessCoverage(medium)
	if err != nil {
		return err
	}
	if err := backtestSpeed(tiny); err != nil {
		return err
	}
	if err := backtestCost(medium, maxRate/2); err != nil {
		return err
	}
	return backfillCost(medium, maxRate)
}

func parseDelays(s string) ([]time.Duration, error) {
	var out []time.Duration
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		d, err := time.ParseDuration(f)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("-shed-delays: %q is not a positive duration", f)
		}
		out = append(out, d)
	}
	return out, nil
}

// losslessCoverage prints the coverage table and returns the no-shadow
// maximum rate it measured.
func losslessCoverage(m benchModel) (float64, error) {
	delays, err := parseDelays(*shedDelays)
	if err != nil {
		return 0, err
	}
	shadows, err := shadowFiles(m)
	if err != nil {
		return 0, err
	}
	configs := []*covConfig{{shadows: 0}}
	for _, n := range []int{1, 2} {
		for _, d := range append([]time.Duration{0}, delays...) {
			configs = append(configs, &covConfig{shadows: n, delay: d})
		}
	}
	defer func() {
		for _, c := range configs {
			if c.lc != nil {
				c.lc.close()
			}
			if c.srv != nil {
				c.srv.stop()
			}
		}
	}()
	for _, c := range configs {
		files := map[string][]byte{"primary": m.file}
		for _, name := range shadowNames[:c.shadows] {
			files[name] = shadows[name]
		}
		// No backlog: a shed job is dropped, so every shadow run counted
		// is a live one; no backtest either, so that the runs are all
		// from the rounds.
		if c.srv, err = startServer(files, "primary", "--backfill-backlog", "0", "--backtest-rows", "0", "--shed-delay", c.delay.String()); err != nil {
			return 0, err
		}
		if c.lc, err = newLoadClient(c.srv.url+"/predict", m.body); err != nil {
			return 0, err
		}
	}
	none := configs[0]
	fmt.Printf("== live shadow coverage by shedding rule: %s, %d servers in turn ==\n", m.name, len(configs))
	var rates []float64
	for range rounds {
		r, err := closedLoop(none.srv.url+"/predict", m.body, 4, *duration/rounds)
		if err != nil {
			return 0, err
		}
		rates = append(rates, r.rate)
	}
	maxRate := median(rates)
	rate := maxRate / 2
	// One unrecorded round each warms connections and sessions.
	for _, c := range configs {
		if _, err := openLoop(c.lc, rate, coverageRound/4); err != nil {
			return 0, err
		}
		if err := quiesce(c.srv.url); err != nil {
			return 0, err
		}
		if c.start, err = scrape(c.srv.url); err != nil {
			return 0, err
		}
	}
	// Each turn runs every server once in a fresh random order, so that no
	// server is always the one after a noisy neighbour's burst; the rounds
	// of a turn are paired with the no-shadow server's round of that turn.
	turns := max(3, int(*losslessTime/(time.Duration(len(configs))*coverageRound)))
	r := rand.New(rand.NewPCG(7, 11))
	for range turns {
		for _, i := range r.Perm(len(configs)) {
			c := configs[i]
			res, err := openLoop(c.lc, rate, coverageRound)
			if err != nil {
				return 0, err
			}
			c.rounds = append(c.rounds, res.lat)
			c.sent += int64(res.n)
			if err := quiesce(c.srv.url); err != nil {
				return 0, err
			}
		}
	}
	p99none := roundsP(none.rounds, 99)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "shadows\trule\tp50\tp99\tp99 ÷ none\t95% interval\tmedian of turns\tcoverage per shadow\ttargets\t")
	for _, c := range configs {
		p50, p99 := roundsP(c.rounds, 50), roundsP(c.rounds, 99)
		ratio := float64(p99) / float64(p99none)
		interval, perTurn, p99Target := "-", "-", ""
		if c != none {
			lo, hi := quantileRatioInterval(none.rounds, c.rounds, 0.99, 1)
			interval, p99Target = fmt.Sprintf("%.2f–%.2f", lo, hi), verdict(lo, hi, 1.15)
			perTurn = fmt.Sprintf("%.2f", medianRatio(none.rounds, c.rounds, 99))
		}
		end, err := scrape(c.srv.url)
		if err != nil {
			return 0, err
		}
		var covs []string
		minCov, maxCov := 100.0, 0.0
		for _, name := range shadowNames[:c.shadows] {
			runs := end.sum("understudy_model_runs_total", "model", name, "role", "shadow") -
				c.start.sum("understudy_model_runs_total", "model", name, "role", "shadow")
			cov := 100 * runs / float64(c.sent)
			covs = append(covs, fmt.Sprintf("%.1f%%", cov))
			minCov, maxCov = min(minCov, cov), max(maxCov, cov)
		}
		// The coverage targets are checked on the figures, the p99 bound
		// on the interval: on this machine it is often neither met nor
		// missed by one run.
		target := "-"
		switch c.shadows {
		case 1:
			target = fmt.Sprintf("coverage %s, p99 %s", metOrNot(minCov >= 90), p99Target)
		case 2:
			target = fmt.Sprintf("coverage %s, p99 %s", metOrNot(minCov >= 50 && maxCov-minCov <= 10), p99Target)
		}
		fmt.Fprintf(tw, "%d\t%s\t%v\t%v\t%.2f\t%s\t%s\t%s\t%s\t\n", c.shadows, c.rule(), p50, p99, ratio, interval, perTurn, strings.Join(covs, " / "), target)
	}
	tw.Flush()
	fmt.Printf("at %.0f req/s, half the no-shadow maximum of %.0f (c=4); %d turns of %v rounds; --backfill-backlog 0, so coverage is live runs ÷ requests sent\n",
		rate, maxRate, turns, coverageRound)
	fmt.Println("targets: 1 shadow: coverage ≥ 90% with p99 ≤ 1.15 × none; 2 equal shadows: ≥ 50% each, within 10 points, p99 ≤ 1.15 × none")
	fmt.Println("(p99 target by the 95% interval of turns resampled; the median of turns is the median over turns of the per-turn p99 ratio, which one stall moves by one place)")
	fmt.Println()
	return maxRate, nil
}

func metOrNot(ok bool) string {
	if ok {
		return "met"
	}
	return "missed"
}

// medianRatio is the median over pairs of rounds of b's q-th percentile
// over a's: a stall that wrecks one round moves it by one place, where it
// can set the pooled p99 of a side on its own.
func medianRatio(a, b [][]time.Duration, q float64) float64 {
	var rs []float64
	for i := range min(len(a), len(b)) {
		rs = append(rs, ratioOf(loadResult{lat: slices.Clone(a[i])}.p(q), loadResult{lat: slices.Clone(b[i])}.p(q)))
	}
	return median(rs)
}

// roundsP is the q-th percentile of rounds pooled.
func roundsP(rounds [][]time.Duration, q float64) time.Duration {
	return loadResult{lat: slices.Concat(rounds...)}.p(q)
}

func ratioOf(a, b time.Duration) float64 {
	if a == 0 {
		return math.NaN()
	}
	return float64(b) / float64(a)
}
