package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/peterbourgon/ff/v3"
	"github.com/prometheus/client_golang/prometheus"
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

// Version is set at build time with -ldflags "-X main.Version=…".
var Version = "dev"

// defaultORTLib may be set at build time to the library scripts/fetch-ort.sh
// cached, so that the binary finds it with no configuration.
var defaultORTLib = ""

// ortCacheRel is where scripts/fetch-ort.sh caches the library, relative to
// the repository root.
const ortCacheRel = ".ort/1.30.0/libonnxruntime.so"

// Config is everything `understudy serve` can be told. Each flag can also be
// set with the environment variable UNDERSTUDY_<FLAG>, e.g. UNDERSTUDY_ADDR.
type Config struct {
	// Addr is the listen address (UNDERSTUDY_ADDR, default 127.0.0.1:8080).
	Addr string
	// GRPCAddr is the Open Inference Protocol gRPC listen address
	// (UNDERSTUDY_GRPC_ADDR, default 127.0.0.1:8081; empty: no gRPC).
	GRPCAddr string
	// ModelsDir holds the *.onnx files (UNDERSTUDY_MODELS_DIR, default models).
	ModelsDir string
	// Primary is the file stem of the primary model (UNDERSTUDY_PRIMARY).
	Primary string
	// DB is the SQLite database file (UNDERSTUDY_DB, default understudy.db).
	DB string
	// IntraOpThreads is each session's intra-op pool size (UNDERSTUDY_INTRA_OP_THREADS, default 1).
	IntraOpThreads int
	// MaxBatch merges requests that wait for a busy primary into runs of up
	// to this many rows (UNDERSTUDY_MAX_BATCH, default 0: each request runs
	// alone). Only for models whose output rows depend on their own input
	// rows alone, which ONNX cannot tell.
	MaxBatch int
	// BatchRuns is how many runs of the primary may be in flight once
	// requests pile up (UNDERSTUDY_BATCH_RUNS, default 0: half the cores
	// divided by the intra-op threads, at least 1). Until then there is
	// one run per core.
	BatchRuns int
	// Device is cpu, cuda or cuda:N (UNDERSTUDY_DEVICE, default cpu).
	Device string
	// LogFormat is json or console (UNDERSTUDY_LOG_FORMAT, default json).
	LogFormat string
	// LogLevel is debug, info, warn or error (UNDERSTUDY_LOG_LEVEL, default info).
	LogLevel string
	// LogPayloads logs request bodies at debug level (UNDERSTUDY_LOG_PAYLOADS, default false).
	LogPayloads bool
	// MaxBody caps request bodies (UNDERSTUDY_MAX_BODY, default 16MiB).
	MaxBody byteSize
	// ORTLib is the ONNX Runtime shared library (UNDERSTUDY_ORT_LIB).
	ORTLib string
	// ShutdownTimeout bounds graceful shutdown (UNDERSTUDY_SHUTDOWN_TIMEOUT, default 30s).
	ShutdownTimeout time.Duration
	// ShadowWorkers is the number of concurrent shadow runs (UNDERSTUDY_SHADOW_WORKERS, default half the cores).
	ShadowWorkers int
	// ShadowQueue bounds the shadow jobs waiting for a worker (UNDERSTUDY_SHADOW_QUEUE, default 1024).
	ShadowQueue int
	// ShadowNice is the niceness of shadow worker threads (UNDERSTUDY_SHADOW_NICE, default 10).
	ShadowNice int
	// ShadowSched is idle (SCHED_IDLE) or nice (UNDERSTUDY_SHADOW_SCHED, default idle).
	ShadowSched string
	// ShadowSampling is the default share of requests mirrored to each shadow (UNDERSTUDY_SHADOW_SAMPLING, default 1).
	ShadowSampling float64
	// ShadowTimeout bounds one shadow run by default (UNDERSTUDY_SHADOW_TIMEOUT, default 5s).
	ShadowTimeout time.Duration
	// InputCap is the largest request inputs stored in full (UNDERSTUDY_INPUT_CAP, default 64KiB).
	InputCap byteSize
	// RetainDays deletes stored rows older than this (UNDERSTUDY_RETAIN_DAYS, default 0: keep).
	RetainDays int
	// RetainRows keeps only the newest rows of each table (UNDERSTUDY_RETAIN_ROWS, default 0: keep).
	RetainRows int64
	// DrainTimeout bounds how long shutdown waits for queued shadow jobs (UNDERSTUDY_DRAIN_TIMEOUT, default 10s).
	DrainTimeout time.Duration
	// ShedWhenBusy drops shadow jobs while the primary's requests in flight
	// fill the cores the shadow workers leave it (UNDERSTUDY_SHED_WHEN_BUSY,
	// default true); see shedAt.
	ShedWhenBusy bool
	// ShedAt is how many of the primary's requests in flight count as busy
	// (UNDERSTUDY_SHED_AT, default 0: shedAt of the cores and workers).
	ShedAt int
	// ReportToken guards /report and /api/* (UNDERSTUDY_REPORT_TOKEN; empty: public).
	ReportToken string
	// AdminToken enables the admin endpoints (UNDERSTUDY_ADMIN_TOKEN; empty: disabled).
	AdminToken string
	// Settle is how long a new model file must stay unchanged before loading (UNDERSTUDY_SETTLE, default 1s).
	Settle time.Duration
	// Rescan is the period of the full models-directory scan (UNDERSTUDY_RESCAN, default 5s).
	Rescan time.Duration
	// FlushInterval is the longest a stored row waits for its batch to be
	// committed (UNDERSTUDY_FLUSH_INTERVAL, default 50ms): what kill -9 can lose.
	FlushInterval time.Duration
	// DebugAddr, if set, serves Go's pprof profiles on a listener of its
	// own (UNDERSTUDY_DEBUG_ADDR), never on the public address.
	DebugAddr string
}

