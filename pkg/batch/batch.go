// Package batch merges requests that wait for the same model into one run,
// the way Triton's dynamic batcher does, but without a batching window: a
// request that finds a free run slot runs at once and alone, so a lightly
// loaded server answers exactly as before. Only requests that would have
// queued behind busy runs are merged, when a slot frees. One run over n rows
// costs far less than n runs of one row (the weights are read once), so a
// saturated server answers more requests per second than it could run them
// one by one.
//
// Merging is only correct for models whose rows are independent: row i of
// every output depends on row i of the inputs alone. ONNX cannot say so, so
// merging is opt-in, and a model whose outputs do not have one row per input
// row is switched back to single runs the first time that shows.
//
// It owns the merging only: a Batcher wraps one model's Runner and is itself
// a Runner, so the registry can put it in front of a primary. It imports the
// domain (pkg/understudy) and the standard library only; never the registry
// or an adapter (onnx, http, grpc, a store).
package batch

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// Options configure a Batcher.
type Options struct {
	// MaxRows bounds the rows of one merged run; a request with more rows
	// than this runs alone.
	MaxRows int
	// Slots is how many runs may be in flight at once while requests are
	// not piling up; requests beyond that wait and are merged. With one
	// intra-op thread per run, the number of cores is the natural choice.
	Slots int
	// BusySlots, if set and below Slots, is how many runs may be in flight
	// once requests pile up: for 100 ms after a hand-over that finds two
	// or more waiting. Merged runs then leave more of the cores to the work
	// around each request. Default: Slots.
	BusySlots int
	// OnDisable is called once if the model turns out not to keep one
	// output row per input row, with the reason.
	OnDisable func(reason string)
}

// Stats count what the batcher did.
type Stats struct {
	// Runs is the number of merged runs, of two requests or more.
	Runs int64
	// Requests is the number of requests answered by merged runs.
	Requests int64
	// Disabled says why merging was switched off, if it was.
	Disabled string
}

// Batcher is a Runner that merges waiting requests into single runs of the
// Runner it wraps.
type Batcher struct {
	run  understudy.Runner
	sig  understudy.Signature
	opts Options

	mu      sync.Mutex
	running int
	pending []*call // FIFO
	// busyUntil is when BusySlots stop applying: a while after requests
	// were last seen piling up. A run slot that frees with nobody waiting
	// is no sign that the pile-up is over; at 8 clients that happens often.
	busyUntil time.Time
	busyHold  time.Duration

	runs, requests atomic.Int64
	disabled       atomic.Pointer[string]
}

// call is one request's journey through the batcher.
type call struct {
	ctx  context.Context
	in   map[string]*understudy.Tensor
	rows int64

	// Set under the batcher's lock when the call leaves pending.
	taken bool
	batch []*call // non-nil for the call chosen to run the batch

	lead chan struct{} // signalled when this call must run batch
	done chan struct{} // closed when out and err are set
	out  map[string]*understudy.Tensor
	err  error
	// alone asks the caller to run its request by itself: the merged run
	// failed, and each request must get its own answer or error.
	alone bool
}

// Mergeable reports whether a model with this signature can have its
// requests merged: every input and output must have a dynamic first
// dimension, the batch. The reason says why not.
func Mergeable(sig understudy.Signature) (ok bool, reason string) {
	if len(sig.Inputs) == 0 || len(sig.Outputs) == 0 {
		return false, "the model has no inputs or no outputs"
	}
	for _, group := range []struct {
		kind  string
		infos []understudy.TensorInfo
	}{{"input", sig.Inputs}, {"output", sig.Outputs}} {
		for _, t := range group.infos {
			if len(t.Dims) == 0 || t.Dims[0] >= 0 {
				return false, fmt.Sprintf("%s %q has no dynamic first (batch) dimension: %s", group.kind, t.Name, understudy.FormatShape(t.Dims))
			}
		}
	}
	return true, ""
}

