package main

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/prometheus/procfs"
)

// The ab section compares two builds of the server, -bin (A) and -bin-b
// (B), with the bare server as the common floor: the three take turns in
// short rounds, in a rotating order, so that the host's drifting speed
// falls on all of them alike. It is how issue 18's changes were judged: a
// profile's per-stage rows tell where the CPU goes, but two profiled runs
// minutes apart differ by more than most single changes.

var (
	binB     = flag.String("bin-b", "", "ab section: the second server binary, compared with -bin")
	abRounds = flag.Int("ab-rounds", 30, "ab section: rounds per server")
	abClient = flag.Int("ab-clients", 16, "ab section: closed-loop clients")
)

func benchAB(m benchModel) error {
	if *binB == "" {
		return fmt.Errorf("the ab section needs -bin-b, the build to compare with -bin")
	}
	launch := func(bin string) (*server, error) {
		saved := *binPath
		*binPath = bin
		defer func() { *binPath = saved }()
		// The default configuration, as the cost section's: every request
		// stored, an access log line each, to a file.
		return launchServer(map[string][]byte{"primary": m.file}, "primary", true, "--log-level", "info")
	}
	a, err := launch(*binPath)
	if err != nil {
		return err
	}
	defer a.stop()
	b, err := launch(*binB)
	if err != nil {
		return err
	}
	defer b.stop()
	floor, err := startFloor(m.file)
	if err != nil {
		return err
	}
	defer floor.stop()
	servers := []*server{a, b, floor}
	names := []string{"A " + *binPath, "B " + *binB, "bare server"}
	for _, s := range servers {
		if _, err := closedLoop(s.url+"/predict", m.body, *abClient, time.Second); err != nil {
			return err
		}
	}
	const round = 500 * time.Millisecond
	rates := make([][]float64, 3)
	cpu := make([][]float64, 3)    // µs of server CPU per request
	client := make([][]float64, 3) // µs of the load generator's CPU per request
	idle := make([][]float64, 3)   // the machine's idle share of CPU time
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return err
	}
	var aBare, bBare, bA, cpuAdiff, cpuBdiff []float64
	orders := [][]int{{0, 1, 2}, {2, 1, 0}, {1, 2, 0}, {0, 2, 1}, {2, 0, 1}, {1, 0, 2}}
	for i := range *abRounds {
		var rate, perReq, perReqClient, idleShare [3]float64
		for _, k := range orders[i%len(orders)] {
			pid := servers[k].cmd.Process.Pid
			c0, self0 := procCPU(pid), selfCPU()
			st0, err := fs.Stat()
			if err != nil {
				return err
			}
			res, err := closedLoop(servers[k].url+"/predict", m.body, *abClient, round)
			if err != nil {
				return err
			}
			c1, self1 := procCPU(pid), selfCPU()
			st1, err := fs.Stat()
			if err != nil {
				return err
			}
			n := max(1, res.rate*round.Seconds())
			rate[k] = res.rate
			perReq[k] = float64((c1 - c0).Microseconds()) / n
			perReqClient[k] = float64((self1 - self0).Microseconds()) / n
			idleShare[k] = idleBetween(st0.CPUTotal, st1.CPUTotal)
		}
		for k := range servers {
			rates[k], cpu[k] = append(rates[k], rate[k]), append(cpu[k], perReq[k])
			client[k], idle[k] = append(client[k], perReqClient[k]), append(idle[k], idleShare[k])
		}
		aBare, bBare, bA = append(aBare, rate[0]/rate[2]), append(bBare, rate[1]/rate[2]), append(bA, rate[1]/rate[0])
		cpuAdiff, cpuBdiff = append(cpuAdiff, perReq[0]-perReq[2]), append(cpuBdiff, perReq[1]-perReq[2])
	}
	fmt.Printf("== A/B: two builds and the bare server, %s, %d clients, %d rounds of %v each, rotating order ==\n", m.name, *abClient, *abRounds, round)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "server\treq/s (median)\tserver CPU µs/req (median)\tclient CPU µs/req\tmachine idle\t\n")
	for k := range servers {
		fmt.Fprintf(tw, "%s\t%.0f\t%.1f\t%.1f\t%.1f%%\t\n", names[k], median(rates[k]), median(cpu[k]), median(client[k]), 100*median(idle[k]))
	}
	tw.Flush()
	q := func(xs []float64) string {
		s := slices.Clone(xs)
		slices.Sort(s)
		return fmt.Sprintf("%.2f (quartiles %.2f–%.2f)", median(s), s[len(s)/4], s[len(s)*3/4])
	}
	fmt.Printf("throughput ÷ bare server, per round: A %s, B %s; B ÷ A %s\n", q(aBare), q(bBare), q(bA))
	fmt.Printf("server CPU added over the bare server, per round: A %s µs, B %s µs\n", q(cpuAdiff), q(cpuBdiff))
	return nil
}

// idleBetween is the share of all CPU time that was idle (or waiting for
// I/O) between two readings of /proc/stat: with every client in a closed
// loop, time that neither the server nor the client used.
func idleBetween(a, b procfs.CPUStat) float64 {
	total := func(c procfs.CPUStat) float64 {
		return c.User + c.Nice + c.System + c.IRQ + c.SoftIRQ + c.Idle + c.Iowait + c.Steal
	}
	d := total(b) - total(a)
	if d <= 0 {
		return 0
	}
	return (b.Idle + b.Iowait - a.Idle - a.Iowait) / d
}
