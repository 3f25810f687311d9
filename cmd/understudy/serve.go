package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/understudy-ml/understudy/pkg/grpcapi"
	"github.com/understudy-ml/understudy/pkg/httpapi"
	"github.com/understudy-ml/understudy/pkg/metrics"
	"github.com/understudy-ml/understudy/pkg/onnx"
	"github.com/understudy-ml/understudy/pkg/registry"
	"github.com/understudy-ml/understudy/pkg/report"
	"github.com/understudy-ml/understudy/pkg/serving"
	"github.com/understudy-ml/understudy/pkg/shadow"
	"github.com/understudy-ml/understudy/pkg/sqlite"
	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file wires the server together: Run builds the runtime, the store,
// the registry, the mirror and the front ends from the Config and starts
// them, and Close stops them in order. What each part is told is in
// config.go, the runtime tuning in tuning.go, the scrape-time metrics in
// metrics.go.

// Main is the server as a value that tests can start and stop.
type Main struct {
	Config Config
	Log    zerolog.Logger
	// logBuffer batches the log's info lines; Close writes what is left.
	logBuffer *logBuffer
	// CanaryCheckEvery is how often a canary's verdict is checked for its
	// stop_on checks (0: every 10s); tests make it short.
	CanaryCheckEvery time.Duration
	// StoreOptions, if set, adjusts the store's options; tests use it to
	// make the database fill up.
	StoreOptions func(*sqlite.Options)

	rt *onnx.Runtime
	// lifecycle carries deployment saves and events to the store in order,
	// off the registry's lock.
	lifecycle chan func(context.Context)
	lcDone    chan struct{}
	lcCtx     context.Context
	lcCancel  context.CancelFunc
	// deploys saves the deployment, retrying until the store takes it.
	deploys   *deploySaver
	stopWatch context.CancelFunc
	watchDone chan struct{}
	reg       *registry.Registry
	mirror    *shadow.Mirror
	// backtests is the mirror, for the registry's events, which start
	// before it exists.
	backtests atomic.Pointer[shadow.Mirror]
	serving   *serving.Service
	metrics   *metrics.Metrics
	srv       *http.Server
	grpc      *grpcapi.Server
	grpcLn    net.Listener
	debugSrv  *http.Server
	tuning    runtimeTuning // what Run set; Close puts it back
	restoreGC int           // GOGC before Run
	ln        net.Listener
	serveErr  chan error

	// store is the backend, through its contract; threadStats reads the
	// counters only the SQLite backend has.
	store       store.Store
	threadStats func() sqlite.ThreadStats
	// storeThread says the store commits shadow results on a
	// low-priority thread of its own, which needs a scheduler slot.
	storeThread bool
}

