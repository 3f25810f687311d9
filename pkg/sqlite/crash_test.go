package sqlite_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/understudy-ml/understudy/pkg/sqlite"
)

const crashEnv = "UNDERSTUDY_SQLITE_CRASH_DB"

// Ensure TestKilledWriter has a process to kill: run only as its child, this
// writes pairs without pause, keeping the writer busy in its transactions,
// and flushes in a loop, printing how many pairs each Flush covered.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashEnv)
	if path == "" {
		t.Skip("run by TestKilledWriter only")
	}
	db, err := sqlite.Open(path, sqlite.Options{BatchSize: 200})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	var queued atomic.Int64
	go func() {
		at := time.Now()
		for n := 0; ; n++ {
			for db.Stats().QueueDepth > 4000 {
				time.Sleep(100 * time.Microsecond)
			}
			p, s := sqlite.SamplePair(strconv.Itoa(n), at)
			db.WritePrediction(p)
			db.WriteShadowResult(s)
			queued.Store(int64(n + 1))
		}
	}()
	for {
		n := queued.Load()
		if err := db.Flush(context.Background()); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("flushed", n)
	}
}

// Ensure a database left by a process killed in the middle of writing opens
// cleanly, passes the integrity check and holds every row flushed before
// the kill.
func TestKilledWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "understudy.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill at a time unrelated to the child's flushes, once it is well
	// under way, so the kill lands in the middle of a transaction.
	lines := bufio.NewScanner(out)
	if !lines.Scan() {
		t.Fatalf("child printed nothing")
	}
	time.AfterFunc(time.Duration(300+rand.IntN(300))*time.Millisecond, func() { _ = cmd.Process.Signal(syscall.SIGKILL) })
	flushed := 0
	for ok := true; ok; ok = lines.Scan() {
		f := strings.Fields(lines.Text())
		if len(f) == 2 && f[0] == "flushed" {
			flushed, _ = strconv.Atoi(f[1])
		} else if len(f) > 0 && f[0] == "error" {
			t.Fatalf("child: %s", lines.Text())
		}
	}
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, want killed", err)
	}
	if flushed == 0 {
		t.Fatal("the child flushed nothing before it was killed")
	}

	db, err := sqlite.Open(path, sqlite.Options{})
	if err != nil {
		t.Fatalf("Open after kill -9: %v", err)
	}
	defer db.Close()
	var check string
	if err := db.ReadPool().QueryRow(`PRAGMA integrity_check`).Scan(&check); err != nil {
		t.Fatal(err)
	}
	if check != "ok" {
		t.Fatalf("integrity_check = %q, want ok", check)
	}
	for _, table := range []string{"predictions", "shadow_results"} {
		// Ids are the decimal numbers 0, 1, …; every one below flushed must be there.
		got := queryInt(t, db.ReadPool(), `SELECT count(*) FROM `+table+` WHERE CAST(request_id AS INTEGER) < ?`, flushed)
		if got != int64(flushed) {
			t.Errorf("%s: %d of the %d flushed rows survived", table, got, flushed)
		}
	}
	p, s := counts(t, db)
	t.Logf("flushed %d pairs before the kill; %d predictions and %d shadow results survived", flushed, p, s)
}
