package main

import (
	"fmt"
	"syscall"

	"github.com/prometheus/procfs"
)

// stealMeter measures how much of the machine's CPU time the hypervisor
// gave to other guests (steal) while a section ran. On this shared VM it
// moves from near 0 to a quarter of all CPU time, and latencies with it:
// figures from a run with high steal say more about the host than about
// Understudy.
//
// It also measures the CPU time that processes other than the bench and
// the servers it started took: other people's builds and tests on the same
// VM compete for its two cores just as steal does.
type stealMeter struct {
	fs    procfs.FS
	start procfs.CPUStat
	own   float64 // CPU seconds of this process and its waited-for children
	ok    bool
}

// ownCPU is the CPU time of this process and of its children that have
// been waited for: every server a section started, once it is stopped.
func ownCPU() float64 {
	var self, children syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
	sec := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return sec(self.Utime) + sec(self.Stime) + sec(children.Utime) + sec(children.Stime)
}

func startSteal() stealMeter {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return stealMeter{}
	}
	st, err := fs.Stat()
	if err != nil {
		return stealMeter{}
	}
	return stealMeter{fs: fs, start: st.CPUTotal, own: ownCPU(), ok: true}
}

// share returns steal, and the CPU time of other processes, as fractions
// of all CPU time since start.
func (m stealMeter) share() (steal, others float64, ok bool) {
	if !m.ok {
		return 0, 0, false
	}
	st, err := m.fs.Stat()
	if err != nil {
		return 0, 0, false
	}
	busy := func(c procfs.CPUStat) float64 {
		// Guest time is already counted in user time.
		return c.User + c.Nice + c.System + c.IRQ + c.SoftIRQ
	}
	total := func(c procfs.CPUStat) float64 { return busy(c) + c.Idle + c.Iowait + c.Steal }
	d := total(st.CPUTotal) - total(m.start)
	if d <= 0 {
		return 0, 0, false
	}
	others = max(0, busy(st.CPUTotal)-busy(m.start)-(ownCPU()-m.own)) / d
	return (st.CPUTotal.Steal - m.start.Steal) / d, others, true
}

// report prints the steal share of the section just run.
func (m stealMeter) report() {
	if s, o, ok := m.share(); ok {
		fmt.Printf("(host steal during this section: %.1f%% of CPU time; above a few percent, latencies and rates say more about the host than about Understudy)\n", 100*s)
		fmt.Printf("(other processes on this machine during this section: %.1f%% of CPU time, which the servers measured had to share)\n\n", 100*o)
	}
}
