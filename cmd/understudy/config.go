package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/peterbourgon/ff/v3"
	"github.com/rs/zerolog"

	"github.com/understudy-ml/understudy/pkg/shadow"
	"github.com/understudy-ml/understudy/pkg/sqlite"
)

// This file is what `understudy serve` can be told: the Config and its
// defaults, the flags with their UNDERSTUDY_* environment overrides and their
// checks, the logger they choose, sizes such as 16MiB, and where the ONNX
// Runtime library is found when --ort-lib is not given.

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
	// DB is the SQLite database file, or a postgres:// URL (UNDERSTUDY_DB,
	// default understudy.db).
	DB string
	// ReplicaID names this process in a store several replicas share
	// (UNDERSTUDY_REPLICA_ID, default hostname:port of --addr).
	ReplicaID string
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
	// StoreBufferRows and StoreBufferBytes bound the rows a PostgreSQL
	// store holds while the server is unreachable; beyond them rows are
	// dropped and counted (UNDERSTUDY_STORE_BUFFER_ROWS, default 100000;
	// UNDERSTUDY_STORE_BUFFER_BYTES, default 256MiB).
	StoreBufferRows  int
	StoreBufferBytes byteSize
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
	// ShedDelay, if positive, sheds a shadow job by its queue delay
	// instead of by the requests in flight (UNDERSTUDY_SHED_DELAY, default
	// 0: by ShedAt); see shadow.Config.MaxQueueDelay. Measured on the
	// 2-core VM, two shadows at half load, p99 with ÷ without in 240
	// paired rounds: 50ms gave the medium MLP 0.95 (0.84–1.07) against
	// 1.18–1.20 by requests in flight, and one shadow 88–99% of its jobs
	// live instead of 23–37%; but the demo 1.32 (1.20–1.47) against 0.98
	// (0.90–1.07). So it stays opt-in, for models whose run is most of a
	// request's cost (docs/benchmarks.md, "Lossless shadowing").
	ShedDelay time.Duration
	// BackfillBacklog bounds the shed shadow jobs deferred into the store
	// for backfill (UNDERSTUDY_BACKFILL_BACKLOG, default 100000; 0 drops
	// them instead).
	BackfillBacklog int64
	// BackfillMaxAge drops deferred jobs older than this (UNDERSTUDY_BACKFILL_MAX_AGE, default 24h).
	BackfillMaxAge time.Duration
	// BackfillIdle is how long the server must be idle before backfill and
	// backtests run (UNDERSTUDY_BACKFILL_IDLE, default 100ms).
	BackfillIdle time.Duration
	// BacktestRows is how many of the newest stored requests a newly
	// loaded shadow runs on (UNDERSTUDY_BACKTEST_ROWS, default 10000; 0: off).
	BacktestRows int
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

// NewMain returns a Main with the default configuration.
func NewMain() *Main {
	return &Main{
		Config: Config{
			Addr:             "127.0.0.1:8080",
			GRPCAddr:         "127.0.0.1:8081",
			ModelsDir:        "models",
			DB:               "understudy.db",
			IntraOpThreads:   1,
			Device:           "cpu",
			LogFormat:        "json",
			LogLevel:         "info",
			MaxBody:          16 << 20,
			ShutdownTimeout:  30 * time.Second,
			ShadowWorkers:    shadow.DefaultWorkers(),
			ShadowQueue:      1024,
			ShadowNice:       10,
			ShadowSched:      "idle",
			ShadowSampling:   1,
			ShadowTimeout:    5 * time.Second,
			InputCap:         64 << 10,
			StoreBufferRows:  100_000,
			StoreBufferBytes: 256 << 20,
			FlushInterval:    sqlite.DefaultFlushInterval,
			DrainTimeout:     10 * time.Second,
			Settle:           time.Second,
			ShedWhenBusy:     true,
			BackfillBacklog:  100_000,
			BackfillMaxAge:   24 * time.Hour,
			BackfillIdle:     100 * time.Millisecond,
			BacktestRows:     10_000,
			Rescan:           5 * time.Second,
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
	fs.StringVar(&c.DB, "db", c.DB, "SQLite database file, or a postgres:// URL that several replicas share")
	fs.StringVar(&c.ReplicaID, "replica-id", c.ReplicaID, "this replica's id in the shared store and the report (default: hostname:port of --addr)")
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
	fs.IntVar(&c.StoreBufferRows, "store-buffer-rows", c.StoreBufferRows, "with PostgreSQL: rows held while the server is unreachable; beyond them rows are dropped and counted")
	fs.Var(&c.StoreBufferBytes, "store-buffer-bytes", "with PostgreSQL: bytes of rows held while the server is unreachable, e.g. 256MiB")
	fs.DurationVar(&c.FlushInterval, "flush-interval", c.FlushInterval, "longest a stored row waits for its batch to be committed; kill -9 can lose this much traffic")
	fs.IntVar(&c.RetainDays, "retain-days", c.RetainDays, "delete stored rows older than this many days (0 keeps all)")
	fs.Int64Var(&c.RetainRows, "retain-rows", c.RetainRows, "keep only this many newest rows per table (0 keeps all)")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", c.DrainTimeout, "how long shutdown waits for queued shadow jobs")
	fs.BoolVar(&c.ShedWhenBusy, "shed-when-busy", c.ShedWhenBusy, "drop shadow jobs while the primary's requests fill the cores the shadow workers leave it")
	fs.IntVar(&c.ShedAt, "shed-at", c.ShedAt, "requests in flight at which --shed-when-busy drops shadow jobs; 0: cores minus shadow workers, at least 1")
	fs.DurationVar(&c.ShedDelay, "shed-delay", c.ShedDelay, "with --shed-when-busy, shed a shadow job only once its request is this old when a worker takes it (0: shed by --shed-at instead)")
	fs.Int64Var(&c.BackfillBacklog, "backfill-backlog", c.BackfillBacklog, "shed shadow jobs deferred into the store and run when the server is idle; beyond this many pending they are dropped (0: drop at once)")
	fs.DurationVar(&c.BackfillMaxAge, "backfill-max-age", c.BackfillMaxAge, "deferred shadow jobs older than this are dropped instead of run")
	fs.DurationVar(&c.BackfillIdle, "backfill-idle", c.BackfillIdle, "how long the server must be idle (no request, no queued shadow job) before backfill and backtests run")
	fs.IntVar(&c.BacktestRows, "backtest-rows", c.BacktestRows, "newest stored requests a newly loaded shadow is run on at once (0: no backtest)")
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
		{"shed-delay", c.ShedDelay, true},
		{"backfill-max-age", c.BackfillMaxAge, false},
		{"backfill-idle", c.BackfillIdle, false},
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
	if c.StoreBufferRows <= 0 {
		return fmt.Errorf("--store-buffer-rows %d: want a positive number of rows", c.StoreBufferRows)
	}
	if c.BackfillBacklog < 0 {
		return fmt.Errorf("--backfill-backlog %d: want 0 (drop shed jobs) or a number of jobs", c.BackfillBacklog)
	}
	if c.BacktestRows < 0 {
		return fmt.Errorf("--backtest-rows %d: want 0 (off) or a number of requests", c.BacktestRows)
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
	buffered := newLogBuffer(stderr)
	log, err := newLogger(c.LogFormat, c.LogLevel, buffered)
	if err != nil {
		buffered.Close()
		return err
	}
	m.Log, m.logBuffer = log, buffered
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
	return zerolog.New(w).Level(lvl).Hook(newSecondClock(time.Now)), nil
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