// Run loads the runtime and the models and starts serving. It returns once
// the server is listening; Close stops it.
func (m *Main) Run(ctx context.Context) error {
	c := m.Config
	dev, err := onnx.ParseDevice(c.Device)
	if err != nil {
		return err
	}
	lib, err := findORTLib(c.ORTLib)
	if err != nil {
		return err
	}
	if m.rt, err = onnx.Open(lib); err != nil {
		return err
	}
	m.Log.Info().Str("onnxruntime", m.rt.Version()).Str("library", lib).Str("device", dev.String()).Str("version", Version).Msg("onnx runtime initialised")
	if err := m.rt.CheckDevice(dev); err != nil {
		return err
	}
	if st, err := os.Stat(c.ModelsDir); err != nil || !st.IsDir() {
		return fmt.Errorf("models directory %q does not exist; create it or pass --models-dir", c.ModelsDir)
	}
	// Before the store, which reports its commits to them.
	m.metrics = metrics.New()
	if err := m.openStore(ctx); err != nil {
		return err
	}

	m.lifecycle, m.lcDone = make(chan func(context.Context), 4096), make(chan struct{})
	m.lcCtx, m.lcCancel = context.WithCancel(context.Background())
	go m.storeLifecycle()
	m.deploys = newDeploySaver(m.store, m.Log)
	persisted, err := m.store.LoadDeployment(ctx)
	if _, shared := m.store.(store.DeploymentWatcher); err != nil && shared {
		// Starting from the models directory would save this replica's
		// own choice over the deployment the others serve.
		return fmt.Errorf("cannot read the deployment the replicas share: %w", err)
	} else if err != nil {
		m.Log.Error().Err(err).Msg("cannot read the saved deployment; starting from the models directory")
	}

	opts := onnx.Options{Device: dev, IntraOpThreads: c.IntraOpThreads}
	m.reg = registry.New(c.ModelsDir, func(data []byte) (*understudy.LoadedModel, error) {
		return m.rt.Load(data, opts)
	}, m.Log)
	m.reg.Defaults = registry.Settings{Sampling: c.ShadowSampling, Timeout: c.ShadowTimeout}
	// A store that replicas share holds the deployment they all follow.
	watcher, shared := m.store.(store.DeploymentWatcher)
	m.reg.Shared = shared
	m.reg.Settle, m.reg.Rescan = c.Settle, c.Rescan
	// As many runs as their threads fill the cores while requests do not
	// pile up; once they do, merged runs make the run a smaller share of
	// each request's CPU, and half the cores go to HTTP, JSON and the
	// store. On the 2-core benchmark machine one run at a time then served
	// 10–11% more requests per second than two.
	m.reg.MaxBatch = c.MaxBatch
	m.reg.BatchSlots = max(1, runtime.NumCPU()/max(1, c.IntraOpThreads))
	m.reg.BatchBusySlots = c.BatchRuns
	if c.BatchRuns == 0 {
		m.reg.BatchBusySlots = max(1, m.reg.BatchSlots/2)
	}
	m.reg.OnEvent = func(ev understudy.Event) {
		m.lifecycleDo(func(ctx context.Context) error { return m.store.RecordEvent(ctx, ev) })
		// A new shadow, or a new version, runs on the stored traffic.
		if mr := m.backtests.Load(); mr != nil && ev.Kind == understudy.EventLoaded {
			mr.Backtest(understudy.ModelRef{Name: ev.Model, Version: ev.Version})
		}
	}
	m.reg.OnDeploy = m.deploys.save
	m.reg.OnModel = func(info understudy.ModelInfo) {
		m.lifecycleDo(func(ctx context.Context) error { return m.store.RecordModel(ctx, info) })
	}
	// The shadow workers, and the store's thread for shadow results.
	extra := c.ShadowWorkers
	if m.storeThread {
		extra++
	}
	// And the thread that backfills and backtests.
	if c.BackfillBacklog > 0 || c.BacktestRows > 0 {
		extra++
	}
	var t runtimeTuning
	if os.Getenv("GOMAXPROCS") == "" {
		t.procs, t.extraProcs = runtime.GOMAXPROCS(0), extra
	}
	if os.Getenv("GOGC") == "" {
		t.gc = defaultGCPercent
		m.restoreGC = debug.SetGCPercent(t.gc)
	}
	m.tuning = t
	m.reg.OnShadows = t.apply(m.Log)
	if err := m.reg.LoadDir(c.Primary, persisted); err != nil {
		return err
	}
	// What start-up did is in the store before the first request, so that
	// GET /events is complete as soon as the server answers.
	m.deploys.flush(ctx)
	synced := make(chan struct{})
	m.lifecycleDo(func(context.Context) error { close(synced); return nil })
	<-synced
	watchCtx, stop := context.WithCancel(context.Background())
	m.stopWatch, m.watchDone = stop, make(chan struct{})
	go func() {
		defer close(m.watchDone)
		guarded := make(chan struct{})
		go func() { defer close(guarded); m.guardCanary(watchCtx) }()
		defer func() { <-guarded }()
		if !shared {
			m.reg.Watch(watchCtx)
			return
		}
		done := make(chan struct{})
		go func() { defer close(done); m.reg.Watch(watchCtx) }()
		// A promote, rollback or settings change on any replica reaches
		// this one here; the error is the context's, at shutdown.
		_ = watcher.WatchDeployment(watchCtx, func(d understudy.Deployment) { m.reg.Follow(d, "replica sync") })
		<-done
	}()

	m.serving = &serving.Service{Models: m.reg, OnPredict: m.onPredict, Canary: m.reg.AcquireCanary}
	httpapi.Version = Version
	api := &httpapi.Server{
		Models:      m.reg,
		Serving:     m.serving,
		Log:         m.Log,
		MaxBody:     int64(c.MaxBody),
		LogPayloads: c.LogPayloads,
		Ready:       m.reg.Ready,
		Degraded:    m.degraded,
		Labels:      m.store.SetLabels,
		Admin:       m.reg,
		AdminToken:  c.AdminToken,
		Report: func(ctx context.Context, q report.Query) (*report.Report, error) {
			q.Primary, _ = m.reg.Primary()
			rep, err := report.Build(ctx, m.store, q, report.DefaultThresholds, time.Now())
			if err == nil {
				rep.Store = m.storeHealth()
			}
			return rep, err
		},
		Pairs: func(ctx context.Context, f report.PairFilter) ([]report.Pair, error) {
			return report.Pairs(ctx, m.store, f)
		},
		Request: func(ctx context.Context, id string) (*report.RequestDetail, error) {
			return report.Request(ctx, m.store, id)
		},
		ReportToken: c.ReportToken,
		Events: func(ctx context.Context, model string, limit int) ([]understudy.Event, error) {
			return m.store.Events(ctx, store.EventFilter{Model: model, Limit: limit})
		},
		Extra: func(r chi.Router) {
			r.Method(http.MethodGet, "/metrics", m.metrics.Handler())
		},
	}
	busyAt := int64(c.ShedAt)
	if busyAt == 0 {
		busyAt = int64(shedAt(runtime.NumCPU(), c.ShadowWorkers))
	}
	busy := func() bool { return c.ShedWhenBusy && m.serving.InFlight() >= busyAt }
	scfg := shadow.Config{Workers: c.ShadowWorkers, QueueSize: c.ShadowQueue, Nice: c.ShadowNice, Idle: c.ShadowSched == "idle", Busy: busy,
		Primary: m.reg.AcquirePrimaryModel, InFlight: m.serving.InFlight, Arrived: m.serving.Arrived,
		History: m.store, Backlog: c.BackfillBacklog, MaxAge: c.BackfillMaxAge, IdleFor: c.BackfillIdle, BacktestRows: c.BacktestRows,
		OnBacktest: m.backtested}
	if c.ShedWhenBusy && c.ShedDelay > 0 {
		scfg.MaxQueueDelay = c.ShedDelay
	}
	m.mirror = shadow.New(scfg, m.reg.Shadows, m.store, m.metrics, m.Log.With().Str("component", "shadow").Logger())
	m.backtests.Store(m.mirror)
	// Shadows loaded at start run on the stored traffic too; what they
	// already have a result for (live, or an earlier backtest cut short by
	// a restart) is skipped.
	for _, s := range m.reg.Shadows() {
		m.mirror.Backtest(s.Ref())
		s.Release()
	}
	m.registerGauges()

	m.ln, err = net.Listen("tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", c.Addr, err)
	}
	// ReadTimeout is a backstop for bodies no handler reads; the handlers
	// that read one give it a tighter deadline (httpapi.Server.BodyTimeout).
	// net/http lifts the deadline once a body has been read, so it never
	// cancels a long run. No WriteTimeout: it would cut long runs short.
	m.srv = &http.Server{
		Handler:           api.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		IdleTimeout:       2 * time.Minute,
	}
	if c.GRPCAddr != "" {
		if m.grpcLn, err = net.Listen("tcp", c.GRPCAddr); err != nil {
			m.ln.Close()
			return fmt.Errorf("--grpc-addr %s: %w", c.GRPCAddr, err)
		}
		m.grpc = &grpcapi.Server{Models: m.reg, Serving: m.serving, Ready: m.reg.Ready, Version: Version,
			MaxMessage: int(c.MaxBody), Log: m.Log.With().Str("component", "grpc").Logger()}
		m.grpc.Serve(m.grpcLn)
		m.Log.Info().Str("addr", m.grpcLn.Addr().String()).Msg("grpc listening")
	}
	m.serveErr = make(chan error, 1)
	go func() { m.serveErr <- m.srv.Serve(m.ln) }()
	if c.DebugAddr != "" {
		if err := m.serveDebug(c.DebugAddr); err != nil {
			return err
		}
	}
	m.Log.Info().Str("addr", m.ln.Addr().String()).Str("url", m.URL()).Msg("listening")
	return nil
}

