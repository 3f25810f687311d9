package main

import (
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// This file batches the log's info and debug lines, the access log's above
// all, into one write every logFlushEvery: a write system call per request
// cost about 2.5 µs of the request's CPU (docs/perf/request-cost.md).
// Warnings and errors are written at once, after what is buffered, so that
// they are never late or out of order, and are not lost to a crash.

const (
	// logFlushEvery bounds how late a buffered line is written.
	logFlushEvery = 50 * time.Millisecond
	// logFlushAt writes the buffer before its time once it holds this much.
	logFlushAt = 64 << 10
	// logBufferMax is the most the buffer holds while the output is slow;
	// beyond it lines are dropped and counted, so that a stalled stderr
	// never blocks a request.
	logBufferMax = 4 << 20
)

// logBuffer is a zerolog.LevelWriter over w.
type logBuffer struct {
	w       io.Writer
	mu      sync.Mutex // guards buf
	out     sync.Mutex // serialises writes to w
	buf     []byte
	spare   []byte // the buffer last written, reused; guarded by out
	dropped atomic.Int64
	kick    chan struct{}
	quit    chan struct{}
	done    chan struct{}
	once    sync.Once
}

func newLogBuffer(w io.Writer) *logBuffer {
	b := &logBuffer{w: w, kick: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	go b.run()
	return b
}

// Write buffers p, a whole log line.
func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	if len(b.buf)+len(p) > logBufferMax {
		b.mu.Unlock()
		b.dropped.Add(1)
		return len(p), nil
	}
	b.buf = append(b.buf, p...)
	full := len(b.buf) >= logFlushAt
	b.mu.Unlock()
	if full {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}

// WriteLevel buffers info and debug lines, and writes warnings and errors
// at once, after the lines buffered before them.
func (b *logBuffer) WriteLevel(level zerolog.Level, p []byte) (int, error) {
	if level < zerolog.WarnLevel || level == zerolog.NoLevel {
		return b.Write(p)
	}
	b.out.Lock()
	defer b.out.Unlock()
	b.flushLocked()
	return b.w.Write(p)
}

func (b *logBuffer) run() {
	defer close(b.done)
	t := time.NewTicker(logFlushEvery)
	defer t.Stop()
	for {
		select {
		case <-b.quit:
			return
		case <-t.C:
		case <-b.kick:
		}
		b.flush()
	}
}

// flush writes what is buffered.
func (b *logBuffer) flush() {
	b.out.Lock()
	defer b.out.Unlock()
	b.flushLocked()
}

// flushLocked writes what is buffered; b.out must be held.
//
// The two buffers take turns: lines go into one while the other is
// written. A fresh buffer per flush, grown from nothing to 64 KiB, was
// about 1 KB of allocation per request on the tiny MLP.
func (b *logBuffer) flushLocked() {
	b.mu.Lock()
	p := b.buf
	b.buf, b.spare = b.spare[:0], nil
	b.mu.Unlock()
	if len(p) > 0 {
		_, _ = b.w.Write(p)
	}
	if cap(p) <= 2*logFlushAt {
		// One that grew while the output was slow is let go.
		b.spare = p[:0]
	}
	if n := b.dropped.Swap(0); n > 0 {
		line := zerolog.New(b.w).With().Timestamp().Logger()
		line.Warn().Int64("dropped_lines", n).Msg("the log's output was too slow; lines were dropped")
	}
}

// Close writes what is buffered and stops the flushing; it is safe to call
// twice.
func (b *logBuffer) Close() error {
	b.once.Do(func() {
		close(b.quit)
		<-b.done
		b.flush()
	})
	return nil
}
