// Package shadow mirrors primary requests to shadow models off the request
// path. Submitting never blocks; a bounded pool of low-priority workers runs
// the shadows, compares their answers with the primary's and stores them.
//
// It owns the queue, the workers and their scheduling priority, sampling
// and load shedding. It imports the domain and pkg/registry (the shadows,
// reference-counted, with their settings); never an adapter: results go
// to the domain's understudy.Store and counts to its Observer interface, so
// it must not import pkg/onnx, a store backend, pkg/metrics or the APIs.
package shadow

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/understudy-ml/understudy/pkg/registry"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

const (
	// pollInterval is how often a worker without a job looks at the queue.
	pollInterval = time.Millisecond
	// parkAfter is how many empty polls in a row make a worker block on
	// the queue instead.
	parkAfter = 100
)

// Config sizes the mirror.
type Config struct {
	// Workers is the number of concurrent shadow runs. The default leaves
	// at least half the cores to the primary.
	Workers int
	// QueueSize bounds the jobs waiting for a worker; beyond it jobs are
	// dropped and counted.
	QueueSize int
	// Nice is the scheduling niceness of shadow worker threads (0–19), so
	// that the kernel prefers request handling under contention.
	Nice int
	// Idle puts shadow worker threads in the SCHED_IDLE class instead: they
	// run only on CPU time nothing else wants, so under saturation shadows
	// fall behind and shed load instead of taking CPU from the primary.
	Idle bool
	// Busy, if set, reports that the primary is saturated; a job taken
	// off the queue then is dropped (and counted) instead of run, so that
	// shadows give their CPU back exactly when the primary needs it.
	Busy func() bool
	// Primary, if set, returns the primary, acquired: for a request a
	// canary answered, the primary runs off the path as its shadow.
	Primary func() (*registry.Model, bool)
	// MaxQueueDelay, if positive, replaces Busy by admission by queue
	// delay: a worker sheds a job only if the request it mirrors is older
	// than this when the worker takes it (the primary's own latency
	// aside). With idle-class workers a job waits only while the primary
	// uses the cores, so the delay measures the primary's load, and a
	// shadow uses every cycle the primary leaves idle.
	MaxQueueDelay time.Duration

	// Lossless shadowing (offline.go). History, with Backlog > 0, defers
	// the jobs that shedding, a full queue or shutdown would drop into
	// the store's backlog, at most Backlog of them pending; a backfill
	// worker runs them once the server has been idle for IdleFor, and
	// drops those older than MaxAge. With BacktestRows > 0, a shadow
	// that Backtest names runs on the newest BacktestRows stored
	// requests of the primary. InFlight counts the primary's requests in
	// flight and Arrived those since the start, for telling when the
	// server is idle: a request that came and went between two looks at
	// InFlight still shows in Arrived.
	History      understudy.History
	Backlog      int64
	MaxAge       time.Duration
	IdleFor      time.Duration
	BacktestRows int
	InFlight     func() int64
	Arrived      func() int64
	// OnBacktest, if set, is told what each backtest did, on the worker's
	// thread.
	OnBacktest func(BacktestSummary)
}

// DefaultWorkers is half the cores, at least one.
func DefaultWorkers() int { return max(1, runtime.NumCPU()/2) }

// Observer receives counts for metrics. Implementations must be cheap and
// safe for concurrent use.
type Observer interface {
	ShadowRun(shadow, version, status string, latency time.Duration)
	// Skipped counts sampled-out jobs, and jobs dropped for DropShed.
	Skipped(shadow, version string, sampledOut, dropped int64)
	// Deferred counts jobs deferred into the backlog.
	Deferred(shadow, version string, n int64)
	// Dropped counts deferred or backtest jobs dropped for another reason
	// (understudy.Drop*).
	Dropped(shadow, version, reason string, n int64)
	// OfflineRun counts one run of a backfill or backtest.
	OfflineRun(shadow, version, origin, status string)
}

type nopObserver struct{}

func (nopObserver) ShadowRun(string, string, string, time.Duration) {}
func (nopObserver) Skipped(string, string, int64, int64)            {}
func (nopObserver) Deferred(string, string, int64)                  {}
func (nopObserver) Dropped(string, string, string, int64)           {}
func (nopObserver) OfflineRun(string, string, string, string)       {}

type job struct {
	pred    *understudy.Prediction
	outputs []understudy.TensorInfo // the primary's, to order the comparison
	model   *registry.Model
	// primaryRun says the model is the primary, run as the shadow of a
	// request the canary answered (canary.go).
	primaryRun bool
}

// Mirror is the shadow queue and its workers.
type Mirror struct {
	cfg     Config
	shadows func() []*registry.Model
	store   understudy.Store
	obs     Observer
	log     zerolog.Logger

	queue chan job

	mu     sync.RWMutex // guards closed against concurrent Submit
	closed bool

	// base is cancelled when the drain deadline passes, terminating the
	// runs still going.
	base     context.Context
	abort    context.CancelFunc
	draining chan struct{}
	wg       sync.WaitGroup

	tidsMu sync.Mutex
	tids   []int
	niceOK atomic.Bool

	// rotate turns the order in which shadows are offered each request,
	// so that equal shadows get equal shares of a full queue.
	rotate atomic.Uint32
	off    offline
}

