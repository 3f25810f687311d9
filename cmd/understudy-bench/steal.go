package main

import (
	"fmt"

	"github.com/prometheus/procfs"
)

// stealMeter measures how much of the machine's CPU time the hypervisor
// gave to other guests (steal) while a section ran. On this shared VM it
// moves from near 0 to a quarter of all CPU time, and latencies with it:
// figures from a run with high steal say more about the host than about
// Understudy.
type stealMeter struct {
	fs    procfs.FS
	start procfs.CPUStat
	ok    bool
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
	return stealMeter{fs: fs, start: st.CPUTotal, ok: true}
}

// share returns steal as a fraction of all CPU time since start.
func (m stealMeter) share() (float64, bool) {
	if !m.ok {
		return 0, false
	}
	st, err := m.fs.Stat()
	if err != nil {
		return 0, false
	}
	total := func(c procfs.CPUStat) float64 {
		// Guest time is already counted in user time.
		return c.User + c.Nice + c.System + c.Idle + c.Iowait + c.IRQ + c.SoftIRQ + c.Steal
	}
	d := total(st.CPUTotal) - total(m.start)
	if d <= 0 {
		return 0, false
	}
	return (st.CPUTotal.Steal - m.start.Steal) / d, true
}

// report prints the steal share of the section just run.
func (m stealMeter) report() {
	if s, ok := m.share(); ok {
		fmt.Printf("(host steal during this section: %.1f%% of CPU time; above a few percent, latencies and rates say more about the host than about Understudy)\n\n", 100*s)
	}
}