// lifecycleDo queues a store write of the model lifecycle without blocking
// the registry; if the queue is full the write is dropped and logged.
func (m *Main) lifecycleDo(f func(context.Context) error) {
	select {
	case m.lifecycle <- func(ctx context.Context) {
		if err := f(ctx); err != nil {
			m.Log.Error().Err(err).Msg("could not store a deployment change or model event")
		}
	}:
	default:
		m.Log.Error().Msg("lifecycle queue full; a deployment change or model event was not stored")
	}
}

func (m *Main) storeLifecycle() {
	defer close(m.lcDone)
	for f := range m.lifecycle {
		ctx, cancel := context.WithTimeout(m.lcCtx, 10*time.Second)
		f(ctx)
		cancel()
	}
}

// onPredict hands a primary prediction to the metrics, the store and the
// mirror. Each of them only enqueues, so the request never waits.
func (m *Main) onPredict(p *understudy.Prediction) {
	role := "primary"
	if p.ServedBy == understudy.ServedCandidate {
		role = "canary"
	}
	m.metrics.Run(p.Model, p.Version, role, p.Status, p.Latency)
	m.store.WritePrediction(p)
	switch {
	case p.Status == understudy.StatusOK:
		m.mirror.Submit(p, p.Signature.Outputs)
	case p.CanaryFailure != nil:
		// Both failed: the canary's pair is still its own failure.
		m.store.WriteShadowResult(p.CanaryFailure)
	}
}