// New returns a started mirror. shadows returns the current shadows, each
// acquired; the mirror releases them.
func New(cfg Config, shadows func() []*registry.Model, store understudy.Store, obs Observer, log zerolog.Logger) *Mirror {
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers()
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 1024
	}
	if obs == nil {
		obs = nopObserver{}
	}
	base, abort := context.WithCancel(context.Background())
	m := &Mirror{
		cfg: cfg, shadows: shadows, store: store, obs: obs, log: log,
		queue: make(chan job, cfg.QueueSize),
		base:  base, abort: abort,
		draining: make(chan struct{}),
	}
	ready := make(chan struct{}, cfg.Workers)
	for range cfg.Workers {
		m.wg.Add(1)
		go m.worker(ready)
	}
	for range cfg.Workers {
		<-ready
	}
	m.startOffline()
	if !m.niceOK.Load() && cfg.Nice > 0 {
		log.Warn().Int("nice", cfg.Nice).Msg("could not lower the priority of shadow worker threads; shadows run at the primary's priority")
	}
	return m
}

// QueueDepth returns the number of jobs waiting for a worker.
func (m *Mirror) QueueDepth() int { return len(m.queue) }

// WorkerTIDs returns the OS thread ids of the workers, for checking their
// priority.
func (m *Mirror) WorkerTIDs() []int {
	m.tidsMu.Lock()
	defer m.tidsMu.Unlock()
	return append([]int(nil), m.tids...)
}

// Sampled decides, reproducibly from the request id, whether a request goes
// to a shadow sampled at rate.
func Sampled(requestID, shadow string, rate float64) bool {
	if rate >= 1 {
		return true
	}
	if rate <= 0 {
		return false
	}
	h := fnv.New64a()
	h.Write([]byte(shadow))
	h.Write([]byte{0})
	h.Write([]byte(requestID))
	// FNV alone leaves the high bits poorly mixed for ids that differ only
	// at the end (req-1, req-2…); murmur3's finaliser spreads them.
	x := h.Sum64()
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return float64(x>>11)/(1<<53) < rate
}

// Submit queues a successful primary prediction for every shadow that
// samples it. It never blocks: a full queue drops the job and counts it.
func (m *Mirror) Submit(p *understudy.Prediction, primaryOutputs []understudy.TensorInfo) {
	if p.Canary != "" {
		m.submitCanary(p)
		return
	}
	m.submit(p, primaryOutputs, "")
}

// submit queues p for every shadow but the one named skip.
func (m *Mirror) submit(p *understudy.Prediction, primaryOutputs []understudy.TensorInfo, skip string) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return
	}
	shadows := m.shadows()
	// Each shadow is offered first in turn, so that a queue that fills
	// up, or a worker that sheds by queue delay, does not always turn the
	// same shadow away: equal shadows get equal shares.
	n, k := len(shadows), 0
	if n > 1 {
		k = int(m.rotate.Add(1) % uint32(n))
	}
	for i := range n {
		s := shadows[(i+k)%n]
		set := s.Settings()
		if set.Paused || s.Name == skip {
			s.Release()
			continue
		}
		if !Sampled(p.ID, s.Name, set.Sampling) {
			m.skip(s, p.Time, 1, 0)
			s.Release()
			continue
		}
		select {
		case m.queue <- job{pred: p, outputs: primaryOutputs, model: s}:
		default:
			m.shed(s, p)
			s.Release()
		}
	}
}

func (m *Mirror) skip(s *registry.Model, at time.Time, sampledOut, dropped int64) {
	if m.store != nil {
		m.store.CountSkips(s.Name, s.Version, at, sampledOut, dropped)
	}
	m.obs.Skipped(s.Name, s.Version, sampledOut, dropped)
}

func (m *Mirror) worker(ready chan<- struct{}) {
	defer m.wg.Done()
	// The thread keeps its lowered priority for the worker's whole life and
	// is never handed back to the Go scheduler: a locked goroutine that
	// exits takes its thread with it.
	runtime.LockOSThread()
	tid := unix.Gettid()
	m.lowerPriority(tid)
	m.tidsMu.Lock()
	m.tids = append(m.tids, tid)
	m.tidsMu.Unlock()
	ready <- struct{}{}
	// A busy worker polls instead of blocking on the queue: a worker
	// blocked on the channel would have to be woken by the request that
	// submits the job, and on a VM that wake-up is a costly futex call on
	// the request path. Polling costs a timer tick per millisecond on an
	// idle-priority thread, so a worker that found nothing for parkAfter
	// blocks on the queue instead: only the first job after a quiet spell
	// pays for a wake-up, and an idle server uses no CPU.
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	idle := 0
	for {
		select {
		case j := <-m.queue:
			m.handle(j)
			idle = 0
			continue
		default:
		}
		if idle >= parkAfter {
			tick.Stop()
			select {
			case j := <-m.queue:
				m.handle(j)
			case <-m.draining:
				m.drain()
				return
			}
			idle = 0
			tick.Reset(pollInterval)
			continue
		}
		select {
		case <-m.draining:
			m.drain()
			return
		case <-tick.C:
			idle++
		}
	}
}

