package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/pprof/profile"
)

// This file runs the cost section: it loads Understudy and the floor server
// in alternating windows while their CPU and heap profiles are taken, adds
// each sample to its stage (see attribute in cost.go), and prints the CPU
// and allocations of one request by stage beside the throughput without the
// profiler.

var (
	costTime     = flag.Duration("cost-time", 30*time.Second, "cost section: profiled load per server, in windows of up to 5s that alternate between the servers")
	costProfiles = flag.String("cost-profiles", "", "cost section: also save the CPU profiles in this directory, for go tool pprof")
	costLogLevel = flag.String("cost-log-level", "info", "cost section: the server's --log-level; at info, the default, it writes an access log line per request (to a file)")
)

// costClients is the closed loop's concurrency, where the throughput
// target is set.
const costClients = 16

// costRounds unprofiled rounds of costRoundTime per server give the
// throughput ratio: the median of the ratios of the rounds' pairs.
var (
	costRounds    = flag.Int("cost-rounds", 16, "cost section: unprofiled rounds per server for the throughput ratio, in A B B A order")
	costRoundTime = flag.Duration("cost-round-time", 500*time.Millisecond, "cost section: length of each unprofiled round")
)

// costWindow is the longest profiled window; the profile endpoint takes
// whole seconds.
const costWindow = 5 * time.Second

// costRun accumulates one server's profiled windows.
type costRun struct {
	label    string
	srv      *server
	debugURL string
	requests int
	elapsed  time.Duration
	procCPU  time.Duration // /proc's user+system time over the windows
	samples  int
	stages   [nStages]int64 // CPU ns from the profiles
	malloc   [nStages]int64 // of which under runtime.mallocgc*
	assist   int64          // CPU ns in GC assists, over all stages
	unknown  map[string]int64
	// From the heap profile's allocation counts before and after each
	// window; the runtime samples one allocation per 512 KiB and scales.
	allocs, allocBytes [nStages]int64
}

// window loads the server for secs while its CPU profile is taken.
func (r *costRun) window(body []byte, secs int, save string) error {
	type result struct {
		p   *profile.Profile
		raw []byte
		err error
	}
	a0, err := fetchAllocs(r.debugURL)
	if err != nil {
		return fmt.Errorf("%s: allocations: %w", r.label, err)
	}
	done := make(chan result, 1)
	go func() {
		p, raw, err := fetchProfile(r.debugURL, secs)
		done <- result{p, raw, err}
	}()
	pid := r.srv.cmd.Process.Pid
	before := procCPU(pid)
	start := time.Now()
	res, err := closedLoop(r.srv.url+"/predict", body, costClients, time.Duration(secs)*time.Second)
	r.elapsed += time.Since(start)
	r.procCPU += procCPU(pid) - before
	got := <-done
	// Nothing loads the server between these snapshots and the window.
	a1, err1 := fetchAllocs(r.debugURL)
	if err1 != nil {
		return fmt.Errorf("%s: allocations: %w", r.label, err1)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", r.label, err)
	}
	if got.err != nil {
		return fmt.Errorf("%s: profile: %w", r.label, got.err)
	}
	if save != "" {
		if err := os.WriteFile(save, got.raw, 0o644); err != nil {
			return err
		}
	}
	r.requests += res.n
	r.add(got.p)
	r.addAllocs(a1, 1)
	r.addAllocs(a0, -1)
	return nil
}

// addAllocs adds a heap profile's cumulative allocations by stage, times
// sign: the difference of two snapshots is what was allocated between.
func (r *costRun) addAllocs(p *profile.Profile, sign int64) {
	objects, space := -1, -1
	for i, st := range p.SampleType {
		switch st.Type {
		case "alloc_objects":
			objects = i
		case "alloc_space":
			space = i
		}
	}
	if objects < 0 || space < 0 {
		return
	}
	for _, s := range p.Sample {
		st := attribute(sampleFrames(s))
		r.allocs[st] += sign * s.Value[objects]
		r.allocBytes[st] += sign * s.Value[space]
	}
}

func fetchAllocs(debugURL string) (*profile.Profile, error) {
	raw, err := get(debugURL + "/debug/pprof/allocs")
	if err != nil {
		return nil, err
	}
	return profile.ParseData(raw)
}