// Main is the server as a value that tests can start and stop.
type Main struct {
	Config Config
	Log    zerolog.Logger
	// StoreOptions, if set, adjusts the store's options; tests use it to
	// make the database fill up.
	StoreOptions func(*sqlite.Options)

	rt *onnx.Runtime
	// lifecycle carries deployment saves and events to the store in order,
	// off the registry's lock.
	lifecycle chan func(context.Context)
	lcDone    chan struct{}
	stopWatch context.CancelFunc
	watchDone chan struct{}
	reg       *registry.Registry
	mirror    *shadow.Mirror
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
}

// NewMain returns a Main with the default configuration.
func NewMain() *Main {
	return &Main{
		Config: Config{
			Addr:            "127.0.0.1:8080",
			GRPCAddr:        "127.0.0.1:8081",
			ModelsDir:       "models",
			DB:              "understudy.db",
			IntraOpThreads:  1,
			Device:          "cpu",
			LogFormat:       "json",
			LogLevel:        "info",
			MaxBody:         16 << 20,
			ShutdownTimeout: 30 * time.Second,
			ShadowWorkers:   shadow.DefaultWorkers(),
			ShadowQueue:     1024,
			ShadowNice:      10,
			ShadowSched:     "idle",
			ShadowSampling:  1,
			ShadowTimeout:   5 * time.Second,
			InputCap:        64 << 10,
			FlushInterval:   sqlite.DefaultFlushInterval,
			DrainTimeout:    10 * time.Second,
			Settle:          time.Second,
			ShedWhenBusy:    true,
			Rescan:          5 * time.Second,
		},
		Log: zerolog.New(os.Stderr).With().Timestamp().Logger(),
	}
}