// lowerPriority puts the calling thread, whose id is tid, in the idle class
// or at the configured niceness.
func (m *Mirror) lowerPriority(tid int) {
	if m.cfg.Idle {
		attr := unix.SchedAttr{Policy: unix.SCHED_IDLE}
		if err := unix.SchedSetAttr(tid, &attr, 0); err == nil {
			m.niceOK.Store(true)
		}
	} else if m.cfg.Nice > 0 {
		if err := unix.Setpriority(unix.PRIO_PROCESS, tid, m.cfg.Nice); err == nil {
			m.niceOK.Store(true)
		}
	}
}

// drain runs what is left in the queue once the mirror is closing.
func (m *Mirror) drain() {
	for {
		select {
		case j := <-m.queue:
			m.handle(j)
		default:
			return
		}
	}
}

func (m *Mirror) handle(j job) {
	defer j.model.Release()
	if j.primaryRun {
		m.runPrimary(j)
		return
	}
	if m.base.Err() != nil || m.shedding(j.pred) {
		// Past the drain deadline, or shed: deferred, or else dropped.
		m.shed(j.model, j.pred)
		return
	}
	res := &understudy.ShadowResult{RequestID: j.pred.ID, Shadow: j.model.Name, Version: j.model.Version, Primary: j.pred.Model, PrimaryVersion: j.pred.Version, PrimaryLatency: j.pred.Latency,
		ServedBy: j.pred.ServedBy, Origin: understudy.OriginLive}
	if !run(m.base, j.model, j.pred.Inputs, j.outputs, j.pred.Outputs, res) {
		m.shed(j.model, j.pred)
		return
	}
	res.Time = time.Now()
	if m.store != nil {
		m.store.WriteShadowResult(res)
	}
	m.obs.ShadowRun(res.Shadow, res.Version, res.Status, res.Latency)
}

// run runs a shadow on inputs, within its timeout and until base ends, and
// fills res with the outcome: its latency, outputs and comparison with the
// primary's outputs (ordered by order), or its error. It reports false,
// filling nothing, when the run failed because base ended.
func run(base context.Context, s *registry.Model, inputs map[string]*understudy.Tensor, order []understudy.TensorInfo, primary map[string]*understudy.Tensor, res *understudy.ShadowResult) bool {
	set := s.Settings()
	ctx, cancel := context.WithTimeout(base, set.Timeout)
	defer cancel()
	var stats understudy.RunStats
	start := time.Now()
	out, err := safeRun(understudy.WithRunStats(ctx, &stats), s.Runner, s.Signature, inputs)
	wall := time.Since(start)
	if err != nil && base.Err() != nil {
		return false
	}
	// A shadow thread runs at idle priority, so its wall time includes
	// waiting for CPU the primary was using. Its latency is its on-CPU time
	// instead: with one intra-op thread, what the run would take as the
	// primary. The timeout still counts wall time.
	res.Latency, res.CPU = stats.CPU, stats.CPU
	if stats.CPU <= 0 {
		res.Latency = wall
	}
	switch {
	case err == nil:
		res.Status, res.Outputs = understudy.StatusOK, out
		res.Compare = understudy.Compare(order, primary, out)
	case errors.Is(err, context.DeadlineExceeded):
		res.Status, res.Error = understudy.StatusTimeout, fmt.Sprintf("terminated after the %v timeout", set.Timeout)
	default:
		res.Status, res.Error = understudy.StatusError, err.Error()
	}
	return true
}

// safeRun runs the shadow on the inputs it declares, turning a panic into an
// error so that the worker lives on.
func safeRun(ctx context.Context, r understudy.Runner, sig understudy.Signature, inputs map[string]*understudy.Tensor) (out map[string]*understudy.Tensor, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("shadow run panicked: %v", p)
		}
	}()
	in := inputs
	if len(sig.Inputs) != len(inputs) {
		in = make(map[string]*understudy.Tensor, len(sig.Inputs))
		for _, ti := range sig.Inputs {
			in[ti.Name] = inputs[ti.Name]
		}
	}
	return r.Run(ctx, in)
}

// Close stops accepting jobs and drains the queue until ctx is done; jobs
// that cannot run by then are recorded as dropped and runs in progress are
// terminated.
func (m *Mirror) Close(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	close(m.draining)
	m.stopOffline()
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	select {
	case <-done:
		m.abort()
		return nil
	case <-ctx.Done():
		m.abort()
		<-done
		return fmt.Errorf("shadow queue not drained before the deadline; the rest was recorded as dropped")
	}
}