func (r *costRun) add(p *profile.Profile) {
	cpu, count := -1, -1
	for i, st := range p.SampleType {
		switch st.Type {
		case "cpu":
			cpu = i
		case "samples":
			count = i
		}
	}
	if cpu < 0 {
		return
	}
	for _, s := range p.Sample {
		v := s.Value[cpu]
		frames := sampleFrames(s)
		st := attribute(frames)
		if count >= 0 {
			r.samples += int(s.Value[count])
		}
		r.stages[st] += v
		if slices.ContainsFunc(frames, func(f string) bool { return strings.HasPrefix(f, "runtime.mallocgc") }) {
			r.malloc[st] += v
		}
		if slices.Contains(frames, "runtime.gcAssistAlloc") {
			r.assist += v
		}
		if st == stOther {
			// The innermost function that is not the runtime's says what
			// the patterns missed.
			name := "(runtime only)"
			if i := slices.IndexFunc(frames, func(f string) bool { return !isRuntime(f) }); i >= 0 {
				name = frames[i]
			}
			if r.unknown == nil {
				r.unknown = map[string]int64{}
			}
			r.unknown[name] += v
		}
	}
}

// perRequest returns ns per completed request in µs.
func (r *costRun) perRequest(ns int64) float64 {
	if r.requests == 0 {
		return 0
	}
	return float64(ns) / float64(r.requests) / 1e3
}

func (r *costRun) total() int64 {
	var t int64
	for _, v := range r.stages {
		t += v
	}
	return t
}

func fetchProfile(debugURL string, secs int) (*profile.Profile, []byte, error) {
	c := &http.Client{Timeout: time.Duration(secs)*time.Second + 30*time.Second}
	resp, err := c.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", debugURL, secs))
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(raw))
	}
	p, err := profile.ParseData(raw)
	return p, raw, err
}

var nonWord = regexp.MustCompile(`[^a-z0-9]+`)