// New wraps run. It returns an error when the signature is not Mergeable.
func New(run understudy.Runner, sig understudy.Signature, o Options) (*Batcher, error) {
	if ok, why := Mergeable(sig); !ok {
		return nil, errors.New(why)
	}
	if o.MaxRows < 2 {
		return nil, fmt.Errorf("MaxRows is %d; merging needs at least 2", o.MaxRows)
	}
	o.Slots = max(o.Slots, 1)
	if o.BusySlots <= 0 || o.BusySlots > o.Slots {
		o.BusySlots = o.Slots
	}
	return &Batcher{run: run, sig: sig, opts: o, busyHold: busyHold}, nil
}

// Stats returns what the batcher has done so far.
func (b *Batcher) Stats() Stats {
	s := Stats{Runs: b.runs.Load(), Requests: b.requests.Load()}
	if d := b.disabled.Load(); d != nil {
		s.Disabled = *d
	}
	return s
}

// Close closes the wrapped Runner.
func (b *Batcher) Close() error { return b.run.Close() }

// Run implements understudy.Runner.
func (b *Batcher) Run(ctx context.Context, in map[string]*understudy.Tensor) (map[string]*understudy.Tensor, error) {
	rows := b.rows(in)
	if rows <= 0 || b.disabled.Load() != nil {
		return b.run.Run(ctx, in)
	}
	b.mu.Lock()
	if b.running < b.slots() {
		b.running++
		b.mu.Unlock()
		defer b.next()
		return b.run.Run(ctx, in)
	}
	c := &call{ctx: ctx, in: in, rows: rows, lead: make(chan struct{}, 1), done: make(chan struct{})}
	b.pending = append(b.pending, c)
	b.mu.Unlock()

	select {
	case <-c.lead:
		return b.execute(c)
	case <-c.done:
		return c.result(ctx, b.run)
	case <-ctx.Done():
	}
	b.mu.Lock()
	switch {
	case !c.taken:
		b.pending = slices.DeleteFunc(b.pending, func(x *call) bool { return x == c })
		b.mu.Unlock()
		return nil, fmt.Errorf("waiting to run: %w", ctx.Err())
	case c.batch != nil:
		// Chosen to run a batch: the others depend on it.
		b.mu.Unlock()
		<-c.lead
		return b.execute(c)
	}
	b.mu.Unlock()
	return nil, fmt.Errorf("waiting for a merged run: %w", ctx.Err())
}

// result returns a finished call's answer, running it alone if asked to.
func (c *call) result(ctx context.Context, run understudy.Runner) (map[string]*understudy.Tensor, error) {
	if c.alone {
		return run.Run(ctx, c.in)
	}
	return c.out, c.err
}

// rows returns the batch size of a request, or 0 if its inputs disagree on
// it, in which case it is never merged.
func (b *Batcher) rows(in map[string]*understudy.Tensor) int64 {
	var rows int64 = -1
	for _, info := range b.sig.Inputs {
		t, ok := in[info.Name]
		if !ok || len(t.Shape) == 0 {
			return 0
		}
		if rows >= 0 && t.Shape[0] != rows {
			return 0
		}
		rows = t.Shape[0]
	}
	return max(rows, 0)
}

// next hands the slot just freed to the oldest waiting request, with every
// waiting request that can share its run, or frees the slot.
func (b *Batcher) next() {
	b.mu.Lock()
	if len(b.pending) >= 2 {
		b.busyUntil = time.Now().Add(b.busyHold)
	}
	// Over the limit (it fell when requests piled up), the slot is given
	// up; the runs still in flight hand theirs on, so no one is stranded.
	if len(b.pending) == 0 || b.running > b.slots() {
		b.running--
		b.mu.Unlock()
		return
	}
	first := b.pending[0]
	batch := []*call{first}
	total := first.rows
	rest := b.pending[:0]
	for _, c := range b.pending[1:] {
		if total+c.rows <= int64(b.opts.MaxRows) && b.sameRowShape(first, c) {
			batch = append(batch, c)
			total += c.rows
			continue
		}
		rest = append(rest, c)
	}
	clear(b.pending[len(rest):])
	b.pending = rest
	for _, c := range batch {
		c.taken = true
	}
	first.batch = batch
	b.mu.Unlock()
	first.lead <- struct{}{}
	// The new leader would otherwise wait for this goroutine to finish its
	// response before it got this P; the run matters more, as every
	// request in the next batch waits on it. Measured: +14–17% requests/s
	// on the benchmark's MLP at 4 and 8 clients.
	runtime.Gosched()
}