// ParseFlags reads flags, then UNDERSTUDY_* environment variables for flags
// not given on the command line.
func (m *Main) ParseFlags(args []string, stderr io.Writer) error {
	c := &m.Config
	fs := flag.NewFlagSet("understudy serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Addr, "addr", c.Addr, "listen address")
	fs.StringVar(&c.GRPCAddr, "grpc-addr", c.GRPCAddr, "Open Inference Protocol v2 gRPC listen address (empty: no gRPC)")
	fs.StringVar(&c.ModelsDir, "models-dir", c.ModelsDir, "directory of *.onnx model files")
	fs.StringVar(&c.Primary, "primary", c.Primary, "file stem of the primary model (default: the only model, else the oldest file)")
	fs.StringVar(&c.DB, "db", c.DB, "SQLite database file")
	fs.IntVar(&c.IntraOpThreads, "intra-op-threads", c.IntraOpThreads, "intra-op threads per session (1 suits concurrent requests)")
	fs.IntVar(&c.MaxBatch, "max-batch", c.MaxBatch, "merge requests waiting for a busy primary into runs of up to this many rows (0: off); only for models whose rows are independent")
	fs.IntVar(&c.BatchRuns, "batch-runs", c.BatchRuns, "with --max-batch: runs of the primary in flight once requests pile up (0: half the cores)")
	fs.StringVar(&c.Device, "device", c.Device, "cpu, cuda or cuda:N")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "json, or console for humans")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	fs.BoolVar(&c.LogPayloads, "log-payloads", c.LogPayloads, "log request bodies at debug level (they may hold personal data)")
	fs.Var(&c.MaxBody, "max-body", "maximum request body size, e.g. 16MiB or 1048576")
	fs.StringVar(&c.ORTLib, "ort-lib", c.ORTLib, "ONNX Runtime shared library (default: the copy make fetched)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "how long graceful shutdown may take")
	fs.IntVar(&c.ShadowWorkers, "shadow-workers", c.ShadowWorkers, "concurrent shadow runs (the default is half the cores)")
	fs.IntVar(&c.ShadowQueue, "shadow-queue", c.ShadowQueue, "shadow jobs that may wait; beyond this they are dropped and counted")
	fs.IntVar(&c.ShadowNice, "shadow-nice", c.ShadowNice, "niceness of shadow worker threads with --shadow-sched nice, 0-19")
	fs.StringVar(&c.ShadowSched, "shadow-sched", c.ShadowSched, "scheduling of shadow worker threads and of the store's thread for their results: idle (SCHED_IDLE: only spare CPU) or nice")
	fs.Float64Var(&c.ShadowSampling, "shadow-sampling", c.ShadowSampling, "default share of requests mirrored to each shadow, 0-1")
	fs.DurationVar(&c.ShadowTimeout, "shadow-timeout", c.ShadowTimeout, "default time limit of one shadow run")
	fs.Var(&c.InputCap, "input-cap", "largest request inputs stored in full; above it only their sha256")
	fs.DurationVar(&c.FlushInterval, "flush-interval", c.FlushInterval, "longest a stored row waits for its batch to be committed; kill -9 can lose this much traffic")
	fs.IntVar(&c.RetainDays, "retain-days", c.RetainDays, "delete stored rows older than this many days (0 keeps all)")
	fs.Int64Var(&c.RetainRows, "retain-rows", c.RetainRows, "keep only this many newest rows per table (0 keeps all)")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", c.DrainTimeout, "how long shutdown waits for queued shadow jobs")
	fs.BoolVar(&c.ShedWhenBusy, "shed-when-busy", c.ShedWhenBusy, "drop shadow jobs while the primary's requests fill the cores the shadow workers leave it")
	fs.IntVar(&c.ShedAt, "shed-at", c.ShedAt, "requests in flight at which --shed-when-busy drops shadow jobs; 0: cores minus shadow workers, at least 1")
	fs.StringVar(&c.ReportToken, "report-token", c.ReportToken, "bearer token for /report and /api/* (empty: public); a browser may open /report?token=… once")
	fs.StringVar(&c.AdminToken, "admin-token", c.AdminToken, "bearer token for promote, rollback and shadow settings (empty: disabled)")
	fs.DurationVar(&c.Settle, "settle", c.Settle, "how long a new or changed model file must stay unchanged before it is loaded")
	fs.DurationVar(&c.Rescan, "rescan", c.Rescan, "period of the full models-directory scan that backs up file events")
	fs.StringVar(&c.DebugAddr, "debug-addr", c.DebugAddr, "serve Go pprof profiles at this address, e.g. 127.0.0.1:6060 (empty: off)")
	if err := ff.Parse(fs, args, ff.WithEnvVarPrefix("UNDERSTUDY")); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errUsage
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %v", fs.Args())
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
		zero bool // 0 is allowed
	}{
		{"shutdown-timeout", c.ShutdownTimeout, false},
		{"shadow-timeout", c.ShadowTimeout, false},
		{"drain-timeout", c.DrainTimeout, true},
		{"settle", c.Settle, true},
		{"rescan", c.Rescan, false},
	} {
		if d.v < 0 || (d.v == 0 && !d.zero) {
			return fmt.Errorf("--%s %v: want a positive duration, e.g. 5s", d.flag, d.v)
		}
	}
	if c.ShadowSampling < 0 || c.ShadowSampling > 1 || math.IsNaN(c.ShadowSampling) {
		return fmt.Errorf("--shadow-sampling %v: want a share between 0 and 1", c.ShadowSampling)
	}
	if c.ShadowSched != "idle" && c.ShadowSched != "nice" {
		return fmt.Errorf("--shadow-sched %q: want idle or nice", c.ShadowSched)
	}
	if c.ShedAt < 0 {
		return fmt.Errorf("--shed-at %d: want 0 (cores minus shadow workers) or a number of requests", c.ShedAt)
	}
	if c.MaxBatch < 0 {
		return fmt.Errorf("--max-batch %d: want 0 (off) or a number of rows", c.MaxBatch)
	}
	if c.BatchRuns < 0 {
		return fmt.Errorf("--batch-runs %d: want 0 (half the cores) or a number of runs", c.BatchRuns)
	}
	if c.FlushInterval <= 0 {
		return fmt.Errorf("--flush-interval %v: want a positive duration, e.g. 50ms", c.FlushInterval)
	}
	if c.ShadowNice < 0 || c.ShadowNice > 19 {
		return fmt.Errorf("--shadow-nice %d: want 0 to 19", c.ShadowNice)
	}
	log, err := newLogger(c.LogFormat, c.LogLevel, stderr)
	if err != nil {
		return err
	}
	m.Log = log
	return nil
}