// benchCost profiles Understudy and the floor server under the same load,
// in alternating windows, and prints the CPU of one request by stage.
func benchCost(m benchModel) error {
	debug, err := freeAddr()
	if err != nil {
		return err
	}
	srv, err := launchServer(map[string][]byte{"primary": m.file}, "primary", true, "--log-level", *costLogLevel, "--debug-addr", debug)
	if err != nil {
		return err
	}
	defer srv.stop()
	floorDebug, err := freeAddr()
	if err != nil {
		return err
	}
	floor, err := startFloor(m.file, "-floor-debug-addr", floorDebug)
	if err != nil {
		return err
	}
	defer floor.stop()
	ours := &costRun{label: "Understudy", srv: srv, debugURL: "http://" + debug}
	bare := &costRun{label: "bare server", srv: floor, debugURL: "http://" + floorDebug}
	runs := []*costRun{ours, bare}

	fmt.Printf("== CPU of one POST /predict by stage, from CPU profiles: %s ==\n", m.name)
	for _, r := range runs {
		if _, err := closedLoop(r.srv.url+"/predict", m.body, costClients, time.Second); err != nil {
			return fmt.Errorf("%s warm-up: %w", r.label, err)
		}
	}
	windows := max(1, int((*costTime+costWindow-1)/costWindow))
	secs := max(1, int((*costTime/time.Duration(windows)+time.Second/2)/time.Second))
	slug := strings.Trim(nonWord.ReplaceAllString(strings.ToLower(m.name), "-"), "-")
	if *costProfiles != "" {
		if err := os.MkdirAll(*costProfiles, 0o755); err != nil {
			return err
		}
	}
	var windowRatios []float64
	for i := range windows {
		// ABBA, so that a host that drifts favours neither.
		order := runs
		if i%2 == 1 {
			order = []*costRun{bare, ours}
		}
		rates := map[*costRun]float64{}
		for _, r := range order {
			save := ""
			if *costProfiles != "" {
				who := "understudy"
				if r == bare {
					who = "bare"
				}
				save = filepath.Join(*costProfiles, fmt.Sprintf("%s-%s-%d.pb.gz", slug, who, i+1))
			}
			n0, e0 := r.requests, r.elapsed
			if err := r.window(m.body, secs, save); err != nil {
				return err
			}
			rates[r] = float64(r.requests-n0) / (r.elapsed - e0).Seconds()
		}
		windowRatios = append(windowRatios, rates[ours]/rates[bare])
	}

	// Throughput without the profiler, in alternating rounds as the serve
	// section measures it, but more of them and in A B B A order: on this
	// host the speed drifts within seconds, and 5 rounds gave ratios 0.1
	// apart for the same two builds.
	var ratios, oursRates, bareRates []float64
	for i := range *costRounds {
		order := []string{srv.url, floor.url}
		if i%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		var rate [2]float64
		for j, u := range order {
			res, err := closedLoop(u+"/predict", m.body, costClients, *costRoundTime)
			if err != nil {
				return err
			}
			rate[j] = res.rate
		}
		if i%2 == 1 {
			rate[0], rate[1] = rate[1], rate[0]
		}
		oursRates, bareRates, ratios = append(oursRates, rate[0]), append(bareRates, rate[1]), append(ratios, rate[0]/rate[1])
	}

	fmt.Printf("(%d clients in a closed loop; %d windows of %ds per server, alternating; Understudy at --log-level %s, every request stored;\n",
		costClients, windows, secs, *costLogLevel)
	fmt.Printf(" %d and %d requests, %d and %d samples; each sample goes to one stage, see attribute in cost.go; malloc: CPU under runtime.mallocgc, GC assists included;\n allocations from the heap profile's sampled counts before and after each window)\n",
		ours.requests, bare.requests, ours.samples, bare.samples)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "stage\tUnderstudy µs/req\tof which malloc\tbare server µs/req\tadded\tUnderstudy allocs/req\tbytes/req\tbare allocs/req\t\n")
	us := func(v float64) string { return fmt.Sprintf("%.2f", v) }
	// perReq is a count per request; the heap profile's are estimates.
	perReq := func(r *costRun, v int64) string { return fmt.Sprintf("%.1f", float64(v)/float64(max(1, r.requests))) }
	for st := range nStages {
		o, b := ours.perRequest(ours.stages[st]), bare.perRequest(bare.stages[st])
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%+.2f\t%s\t%s\t%s\t\n", stageNames[st], us(o), us(ours.perRequest(ours.malloc[st])), us(b), o-b,
			perReq(ours, ours.allocs[st]), perReq(ours, ours.allocBytes[st]), perReq(bare, bare.allocs[st]))
	}
	to, tb := ours.perRequest(ours.total()), bare.perRequest(bare.total())
	sum := func(xs [nStages]int64) int64 {
		var t int64
		for _, v := range xs {
			t += v
		}
		return t
	}
	fmt.Fprintf(tw, "sum of stages (profile)\t%s\t%s\t%s\t%+.2f\t%s\t%s\t%s\t\n", us(to), us(ours.perRequest(sum(ours.malloc))), us(tb), to-tb,
		perReq(ours, sum(ours.allocs)), perReq(ours, sum(ours.allocBytes)), perReq(bare, sum(bare.allocs)))
	po, pb := ours.perRequest(int64(ours.procCPU)), bare.perRequest(int64(bare.procCPU))
	fmt.Fprintf(tw, "process CPU (/proc, same windows)\t%s\t\t%s\t%+.2f\t\t\t\t\n", us(po), us(pb), po-pb)
	tw.Flush()
	fmt.Printf("profile ÷ /proc: Understudy %.2f, bare server %.2f; GC assists, charged to the stages that allocated: %.2f µs/req (Understudy), %.2f (bare)\n",
		to/po, tb/pb, ours.perRequest(ours.assist), bare.perRequest(bare.assist))
	for _, r := range runs {
		if r.unknown == nil || float64(r.stages[stOther]) < 0.02*float64(r.total()) {
			continue
		}
		type kv struct {
			name string
			ns   int64
		}
		var top []kv
		for k, v := range r.unknown {
			top = append(top, kv{k, v})
		}
		slices.SortFunc(top, func(a, b kv) int { return int(b.ns - a.ns) })
		var parts []string
		for _, e := range top[:min(5, len(top))] {
			parts = append(parts, fmt.Sprintf("%s %.2f", e.name, r.perRequest(e.ns)))
		}
		fmt.Printf("%s's other, by innermost non-runtime function (µs/req): %s\n", r.label, strings.Join(parts, "; "))
	}
	fmt.Printf("throughput at %d clients, without the profiler (median of %d alternating rounds of %v): Understudy %.0f/s, bare server %.0f/s, ratio %.2f (target ≥ 0.8); in the profiled windows %.2f\n",
		costClients, *costRounds, *costRoundTime, median(oursRates), median(bareRates), median(ratios), median(windowRatios))
	slices.Sort(ratios)
	fmt.Printf("the rounds' ratios: lowest %.2f, quartiles %.2f %.2f %.2f, highest %.2f\n", ratios[0], ratios[len(ratios)/4], median(ratios), ratios[len(ratios)*3/4], ratios[len(ratios)-1])
	fmt.Printf("CPU added per request: %.1f µs by /proc, %.1f µs by the profiles (target ≤ 15 µs)\n", po-pb, to-tb)
	printNoModelFloor(floor, m.body, costClients, median(oursRates))
	if *costProfiles != "" {
		fmt.Printf("profiles saved in %s as %s-{understudy,bare}-N.pb.gz\n", *costProfiles, slug)
	}
	fmt.Println()
	return nil
}
