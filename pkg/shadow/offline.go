package shadow

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/understudy-ml/understudy/pkg/registry"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file is lossless shadowing: what runs off the live path, from the
// store. A job that shedding, a full queue or shutdown would drop is
// deferred into the store's backlog instead (shed), and one worker thread,
// at the shadow workers' priority, runs two kinds of stored work once the
// server is idle:
//   - backfill: the deferred jobs, oldest first, from the stored inputs;
//   - backtest: a newly loaded shadow on the newest stored requests of the
//     primary, newest first, so that its report fills without new traffic.
//
// Idle means no request of the primary in flight, no live shadow job
// queued and no request arrived for Config.IdleFor; the gate is checked
// again before every run, and any request restarts the wait. Runs never go
// into the gaps between requests: an earlier attempt that did measured the
// primary's p99 at 1.32 times its value without.

// offlineBatch is how many deferred jobs a backfill reads at a time.
const offlineBatch = 64

// backtestPage is how many stored requests a backtest reads at a time.
const backtestPage = 256

// BacktestSummary is what one backtest did.
type BacktestSummary struct {
	Shadow understudy.ModelRef
	// Primary is the model whose stored requests it ran on.
	Primary string
	// Considered is how many of the newest requests it looked at: Ran
	// were run, Paired already had a result of this shadow version (live,
	// or from an earlier backtest cut short by a restart), and
	// NotBacktestable had their inputs over the input cap.
	Considered, Ran, Paired, NotBacktestable int
	Took                                     time.Duration
	// Err says why it stopped early; nil when it went through.
	Err error
}

// backtestTask is a backtest asked for: a shadow version, on the requests
// stored before it was asked for. Later requests are its live traffic, and
// their shed jobs the backlog's: a backtest that ran them first would turn
// those jobs into duplicates, offered but never paired.
type backtestTask struct {
	ref    understudy.ModelRef
	before time.Time
}

type offline struct {
	// pending is the backlog's size as this process knows it: read from
	// the store at start, counted up by deferrals and down by runs and
	// drops, and read again whenever the backlog turns out empty.
	pending   atomic.Int64
	mu        sync.Mutex
	backtests []backtestTask

	wake   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}

	// The idle gate's state, owned by the worker.
	seen  int64
	quiet time.Time
}

// backlogOn and backtestOn report whether the mirror defers jobs and runs
// backtests.
func (m *Mirror) backlogOn() bool  { return m.cfg.History != nil && m.cfg.Backlog > 0 }
func (m *Mirror) backtestOn() bool { return m.cfg.History != nil && m.cfg.BacktestRows > 0 }

func (m *Mirror) startOffline() {
	m.off.wake, m.off.done = make(chan struct{}, 1), make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	m.off.cancel = cancel
	if !m.backlogOn() && !m.backtestOn() {
		close(m.off.done)
		return
	}
	if m.cfg.IdleFor <= 0 {
		m.cfg.IdleFor = 100 * time.Millisecond
	}
	go m.offlineWorker(ctx)
}

// stopOffline stops the worker; a run in progress is cut short and not
// stored, and its job stays in the backlog for the next start.
func (m *Mirror) stopOffline() {
	m.off.cancel()
	<-m.off.done
}

func (m *Mirror) signal() {
	select {
	case m.off.wake <- struct{}{}:
	default:
	}
}

// Pending returns the deferred jobs waiting for a backfill, as this process
// counts them.
func (m *Mirror) Pending() int64 { return m.off.pending.Load() }

// Backtest asks for a backtest of a shadow version; it runs once the server
// is idle. Asking again for one queued does nothing, and a version that is
// not a shadow by then is skipped.
func (m *Mirror) Backtest(ref understudy.ModelRef) {
	if !m.backtestOn() {
		return
	}
	m.off.mu.Lock()
	if !slices.ContainsFunc(m.off.backtests, func(t backtestTask) bool { return t.ref == ref }) {
		m.off.backtests = append(m.off.backtests, backtestTask{ref: ref, before: time.Now()})
	}
	m.off.mu.Unlock()
	m.signal()
}

