package sqlite_test

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/understudy-ml/understudy/pkg/sqlite"
)

// These tests are about the shadow-results thread of lower priority
// (priority.go): what it commits, its checkpoints, and how the writer takes
// its work back when it is starved or stalled.

// Ensure that with ShadowNice or ShadowIdle, shadow results are committed
// on a thread of that priority, every row of every kind is still written
// exactly once, and the writer's own thread keeps its priority.
func TestShadowResultsOnLowPriorityThread(t *testing.T) {
	for _, tc := range []struct {
		name         string
		opts         sqlite.Options
		nice, policy string // fields of /proc/…/stat; policy 5 is SCHED_IDLE
	}{
		{"nice", sqlite.Options{BatchSize: 50, ShadowNice: 10}, "10", "0"},
		{"idle", sqlite.Options{BatchSize: 50, ShadowIdle: true}, "0", "5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, _ := openDB(t, tc.opts)
			tid := db.ShadowWriterTID()
			if tid == 0 {
				t.Fatalf("no shadow-results thread with %+v", tc.opts)
			}
			stat, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/stat", tid))
			if err != nil {
				t.Fatal(err)
			}
			// Fields 19 and 41 are the nice value and the policy, the 17th
			// and 39th after the command's ")".
			f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
			if f[16] != tc.nice || f[38] != tc.policy {
				t.Errorf("shadow-results thread nice %s policy %s, want %s and %s", f[16], f[38], tc.nice, tc.policy)
			}
			at := time.Now()
			const n = 777
			for i := range n {
				p, s := sqlite.SamplePair(fmt.Sprint(i), at)
				db.WritePrediction(p)
				db.WriteShadowResult(s)
				db.CountSkips("s", "v1", at, 1, 0)
			}
			flush(t, db)
			gotP, gotS := counts(t, db)
			st := db.Stats()
			if gotP != n || gotS != n || st.Predictions.Written != n || st.ShadowResults.Written != n || st.Skips.Written != n {
				t.Errorf("rows %d/%d, written %d/%d/%d; want %d of each", gotP, gotS, st.Predictions.Written, st.ShadowResults.Written, st.Skips.Written, n)
			}
			if own, _ := unix.Getpriority(unix.PRIO_PROCESS, 0); own != 20 {
				// Getpriority returns 20 - nice.
				t.Errorf("the test's own thread has nice %d, want 0", 20-own)
			}
		})
	}
}

