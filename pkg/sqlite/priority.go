package sqlite

import (
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// lowPriority runs the writer's functions, one at a time, on an OS thread
// of lower scheduling priority. The writer waits for each function that
// thread starts, so the one write connection is never used by both at once.
//
// In the SCHED_IDLE class the thread runs only on spare CPU and yields the
// moment a request needs it, but when the cores are saturated it may not
// get to run for seconds. The writer must not wait for that:
//   - a function the thread has not started within handoff is taken back
//     and run on the writer's own thread;
//   - a function it started but has not finished within handoff holds the
//     write lock, so the writer lends the thread its own priority until it
//     finishes (priority inheritance, by hand).
type lowPriority struct {
	run     chan *lowTask
	tid     int
	idle    bool
	nice    int
	handoff time.Duration
	// takenBack counts functions the writer ran itself; boosts, functions
	// the thread finished at the writer's priority.
	takenBack, boosts atomic.Int64
}

// lowTask is one function handed to the thread; whichever side moves state
// from waiting first runs it.
type lowTask struct {
	f     func()
	state atomic.Int32
	done  chan struct{}
}

const (
	taskWaiting int32 = iota
	taskStarted
	taskTakenBack
)

// startLowPriority starts the thread. It returns an error, and no thread,
// if the thread's priority cannot be lowered or raised back: raising it
// from SCHED_IDLE or a nice value takes CAP_SYS_NICE (or RLIMIT_NICE), and
// a thread that cannot be raised could hold the write lock for seconds.
func startLowPriority(idle bool, nice int, handoff time.Duration) (*lowPriority, error) {
	// Buffered: tasks taken back stay queued until the thread runs again,
	// and the writer must never block on handing one over.
	lp := &lowPriority{run: make(chan *lowTask, 64), idle: idle, nice: nice, handoff: handoff}
	ready := make(chan error)
	go func() {
		// Never unlocked: the thread exits with the goroutine, so its
		// priority never passes to other goroutines.
		runtime.LockOSThread()
		lp.tid = unix.Gettid()
		err := lp.lower()
		if err == nil {
			// The writer's boost, tried once now, so that it cannot fail
			// when a commit depends on it.
			if err = lp.raise(); err == nil {
				err = lp.lower()
			}
		}
		ready <- err
		if err != nil {
			return
		}
		for t := range lp.run {
			if t.state.CompareAndSwap(taskWaiting, taskStarted) {
				t.f()
				close(t.done)
			}
		}
	}()
	if err := <-ready; err != nil {
		return nil, err
	}
	return lp, nil
}

// lower puts the thread in its low-priority class.
func (lp *lowPriority) lower() error {
	if lp.idle {
		return unix.SchedSetAttr(lp.tid, &unix.SchedAttr{Policy: unix.SCHED_IDLE}, 0)
	}
	return unix.Setpriority(unix.PRIO_PROCESS, lp.tid, lp.nice)
}

// raise gives the thread the writer's normal priority.
func (lp *lowPriority) raise() error {
	if lp.idle {
		return unix.SchedSetAttr(lp.tid, &unix.SchedAttr{Policy: unix.SCHED_NORMAL}, 0)
	}
	return unix.Setpriority(unix.PRIO_PROCESS, lp.tid, 0)
}

// do runs f on the thread, or on the calling thread if the thread has not
// started it within the handoff time.
func (lp *lowPriority) do(f func()) {
	t := &lowTask{f: f, done: make(chan struct{})}
	select {
	case lp.run <- t:
	default:
		lp.takenBack.Add(1)
		f()
		return
	}
	timer := time.NewTimer(lp.handoff)
	defer timer.Stop()
	select {
	case <-t.done:
		return
	case <-timer.C:
	}
	if t.state.CompareAndSwap(taskWaiting, taskTakenBack) {
		lp.takenBack.Add(1)
		f()
		return
	}
	// Started: the thread holds the write connection, and everything the
	// writer does next waits for it. Give it more time at its own
	// priority, then the writer's until it is done. Only the writer hands
	// out tasks, so the thread is idle again when it is lowered back.
	timer.Reset(lp.handoff)
	select {
	case <-t.done:
		return
	case <-timer.C:
	}
	if lp.raise() == nil {
		lp.boosts.Add(1)
		<-t.done
		lp.lower()
		return
	}
	<-t.done
}

// ShadowWriterTID returns the OS thread id that commits shadow results, or
// 0 when they are committed on the writer's own thread.
func (db *DB) ShadowWriterTID() int {
	if db.low == nil {
		return 0
	}
	return db.low.tid
}