// slots is how many runs may be in flight now. b.mu must be held.
func (b *Batcher) slots() int {
	if b.opts.BusySlots < b.opts.Slots && time.Now().Before(b.busyUntil) {
		return b.opts.BusySlots
	}
	return b.opts.Slots
}

// busyHold is how long BusySlots apply after requests were last seen
// piling up.
const busyHold = 100 * time.Millisecond

// sameRowShape reports whether two requests' inputs differ only in their
// number of rows, so that they can be stacked.
func (b *Batcher) sameRowShape(x, y *call) bool {
	for _, info := range b.sig.Inputs {
		if !slices.Equal(x.in[info.Name].Shape[1:], y.in[info.Name].Shape[1:]) {
			return false
		}
	}
	return true
}

// execute runs the batch led by c, delivers every other member's answer
// and returns c's, then passes the slot on.
func (b *Batcher) execute(c *call) (map[string]*understudy.Tensor, error) {
	defer b.next()
	batch := c.batch
	if len(batch) == 1 {
		return b.run.Run(c.ctx, c.in)
	}
	// Until the merged answers are delivered, the others wait on this
	// run. If it fails (a bad row fails all of them) or panics, each runs
	// again alone, to get the answer or the error it would have had.
	delivered := false
	releaseAlone := func() {
		delivered = true
		for _, m := range batch[1:] {
			m.alone = true
			close(m.done)
		}
	}
	defer func() {
		if !delivered {
			releaseAlone()
		}
	}()
	outs, err := b.merged(batch)
	if err != nil {
		releaseAlone()
		return b.run.Run(c.ctx, c.in)
	}
	b.runs.Add(1)
	b.requests.Add(int64(len(batch)))
	delivered = true
	for i, m := range batch[1:] {
		m.out = outs[i+1]
		close(m.done)
	}
	return outs[0], nil
}

// merged stacks the batch's inputs, runs them once and splits the outputs
// by request.
func (b *Batcher) merged(batch []*call) ([]map[string]*understudy.Tensor, error) {
	var total int64
	for _, c := range batch {
		total += c.rows
	}
	in := make(map[string]*understudy.Tensor, len(b.sig.Inputs))
	for _, info := range b.sig.Inputs {
		parts := make([]*understudy.Tensor, len(batch))
		for i, c := range batch {
			parts[i] = c.in[info.Name]
		}
		t, err := understudy.Concat(parts)
		if err != nil {
			return nil, fmt.Errorf("input %q: %w", info.Name, err)
		}
		in[info.Name] = t
	}
	// No member's cancellation may stop the others' run; each one waiting
	// still returns when its own context ends. The CPU of the run, if any
	// member asked for it, is shared out by rows.
	ctx := context.Background()
	var st understudy.RunStats
	if slices.ContainsFunc(batch, func(c *call) bool { return understudy.RunStatsFrom(c.ctx) != nil }) {
		ctx = understudy.WithRunStats(ctx, &st)
	}
	out, err := b.run.Run(ctx, in)
	if err != nil {
		return nil, err
	}
	for name, t := range out {
		if len(t.Shape) == 0 || t.Shape[0] != total {
			why := fmt.Sprintf("output %q had shape %s for %d input rows; answering each request with its own run from now on", name, understudy.FormatShape(t.Shape), total)
			if b.disabled.CompareAndSwap(nil, &why) && b.opts.OnDisable != nil {
				b.opts.OnDisable(why)
			}
			return nil, errors.New(why)
		}
	}
	res := make([]map[string]*understudy.Tensor, len(batch))
	var at int64
	for i, c := range batch {
		res[i] = make(map[string]*understudy.Tensor, len(out))
		for name, t := range out {
			res[i][name] = t.Rows(at, at+c.rows)
		}
		at += c.rows
		if s := understudy.RunStatsFrom(c.ctx); s != nil {
			s.CPU = st.CPU * time.Duration(c.rows) / time.Duration(total)
		}
	}
	return res, nil
}