func newLogger(format, level string, w io.Writer) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		return zerolog.Logger{}, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	switch format {
	case "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	default:
		return zerolog.Logger{}, fmt.Errorf("--log-format %q: want json or console", format)
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

// findORTLib returns the library to load: the flag or UNDERSTUDY_ORT_LIB,
// else the copy scripts/fetch-ort.sh cached beside the binary's repository or
// the working directory, else the path baked in at build time.
func findORTLib(explicit string) (string, error) {
	if explicit != "" {
		return explicit, nil
	}
	var tried []string
	var candidates []string
	if exe, err := os.Executable(); err == nil {
		if exe, err = filepath.EvalSymlinks(exe); err == nil {
			candidates = append(candidates, filepath.Join(filepath.Dir(exe), "..", ortCacheRel))
		}
	}
	candidates = append(candidates, ortCacheRel)
	if defaultORTLib != "" {
		candidates = append(candidates, defaultORTLib)
	}
	for _, c := range candidates {
		if _, err := os.Stat(c); err == nil {
			return filepath.Abs(c)
		}
		tried = append(tried, c)
	}
	return "", fmt.Errorf("no ONNX Runtime library found (tried %s): run `make` or scripts/fetch-ort.sh, or pass --ort-lib / UNDERSTUDY_ORT_LIB", strings.Join(tried, ", "))
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
	so := sqlite.Options{
		InputCap:      int(c.InputCap),
		ShadowNice:    c.ShadowNice,
		ShadowIdle:    c.ShadowSched == "idle",
		FlushInterval: c.FlushInterval,
		RetainDays:    c.RetainDays,
		RetainRows:    c.RetainRows,
		Log:           m.Log.With().Str("component", "store").Logger(),
	}
	if m.StoreOptions != nil {
		m.StoreOptions(&so)
	}
	db, err := sqlite.Open(c.DB, so)
	if err != nil {
		return fmt.Errorf("open database %s: %w", c.DB, err)
	}
	m.store, m.threadStats = db, db.ThreadStats
	m.Log.Info().Str("db", c.DB).Msg("store opened")

	m.lifecycle, m.lcDone = make(chan func(context.Context), 4096), make(chan struct{})
	go m.storeLifecycle()
	persisted, err := m.store.LoadDeployment(ctx)
	if err != nil {
		m.Log.Error().Err(err).Msg("cannot read the saved deployment; starting from the models directory")
	}

	opts := onnx.Options{Device: dev, IntraOpThreads: c.IntraOpThreads}
	m.reg = registry.New(c.ModelsDir, func(data []byte) (*understudy.LoadedModel, error) {
		return m.rt.Load(data, opts)
	}, m.Log)
	m.reg.Defaults = registry.Settings{Sampling: c.ShadowSampling, Timeout: c.ShadowTimeout}
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
	}
	m.reg.OnDeploy = func(d understudy.Deployment) {
		m.lifecycleDo(func(ctx context.Context) error { return m.store.SaveDeployment(ctx, d) })
	}
	m.reg.OnModel = func(info understudy.ModelInfo) {
		m.lifecycleDo(func(ctx context.Context) error { return m.store.RecordModel(ctx, info) })
	}
	// The shadow workers, and the store's thread for shadow results.
	extra := c.ShadowWorkers
	if so.ShadowIdle || so.ShadowNice > 0 {
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
	synced := make(chan struct{})
	m.lifecycleDo(func(context.Context) error { close(synced); return nil })
	<-synced
	watchCtx, stop := context.WithCancel(context.Background())
	m.stopWatch, m.watchDone = stop, make(chan struct{})
	go func() { defer close(m.watchDone); m.reg.Watch(watchCtx) }()

	m.metrics = metrics.New()
	m.serving = &serving.Service{Models: m.reg, OnPredict: m.onPredict}
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
			return report.Build(ctx, m.store, q, report.DefaultThresholds, time.Now())
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
	m.mirror = shadow.New(shadow.Config{Workers: c.ShadowWorkers, QueueSize: c.ShadowQueue, Nice: c.ShadowNice, Idle: c.ShadowSched == "idle", Busy: busy},
		m.reg.Shadows, m.store, m.metrics, m.Log.With().Str("component", "shadow").Logger())
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

// serveDebug serves pprof on its own listener, so that profiles are never
// reachable through the public address and its tokens.
func (m *Main) serveDebug(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--debug-addr %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	m.debugSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go m.debugSrv.Serve(ln)
	m.Log.Warn().Str("addr", ln.Addr().String()).Msg("pprof profiles served; do not expose this address")
	return nil
}

// shedAt is how many of the primary's requests in flight make a shadow
// worker drop the job it takes instead of running it: the cores left once
// each worker has one, at least one. A shadow thread at idle priority gives
// way to the primary at once, but its runs still cost the primary's tail.
// On the 2-core VM with two shadows at half the maximum rate, the demo's
// p99 with shadows over without was 1.32 (95% interval 1.13–1.53), 0.82
// and 0.83 in 4-minute runs when shedding at one request per core, and
// 0.97, 0.48 and 0.80 when shedding at one request, which sheds 60–70% of
// shadow jobs at that rate instead of 6–30%. The host's noise does not
// settle it; shedding earlier can only take CPU from shadows, and --shed-at
// gives the choice back.
func shedAt(cores, workers int) int {
	return max(1, cores-workers)
}

// defaultGCPercent is GOGC without shadows unless the environment sets it.
// The live heap is a few MB and every request allocates, so Go's default of
// 100 collects hundreds of times a second; four times the headroom cost
// about 8 µs less CPU per request on the demo model, for a few MB more.
const defaultGCPercent = 400

// runtimeTuning adapts the Go runtime to the number of shadows. Zero fields
// are left as the environment set them.
type runtimeTuning struct {
	// procs is GOMAXPROCS without shadows. While there are shadows, the
	// threads that do shadow work at lowered priority get extraProcs
	// scheduler slots (Ps) of their own: such a thread preempted by the
	// kernel while it runs Go code keeps its P, and at low priority it may
	// not run again for a long time. With the extra slots the primary never
	// has fewer than one per core. Measured on a 2-core VM with two shadows
	// on the demo model, the primary's p99 was 1.95x of what it was with
	// them. Without shadows the extra slots only cost scheduler wake-ups,
	// 30–40 µs of CPU per request there, so they are taken back.
	procs, extraProcs int
	// gc is GOGC without shadows. A shadow run allocates about as much as
	// the primary's request does, so with k shadows the heap grows k+1
	// times as fast. A collection also hurts the primary more while there
	// are shadows, since the extra slots give the collector's workers, at
	// normal priority, a larger share of the cores. So GOGC grows faster
	// than the allocation rate: by 2.5 times the base per shadow, up to four
	// shadows. Measured with two shadows on the demo at 8000 req/s, in
	// 24-round A/B runs: the primary's p99 over none was 1.21 and 1.22 at
	// GOGC 1200 (three times the base), 1.11 and 1.09 at 2400; RSS grew
	// from 129 MB to 186 MB.
	gc int
}

// apply returns the registry hook that applies t for a number of shadows.
func (t runtimeTuning) apply(log zerolog.Logger) func(shadows int) {
	return func(shadows int) {
		if t.procs > 0 {
			want := t.procs
			if shadows > 0 {
				want += t.extraProcs
			}
			if runtime.GOMAXPROCS(0) != want {
				runtime.GOMAXPROCS(want)
				log.Debug().Int("gomaxprocs", want).Int("shadows", shadows).Msg("scheduler slots adjusted")
			}
		}
		if t.gc > 0 {
			debug.SetGCPercent(t.gc * (2 + 5*min(shadows, 4)) / 2)
		}
	}
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
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		f(ctx)
		cancel()
	}
}

// onPredict hands a primary prediction to the metrics, the store and the
// mirror. Each of them only enqueues, so the request never waits.
func (m *Main) onPredict(p *understudy.Prediction) {
	m.metrics.Run(p.Model, p.Version, "primary", p.Status, p.Latency)
	m.store.WritePrediction(p)
	if p.Status == understudy.StatusOK {
		m.mirror.Submit(p, p.Signature.Outputs)
	}
}

// degraded lists what is wrong while the server still serves.
func (m *Main) degraded() []string {
	var out []string
	if w := m.reg.SyncWarning(); w != "" {
		out = append(out, w)
	}
	return out
}

func (m *Main) registerGauges() {
	m.metrics.GaugeFunc("understudy_shadow_queue_depth", "Shadow jobs waiting for a worker.", func() float64 { return float64(m.mirror.QueueDepth()) })
	m.metrics.GaugeFunc("understudy_store_queue_depth", "Rows waiting for the store's writer.", func() float64 { return float64(m.store.Stats().QueueDepth) })
	tables := map[string]func(store.Stats) store.TableStats{
		"predictions":    func(s store.Stats) store.TableStats { return s.Predictions },
		"shadow_results": func(s store.Stats) store.TableStats { return s.ShadowResults },
		"shadow_skips":   func(s store.Stats) store.TableStats { return s.Skips },
	}
	for table, get := range tables {
		labels := prometheus.Labels{"table": table}
		m.metrics.CounterFunc("understudy_store_rows_written_total", "Rows committed to the database.", labels, func() float64 { return float64(get(m.store.Stats()).Written) })
		m.metrics.CounterFunc("understudy_store_rows_lost_total", "Rows that could not be stored (queue full, write failed).", labels, func() float64 { return float64(get(m.store.Stats()).Lost) })
	}
	m.metrics.CounterFunc("understudy_store_shadow_commits_taken_back_total",
		"Commits of shadow results the writer made at normal priority because the low-priority thread had not started them within 5ms: a sign of saturated cores.",
		nil, func() float64 { return float64(m.threadStats().ShadowCommitsTakenBack) })
	m.metrics.CounterFunc("understudy_store_shadow_commits_raised_total",
		"Commits of shadow results the low-priority thread had started but could not finish for lack of CPU, finished at normal priority so that the writer does not wait on it.",
		nil, func() float64 { return float64(m.threadStats().ShadowCommitsRaised) })
	m.metrics.CounterFunc("understudy_store_checkpoints_total",
		"Write-ahead log checkpoints run by the store on its low-priority thread (SQLite's own are off while that thread exists).",
		nil, func() float64 { return float64(m.threadStats().Checkpoints) })
	m.metrics.TrackModels(func() []metrics.Model {
		var out []metrics.Model
		for _, info := range m.reg.List() {
			if info.Role == understudy.RolePrimary || info.Role == understudy.RoleShadow {
				out = append(out, metrics.Model{Name: info.Name, Version: info.Version, Role: string(info.Role)})
			}
		}
		return out
	})
	m.metrics.ModelsLoaded(func() map[string]int {
		counts := map[string]int{}
		for _, info := range m.reg.List() {
			counts[string(info.Role)]++
		}
		return counts
	})
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
	if m.srv != nil {
		if err := m.srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("http shutdown: %w", err))
		}
		if err := <-m.serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
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
		<-m.lcDone
		m.lifecycle = nil
	}
	if m.store != nil {
		if err := m.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close store: %w", err))
		}
		st := m.store.Stats()
		m.Log.Info().Int64("predictions", st.Predictions.Written).Int64("shadow_results", st.ShadowResults.Written).
			Int64("lost", st.Predictions.Lost+st.ShadowResults.Lost+st.Skips.Lost).Msg("store flushed and closed")
		m.store, m.threadStats = nil, nil
	}
	if m.rt != nil {
		if err := m.rt.Close(); err != nil {
			errs = append(errs, fmt.Errorf("destroy onnx runtime: %w", err))
		}
		m.rt = nil
	}
	if len(errs) == 0 {
		m.Log.Info().Msg("shut down cleanly")
	}
	return errors.Join(errs...)
}