// shed defers a job that will not run live, or drops it when there is no
// backlog or it is full.
func (m *Mirror) shed(s *registry.Model, p *understudy.Prediction) {
	if !m.backlogOn() {
		m.skip(s, p.Time, 0, 1)
		return
	}
	if m.off.pending.Add(1) > m.cfg.Backlog {
		m.off.pending.Add(-1)
		m.cfg.History.CountDrops(s.Name, s.Version, p.Time, understudy.DropBacklogFull, 1)
		m.obs.Dropped(s.Name, s.Version, understudy.DropBacklogFull, 1)
		return
	}
	m.cfg.History.Defer(understudy.DeferredJob{RequestID: p.ID, Shadow: s.Name, Version: s.Version, Time: p.Time})
	m.obs.Deferred(s.Name, s.Version, 1)
	m.signal()
}

// shedding reports whether a worker should shed the job of p rather than
// run it now.
func (m *Mirror) shedding(p *understudy.Prediction) bool {
	if d := m.cfg.MaxQueueDelay; d > 0 {
		return time.Since(p.Time)-p.Latency > d
	}
	return m.cfg.Busy != nil && m.cfg.Busy()
}

func (m *Mirror) offlineWorker(ctx context.Context) {
	defer close(m.off.done)
	runtime.LockOSThread()
	m.lowerPriority(unix.Gettid())
	h := m.cfg.History
	if m.backlogOn() {
		if n, err := h.PendingJobs(ctx); err == nil {
			m.off.pending.Store(n)
		} else {
			m.log.Warn().Err(err).Msg("cannot count the deferred shadow jobs; backfill starts with what it finds")
		}
	}
	m.off.quiet = time.Now()
	worked := false
	for ctx.Err() == nil {
		// Deferred jobs first: their requests are newer than a backtest's,
		// and a backtest that reached one first would leave its job as
		// a duplicate, a request counted as offered but never paired.
		if m.backlogOn() && m.off.pending.Load() > 0 {
			did, err := m.backfill(ctx)
			if err != nil && ctx.Err() == nil {
				m.log.Warn().Err(err).Msg("backfill could not read the backlog; retrying in a second")
				sleep(ctx, time.Second)
			}
			if did || err != nil {
				worked = worked || did
				continue
			}
		}
		if task, ok := m.nextBacktest(); ok {
			m.runBacktest(ctx, task)
			worked = true
			continue
		}
		// Stored work allocates like the requests it replays, and GOGC is
		// raised while there are shadows: left alone, the collection it
		// owes would run in the next burst of requests. Collect now, while
		// the server is still idle.
		if worked && m.idleNow() {
			runtime.GC()
		}
		worked = false
		select {
		case <-ctx.Done():
		case <-m.off.wake:
		}
	}
}

func (m *Mirror) nextBacktest() (backtestTask, bool) {
	m.off.mu.Lock()
	defer m.off.mu.Unlock()
	if len(m.off.backtests) == 0 {
		return backtestTask{}, false
	}
	t := m.off.backtests[0]
	m.off.backtests = m.off.backtests[1:]
	return t, true
}

// idleNow reports whether no request is in flight and no live job queued.
func (m *Mirror) idleNow() bool {
	return len(m.queue) == 0 && (m.cfg.InFlight == nil || m.cfg.InFlight() == 0)
}

