package main

import (
	"bytes"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"
)

// lockedBuffer is a bytes.Buffer safe for the flusher and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Ensure info lines are batched but a warning is written at once, after
// every line logged before it, and that Close writes what is left.
func TestLogBufferKeepsOrderAndFlushes(t *testing.T) {
	var out lockedBuffer
	b := newLogBuffer(&out)
	log := zerolog.New(b)
	log.Info().Msg("first")
	log.Info().Msg("second")
	log.Warn().Msg("third")
	got := out.String()
	if !strings.Contains(got, "first") || !strings.Contains(got, "third") ||
		strings.Index(got, "first") > strings.Index(got, "second") || strings.Index(got, "second") > strings.Index(got, "third") {
		t.Fatalf("after a warning the output is %q: want the two info lines, then the warning", got)
	}
	log.Info().Msg("fourth")
	b.Close()
	if !strings.Contains(out.String(), "fourth") {
		t.Fatalf("after Close the output is %q: want the buffered line", out.String())
	}
	b.Close() // twice is safe
}

// Ensure a buffer that fills while its output is stuck drops lines, counts
// them, and says so once the output moves again, without blocking writers.
func TestLogBufferDropsWhenFull(t *testing.T) {
	var out lockedBuffer
	b := &logBuffer{w: &out, kick: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	close(b.done) // no flusher: the output is "stuck"
	line := bytes.Repeat([]byte("x"), 1<<20)
	for range 6 {
		b.Write(line)
	}
	if n := b.dropped.Load(); n != 2 {
		t.Fatalf("%d lines dropped, want 2 (4 MiB hold 4 lines of 1 MiB)", n)
	}
	b.flush()
	if !strings.Contains(out.String(), `"dropped_lines":2`) {
		t.Errorf("no warning about the 2 dropped lines after the flush")
	}
}

// Ensure the two buffers that take turns never lose, repeat or mix lines
// across many flushes, and that once warm a line costs no allocation.
func TestLogBufferReusesBuffers(t *testing.T) {
	var out lockedBuffer
	b := &logBuffer{w: &out, kick: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	close(b.done) // flushed by hand below
	var want strings.Builder
	for cycle := range 50 {
		for i := range 100 {
			line := []byte(strings.Repeat(string(rune('a'+cycle%26)), i%40) + "\n")
			want.Write(line)
			b.Write(line)
		}
		b.flush()
	}
	if out.String() != want.String() {
		t.Fatalf("output differs from the lines written (%d bytes against %d)", len(out.String()), want.Len())
	}
	line := []byte(strings.Repeat("x", 200) + "\n")
	allocs := testing.AllocsPerRun(1000, func() {
		for range 100 {
			b.Write(line)
		}
		b.flush()
	})
	// The lockedBuffer's own growth aside, the log buffer allocates nothing.
	if allocs > 1 {
		t.Errorf("%.1f allocations per 100 lines and a flush, want none from the log buffer", allocs)
	}
}