// Ensure that with a shadow-results thread, the write-ahead log is copied
// back into the database on that thread, and often enough that it stays a
// small fraction of the data written: SQLite's own checkpoints are off.
func TestCheckpointsRunOnTheShadowThread(t *testing.T) {
	db, path := openDB(t, sqlite.Options{BatchSize: 50, ShadowIdle: true, CheckpointEvery: 20 * time.Millisecond})
	at := time.Now()
	const rounds, each = 40, 100
	for r := range rounds {
		writePairs(db, fmt.Sprint(r, "-"), each, at)
		flush(t, db)
		time.Sleep(25 * time.Millisecond)
	}
	flush(t, db)
	st := db.ThreadStats()
	if st.Checkpoints < rounds/4 {
		t.Errorf("%d checkpoints in %d rounds 25ms apart, want one about every 20ms", st.Checkpoints, rounds)
	}
	// A commit the thread had not started in time is run by the writer,
	// checkpoint included; only without those must it be the thread's.
	if tid := db.CheckpointTID(); st.ShadowCommitsTakenBack == 0 && tid != db.ShadowWriterTID() {
		t.Errorf("the last checkpoint ran on thread %d, want the shadow-results thread %d", tid, db.ShadowWriterTID())
	}
	size := func(p string) int64 {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	// Without checkpoints the log would hold every row and outgrow the
	// database file, which would hold none of them yet.
	wal, main := size(path+"-wal"), size(path)
	t.Logf("%d checkpoints; log %d bytes, database %d bytes", st.Checkpoints, wal, main)
	if wal > main/4 {
		t.Errorf("write-ahead log %d bytes against a database of %d: checkpoints are not keeping up", wal, main)
	}
	if gotP, gotS := counts(t, db); gotP != rounds*each || gotS != rounds*each {
		t.Errorf("rows %d/%d, want %d of each", gotP, gotS, rounds*each)
	}
}

// Ensure a shadow-results thread starved in the middle of a commit, as a
// SCHED_IDLE thread is on a busy core, does not hold the writer up: the
// writer raises it to its own priority until the commit is done.
func TestStarvedShadowThreadIsRaised(t *testing.T) {
	db, _ := openDB(t, sqlite.Options{BatchSize: 50, ShadowIdle: true})
	// The thread and a busy loop at normal priority share one CPU, where
	// the thread gets about 0.3% of it: whatever it starts, it finishes
	// only when raised.
	one := new(unix.CPUSet)
	one.Set(0)
	if err := unix.SchedSetaffinity(db.ShadowWriterTID(), one); err != nil {
		t.Skipf("cannot pin the thread: %v", err)
	}
	// As the server does while there are shadows: scheduler slots for the
	// locked threads, so that only the kernel decides who runs.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(runtime.NumCPU() + 2))
	stop := make(chan struct{})
	var hog sync.WaitGroup
	hog.Add(1)
	go func() {
		defer hog.Done()
		runtime.LockOSThread()
		unix.SchedSetaffinity(0, one)
		for {
			select {
			case <-stop:
				return
			default:
			}
		}
	}()
	defer func() { close(stop); hog.Wait() }()

	at := time.Now()
	var waits []time.Duration
	for i := 0; time.Since(at) < 2*time.Second; i++ {
		writePairs(db, fmt.Sprint(i, "-"), 50, at)
		start := time.Now()
		flush(t, db)
		waits = append(waits, time.Since(start))
	}
	slices.Sort(waits)
	st := db.ThreadStats()
	longest := waits[len(waits)-1]
	t.Logf("%d flushes, p50 %v, max %v; %d commits raised, %d taken back", len(waits), waits[len(waits)/2], longest, st.ShadowCommitsRaised, st.ShadowCommitsTakenBack)
	// Most commits are taken back before the thread starts them; the ones
	// it started and could not finish within the handoff must have been
	// raised. The flushes' waits alone cannot tell: without the raise the
	// longest was 0.4–0.8 s here, and with it up to 1.2 s while CI ran
	// other packages on the same two cores. A thread never raised from a
	// commit would hold the writer until it got its 0.3% of the CPU, so
	// the bound below only catches a writer held indefinitely.
	if st.ShadowCommitsRaised == 0 {
		t.Errorf("no commit was raised (%d taken back): the thread was starved in none, or the writer never lent it its priority", st.ShadowCommitsTakenBack)
	}
	if longest > 10*time.Second {
		t.Errorf("a flush waited %v with the shadow thread starved, want the writer never held up for long", longest)
	}
}

// Ensure a shadow-results thread that cannot run, as a SCHED_IDLE thread on
// saturated cores, never holds up the store: the writer takes its commits
// back and every row is written while the thread is still stalled.
func TestStalledShadowThreadHoldsNothingUp(t *testing.T) {
	db, _ := openDB(t, sqlite.Options{BatchSize: 50, ShadowIdle: true, ShadowHandoff: 20 * time.Millisecond})
	const stall = 5 * time.Second
	db.StallShadowThread(stall)
	until := time.Now().Add(stall)
	at := time.Now()
	const n = 300
	writePairs(db, "", n, at)
	flush(t, db)
	if time.Now().After(until) {
		t.Fatal("the flush waited for the stalled thread")
	}
	gotP, gotS := counts(t, db)
	if gotP != n || gotS != n {
		t.Errorf("rows %d/%d, want %d of each", gotP, gotS, n)
	}
	if st := db.ThreadStats(); st.ShadowCommitsTakenBack == 0 {
		t.Errorf("stats %+v: want shadow commits taken back", st)
	}
}