// waitIdle blocks until the server has been idle for IdleFor, and returns
// false if ctx ends first.
func (m *Mirror) waitIdle(ctx context.Context) bool {
	step := max(time.Millisecond, m.cfg.IdleFor/4)
	for {
		now := time.Now()
		var a int64
		if m.cfg.Arrived != nil {
			a = m.cfg.Arrived()
		}
		if a != m.off.seen || !m.idleNow() {
			m.off.seen, m.off.quiet = a, now
		}
		if now.Sub(m.off.quiet) >= m.cfg.IdleFor {
			return true
		}
		if !sleep(ctx, step) {
			return false
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// backfill runs one batch of the oldest deferred jobs. It reports whether
// the backlog had any.
func (m *Mirror) backfill(ctx context.Context) (bool, error) {
	if !m.waitIdle(ctx) {
		return false, nil
	}
	h := m.cfg.History
	jobs, err := h.Deferred(ctx, offlineBatch)
	if err != nil {
		return false, err
	}
	if len(jobs) == 0 {
		// Deferrals the store ignored (already pending) were counted here.
		if n, err := h.PendingJobs(ctx); err == nil {
			m.off.pending.Store(n)
		}
		return false, nil
	}
	ids := make([]string, 0, len(jobs))
	for _, j := range jobs {
		ids = append(ids, j.RequestID)
	}
	inputs, err := h.StoredInputs(ctx, ids)
	if err != nil {
		return false, err
	}
	shadows := m.shadows()
	defer func() {
		for _, s := range shadows {
			s.Release()
		}
	}()
	primary, outputs := m.primaryOutputs()
	drops := map[string][]understudy.DeferredJob{}
	now := time.Now()
	for _, j := range jobs {
		in := inputs[j.RequestID]
		s := findModel(shadows, j.Shadow, j.Version)
		switch {
		case m.cfg.MaxAge > 0 && now.Sub(j.Time) > m.cfg.MaxAge:
			drops[understudy.DropExpired] = append(drops[understudy.DropExpired], j)
		case in == nil || in.Inputs == nil || in.ServedBy == understudy.ServedCandidate:
			// A candidate's stored answer is not the primary's, so such a
			// request has no primary answer to compare with.
			drops[understudy.DropNoInputs] = append(drops[understudy.DropNoInputs], j)
		case s == nil:
			drops[understudy.DropUnloaded] = append(drops[understudy.DropUnloaded], j)
		default:
			if !m.waitIdle(ctx) {
				return true, nil
			}
			order := outputs
			if in.Model != primary {
				order = nil
			}
			if m.runStored(ctx, s, in, order, understudy.OriginBackfill) {
				m.off.pending.Add(-1)
			}
		}
	}
	for reason, js := range drops {
		if err := h.DropDeferred(ctx, js, reason); err != nil {
			return true, err
		}
		m.off.pending.Add(-int64(len(js)))
		for _, j := range js {
			m.obs.Dropped(j.Shadow, j.Version, reason, 1)
		}
	}
	// The results remove their jobs when committed: wait for that, or the
	// next read would hand out the same jobs again.
	if m.store != nil {
		if err := m.store.Flush(ctx); err != nil && ctx.Err() == nil {
			return true, err
		}
	}
	return true, nil
}

// runBacktest runs a shadow version on the newest BacktestRows requests of
// the primary stored before the backtest was asked for.
func (m *Mirror) runBacktest(ctx context.Context, task backtestTask) {
	ref := task.ref
	pm, ok := m.primaryModel()
	if !ok {
		return
	}
	primary, outputs := pm.Name, pm.Signature.Outputs
	serving := pm.Ref()
	pm.Release()
	// A new version of the primary's own file is a shadow like any other.
	if ref == serving {
		return
	}
	sum := BacktestSummary{Shadow: ref, Primary: primary}
	start := time.Now()
	q := understudy.InputQuery{Model: primary, PairedWith: ref, Before: task.before}
	h := m.cfg.History
	for sum.Considered < m.cfg.BacktestRows && sum.Err == nil {
		q.Limit = min(backtestPage, m.cfg.BacktestRows-sum.Considered)
		// Reading and decoding a page is work too, and it allocates: it
		// waits for the idle gate like a run.
		if !m.waitIdle(ctx) {
			sum.Err = ctx.Err()
			break
		}
		page, err := h.RecentInputs(ctx, q)
		if err != nil {
			sum.Err = err
			break
		}
		if len(page) == 0 {
			break
		}
		sum.Err = m.backtestPage(ctx, ref, page, outputs, &sum)
		last := page[len(page)-1]
		q.Before, q.BeforeID = last.Time, last.RequestID
	}
	if sum.Err == nil && ctx.Err() != nil {
		sum.Err = ctx.Err()
	}
	sum.Took = time.Since(start)
	ev := m.log.Info()
	if sum.Err != nil {
		ev = m.log.Warn().Err(sum.Err)
	}
	ev.Str("shadow", ref.Name).Str("version", ref.Version).Str("primary", primary).Int("considered", sum.Considered).
		Int("ran", sum.Ran).Int("already_paired", sum.Paired).Int("not_backtestable", sum.NotBacktestable).
		Dur("took", sum.Took).Msg("backtest on stored traffic")
	if m.cfg.OnBacktest != nil {
		m.cfg.OnBacktest(sum)
	}
}

// backtestPage runs one page of stored requests; it fails when the shadow
// is no longer loaded or ctx ends.
func (m *Mirror) backtestPage(ctx context.Context, ref understudy.ModelRef, page []*understudy.StoredInput, outputs []understudy.TensorInfo, sum *BacktestSummary) error {
	shadows := m.shadows()
	defer func() {
		for _, s := range shadows {
			s.Release()
		}
	}()
	s := findModel(shadows, ref.Name, ref.Version)
	if s == nil {
		return fmt.Errorf("%s version %s is no longer a shadow", ref.Name, ref.Version)
	}
	for _, in := range page {
		sum.Considered++
		switch {
		case in.Paired || in.ServedBy == understudy.ServedCandidate:
			// A candidate's stored answer is not the primary's: such a
			// request is paired through the canary instead.
			sum.Paired++
		case in.Inputs == nil:
			sum.NotBacktestable++
			m.cfg.History.CountDrops(ref.Name, ref.Version, in.Time, understudy.DropNotBacktestable, 1)
			m.obs.Dropped(ref.Name, ref.Version, understudy.DropNotBacktestable, 1)
		default:
			if !m.waitIdle(ctx) {
				return ctx.Err()
			}
			if m.runStored(ctx, s, in, outputs, understudy.OriginBacktest) {
				sum.Ran++
			}
		}
	}
	return nil
}

// runStored runs a shadow on a stored request and stores the result with
// the request's time; it reports whether a result was stored, which it is
// not when ctx ends during the run.
func (m *Mirror) runStored(ctx context.Context, s *registry.Model, in *understudy.StoredInput, outputs []understudy.TensorInfo, origin string) bool {
	res, ok := Replay(ctx, s, in, outputs, origin)
	if !ok {
		return false
	}
	if m.store != nil {
		m.store.WriteShadowResult(res)
	}
	m.obs.OfflineRun(res.Shadow, res.Version, origin, res.Status)
	return true
}

// Replay runs a shadow on a stored request, as backfill, backtest and the
// backtest command do: within the shadow's timeout, compared with the
// primary's stored outputs in order (by name when order is empty), as a
// result of origin stamped with the request's time. ok is false when ctx
// ended the run.
func Replay(ctx context.Context, s *registry.Model, in *understudy.StoredInput, order []understudy.TensorInfo, origin string) (res *understudy.ShadowResult, ok bool) {
	if len(order) == 0 {
		order = namesOf(in.Outputs)
	}
	res = &understudy.ShadowResult{RequestID: in.RequestID, Time: in.Time, Shadow: s.Name, Version: s.Version,
		Primary: in.Model, PrimaryVersion: in.Version, PrimaryLatency: in.Latency, ServedBy: in.ServedBy, Origin: origin}
	return res, run(ctx, s, in.Inputs, order, in.Outputs, res)
}

// primaryOutputs returns the serving primary's name and outputs, which
// order the comparison as on the live path; "" and nil without a primary.
func (m *Mirror) primaryOutputs() (string, []understudy.TensorInfo) {
	pm, ok := m.primaryModel()
	if !ok {
		return "", nil
	}
	defer pm.Release()
	return pm.Name, pm.Signature.Outputs
}

func (m *Mirror) primaryModel() (*registry.Model, bool) {
	if m.cfg.Primary == nil {
		return nil, false
	}
	return m.cfg.Primary()
}

// namesOf orders outputs by name, for a comparison without the primary's
// signature.
func namesOf(ts map[string]*understudy.Tensor) []understudy.TensorInfo {
	out := make([]understudy.TensorInfo, 0, len(ts))
	for name := range ts {
		out = append(out, understudy.TensorInfo{Name: name})
	}
	slices.SortFunc(out, func(a, b understudy.TensorInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func findModel(ms []*registry.Model, name, version string) *registry.Model {
	for _, s := range ms {
		if s.Name == name && s.Version == version {
			return s
		}
	}
	return nil
}