// backtested records what a backtest did as a lifecycle event.
func (m *Main) backtested(s shadow.BacktestSummary) {
	if s.Ran == 0 && s.NotBacktestable == 0 && s.Err == nil {
		// Nothing new: no stored traffic, or a restart with every request
		// already paired. Not worth an event at every start.
		return
	}
	detail := fmt.Sprintf("ran %d of the newest %d requests of %s in %.1f s; %d already had a result, %d not backtestable (inputs over the input cap)",
		s.Ran, s.Considered, s.Primary, s.Took.Seconds(), s.Paired, s.NotBacktestable)
	if s.Err != nil {
		detail += "; stopped early: " + s.Err.Error()
	}
	ev := understudy.Event{Time: time.Now(), Kind: understudy.EventBacktest, Model: s.Shadow.Name, Version: s.Shadow.Version, Actor: "backtest", Detail: detail}
	m.lifecycleDo(func(ctx context.Context) error { return m.store.RecordEvent(ctx, ev) })
}

// degraded lists what is wrong while the server still serves.
func (m *Main) degraded() []string {
	var out []string
	if w := m.reg.SyncWarning(); w != "" {
		out = append(out, w)
	}
	if h, ok := m.store.(storeHealth); ok {
		if w := h.Degraded(); w != "" {
			out = append(out, w)
		}
	}
	return out
}

// GRPCAddr returns the address gRPC listens on, or "" when it is off.
func (m *Main) GRPCAddr() string {
	if m.grpcLn == nil {
		return ""
	}
	return m.grpcLn.Addr().String()
}

// URL returns the base URL of the running server.
func (m *Main) URL() string {
	if m.ln == nil {
		return ""
	}
	return "http://" + m.ln.Addr().String()
}

// Close shuts down in order: in-flight requests finish, then sessions are
// destroyed, then the ONNX Runtime environment.
func (m *Main) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), m.Config.ShutdownTimeout)
	defer cancel()
	var errs []error
	var lost int64 // rows the store could not write
	if m.srv != nil {
		if err := m.srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("http shutdown: %w", err))
		}
		// serveErr is nil when Run failed before serving started.
		if m.serveErr == nil {
		} else if err := <-m.serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
		m.srv = nil
	}
	if m.grpc != nil {
		m.grpc.Stop(ctx)
		m.grpc = nil
	}
	if m.debugSrv != nil {
		m.debugSrv.Close()
		m.debugSrv = nil
	}
	if m.stopWatch != nil {
		m.stopWatch()
		<-m.watchDone
		m.stopWatch = nil
	}
	if m.mirror != nil {
		drain, cancel := context.WithTimeout(ctx, m.Config.DrainTimeout)
		if err := m.mirror.Close(drain); err != nil {
			m.Log.Warn().Err(err).Msg("shadow queue")
		}
		cancel()
		m.mirror = nil
	}
	if m.reg != nil {
		if err := m.reg.Close(ctx); err != nil {
			errs = append(errs, err)
			// Destroying the environment under a live session would crash.
			m.rt = nil
		}
		m.reg = nil
	}
	if m.tuning.procs > 0 {
		runtime.GOMAXPROCS(m.tuning.procs)
	}
	if m.tuning.gc > 0 {
		debug.SetGCPercent(m.restoreGC)
	}
	m.tuning = runtimeTuning{}
	if m.lifecycle != nil {
		close(m.lifecycle)
		select {
		case <-m.lcDone:
		case <-ctx.Done():
			// A store that hangs must not hold shutdown past its
			// deadline: what is still queued fails at once.
			m.lcCancel()
			<-m.lcDone
			m.Log.Error().Msg("shutdown deadline passed with model events still queued for the store; they were not stored")
		}
		m.lifecycle = nil
	}
	m.deploys.stop(ctx)
	m.deploys = nil
	if m.store != nil {
		if err := m.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close store: %w", err))
		}
		st := m.store.Stats()
		lost = st.Predictions.Lost + st.ShadowResults.Lost + st.Skips.Lost
		m.Log.Info().Int64("predictions", st.Predictions.Written).Int64("shadow_results", st.ShadowResults.Written).
			Int64("lost", lost).Msg("store flushed and closed")
		m.store, m.threadStats = nil, nil
	}
	if m.rt != nil {
		if err := m.rt.Close(); err != nil {
			errs = append(errs, fmt.Errorf("destroy onnx runtime: %w", err))
		}
		m.rt = nil
	}
	switch {
	case len(errs) == 0 && lost > 0:
		m.Log.Warn().Int64("lost_rows", lost).Msg("shut down; some rows could not be stored")
	case len(errs) == 0:
		m.Log.Info().Msg("shut down cleanly")
	}
	if m.logBuffer != nil {
		m.logBuffer.Close()
	}
	return errors.Join(errs...)
}