func runVersion(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("understudy version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	lib := fs.String("ort-lib", "", "ONNX Runtime shared library (UNDERSTUDY_ORT_LIB)")
	if err := ff.Parse(fs, args, ff.WithEnvVarPrefix("UNDERSTUDY")); err != nil {
		return err
	}
	v := Version
	if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v = "dev-" + s.Value[:12]
			}
		}
	}
	fmt.Fprintf(stdout, "understudy %s\n", v)
	path, err := findORTLib(*lib)
	if err != nil {
		return err
	}
	rt, err := onnx.Open(path)
	if err != nil {
		return err
	}
	defer rt.Close()
	fmt.Fprintf(stdout, "onnxruntime %s (%s)\n", rt.Version(), path)
	return nil
}

// byteSize is a flag value that reads sizes like 16MiB, 512KB or 1048576.
type byteSize int64

func (b *byteSize) String() string {
	if b == nil {
		return "0"
	}
	n := int64(*b)
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "KiB"
	}
	return strconv.FormatInt(n, 10)
}

func (b *byteSize) Set(s string) error {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return fmt.Errorf("want a positive size like 16MiB, got %q", s)
	}
	if n > math.MaxInt64/mult {
		return fmt.Errorf("%q is more bytes than fit in 63 bits", s)
	}
	*b = byteSize(n * mult)
	return nil
}
