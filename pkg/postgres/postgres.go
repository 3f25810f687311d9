// Package postgres is the PostgreSQL backend of the store contract
// (pkg/store): it stores predictions, shadow results, skip counters, model
// history, events and the deployment in a PostgreSQL database that several
// replicas of the server share. Writes are queued without blocking the
// caller and committed in batches by one writer goroutine per process;
// reads are REPEATABLE READ snapshots on a pooled connection.
//
// It owns its SQL, its schema (migrations/postgres), its writer, its
// connections, its handling of an unreachable server (rows are buffered and
// retried, see faults.go) and the deployment watcher (watch.go). What does
// not depend on PostgreSQL (rollup spans and window covering, how a row is
// counted into the rollups, how rollups add up, the pair search, histogram
// and tensor encodings) comes from pkg/store and pkg/store/rollup, so that
// it gives the same numbers as SQLite. It may import those, pkg/understudy
// and migrations; never the report, the HTTP API or another adapter
// (pkg/sqlite included).
//
// The files: postgres.go opens and closes; write.go turns rows into what
// the writer queues; writer.go batches and retries; faults.go is the
// buffer and the health while PostgreSQL is unreachable; insert.go and
// rollup.go hold the SQL of a batch; read.go and pairs.go the snapshot;
// history.go the backlog's and the drops' writes (understudy.History),
// backlog.go their reads and the stored inputs; lifecycle.go labels,
// models, events and the deployment; watch.go the deployment watcher;
// retention.go retention.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/rs/zerolog"

	"github.com/understudy-ml/understudy/migrations"
	"github.com/understudy-ml/understudy/pkg/store"
)

// Defaults for the zero values of Options.
const (
	DefaultInputCap          = 64 << 10
	DefaultQueueSize         = 65536
	DefaultBatchSize         = 2000
	DefaultFlushInterval     = 50 * time.Millisecond
	DefaultRetentionInterval = time.Minute
	DefaultMaxConns          = 8
	DefaultConnectTimeout    = 5 * time.Second
	DefaultMaxBufferedRows   = 100_000
	DefaultMaxBufferedBytes  = 256 << 20
	DefaultCloseTimeout      = 10 * time.Second
)

// retentionChunk bounds each retention DELETE, so that no statement holds
// many row locks for long.
const retentionChunk = 5000

// migrationLock is the advisory lock key held while migrating: the bytes
// "undrstdy", so that it does not collide with another application's.
const migrationLock int64 = 0x756e647273746479

// logEvery is the shortest interval between two log lines of one kind; the
// lines in between are counted.
const logEvery = 10 * time.Second

// Options configures a DB. The zero value is usable.
type Options struct {
	// InputCap is the largest encoded inputs JSON, in bytes, that is stored;
	// larger inputs keep only their sha256 and size. Default 64 KiB;
	// negative stores no inputs at all.
	InputCap int
	// QueueSize is the number of rows waiting for the writer's goroutine
	// before new rows are counted as lost. Default 65536.
	QueueSize int
	// BatchSize is the most rows committed in one transaction. Default 2000.
	BatchSize int
	// FlushInterval is the longest a queued row waits for its batch to fill.
	// Default 50 ms.
	FlushInterval time.Duration
	// RetainDays deletes predictions, shadow results and skip counters
	// older than this many days. 0 keeps everything.
	RetainDays int
	// RetainRows keeps only the newest this many predictions and as many
	// shadow results, by time. 0 keeps everything.
	RetainRows int64
	// RetentionInterval is how often retention runs. Default 1 minute.
	RetentionInterval time.Duration
	// Replica is stamped on every prediction, shadow result and event this
	// process stores, so that rows of several replicas sharing the
	// database can be told apart. Default "".
	Replica string
	// MaxBufferedRows and MaxBufferedBytes bound the rows the writer holds
	// while PostgreSQL is unreachable (or slower than the traffic): beyond
	// either, new rows are dropped and counted as lost. Defaults 100,000
	// rows and 256 MiB (estimated from the rows' encoded sizes).
	MaxBufferedRows  int
	MaxBufferedBytes int64
	// CloseTimeout is how long Close keeps retrying the buffered rows while
	// PostgreSQL is unreachable before counting them as lost. Default 10s.
	CloseTimeout time.Duration
	// MaxConns is the size of the connection pool: the writer, snapshots,
	// labels and retention share it. Default 8.
	MaxConns int32
	// ConnectTimeout bounds each connection attempt. Default 5 s (unless
	// the URL sets connect_timeout).
	ConnectTimeout time.Duration
	// SynchronousCommit, if set, is the synchronous_commit of every
	// session (on, off, local, ...); "" keeps the server's setting.
	SynchronousCommit string
	// Log receives failed batches (rate limited), ignored duplicates,
	// outages and recoveries. The zero Logger discards.
	Log zerolog.Logger
	// Now is the clock for label times, model sightings, deployment saves
	// and retention. Default time.Now.
	Now func() time.Time
	// OnCommit, if set, is told of every attempt to commit a batch, on the
	// writer's goroutine: for metrics.
	OnCommit store.CommitObserver
}

func (o *Options) setDefaults() {
	if o.InputCap == 0 {
		o.InputCap = DefaultInputCap
	}
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = DefaultFlushInterval
	}
	if o.RetentionInterval <= 0 {
		o.RetentionInterval = DefaultRetentionInterval
	}
	if o.MaxBufferedRows <= 0 {
		o.MaxBufferedRows = DefaultMaxBufferedRows
	}
	if o.MaxBufferedBytes <= 0 {
		o.MaxBufferedBytes = DefaultMaxBufferedBytes
	}
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = DefaultCloseTimeout
	}
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

type tableCounters struct {
	written, duplicate, lost, deleted atomic.Int64
}

func (c *tableCounters) load() store.TableStats {
	return store.TableStats{Written: c.written.Load(), Duplicate: c.duplicate.Load(), Lost: c.lost.Load(), Deleted: c.deleted.Load()}
}

// DB is the PostgreSQL store. It implements store.Store and
// store.DeploymentWatcher.
type DB struct {
	url      string // redacted: user@host:port/database, for every message
	password string // scrubbed from every error, whatever produced it
	opts     Options
	log      zerolog.Logger
	pool     *pgxpool.Pool
	listen   *pgx.ConnConfig // the watcher's dedicated connections
	// channel is the NOTIFY channel of deployment changes; a test changes
	// it to break LISTEN and leave only the poll.
	channel string

	queue   chan any
	senders atomic.Int64 // Write* calls in progress; Close waits for none
	closed  atomic.Bool
	quit    chan struct{} // closed by Close once no sender can enqueue
	done    chan struct{} // closed when the writer has stored or counted every row
	kick    chan struct{} // wakes the writer for a flush

	cancel        context.CancelFunc // stops retention
	retentionDone chan struct{}
	closeOnce     sync.Once
	closeErr      error

	preds, shadows, skips  tableCounters
	batches, failedBatches atomic.Int64
	health                 health
	failLog, dupLog        limiter
	retainLog              limiter
}

var (
	_ store.Store             = (*DB)(nil)
	_ store.DeploymentWatcher = (*DB)(nil)
)

// Open connects to the database at url (a postgres:// URL or a key=value
// string), applies the migrations under an advisory lock, so that replicas
// starting together do not race, and starts the writer. It fails within
// about Options.ConnectTimeout when the server is unreachable. No error
// shows the password.
func Open(ctx context.Context, url string, opts Options) (*DB, error) {
	opts.setDefaults()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's message redacts passwords only as far as it can parse
		// the string; say nothing of it.
		return nil, errors.New("postgres: cannot parse the database URL (not shown: it may hold a password); want postgres://user@host:port/database")
	}
	db := &DB{
		url:           redact(cfg.ConnConfig),
		password:      cfg.ConnConfig.Password,
		opts:          opts,
		log:           opts.Log,
		channel:       "understudy_deployment",
		queue:         make(chan any, opts.QueueSize),
		quit:          make(chan struct{}),
		kick:          make(chan struct{}, 1),
		done:          make(chan struct{}),
		retentionDone: make(chan struct{}),
	}
	if !strings.Contains(url, "connect_timeout") {
		cfg.ConnConfig.ConnectTimeout = opts.ConnectTimeout
	}
	if opts.SynchronousCommit != "" {
		cfg.ConnConfig.RuntimeParams["synchronous_commit"] = opts.SynchronousCommit
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "understudy"
	// The store's queries are short: JIT compiling one (which the planner
	// chooses by estimated cost, often wrongly on fresh tables) costs more
	// than it saves.
	cfg.ConnConfig.RuntimeParams["jit"] = "off"
	cfg.MaxConns = opts.MaxConns
	db.listen = cfg.ConnConfig.Copy()
	if err := db.open(ctx, cfg); err != nil {
		if db.pool != nil {
			db.pool.Close()
		}
		return nil, db.errorf("open %s: %w", db.url, err)
	}
	go db.run()
	rctx, cancel := context.WithCancel(context.Background())
	db.cancel = cancel
	if opts.RetainDays > 0 || opts.RetainRows > 0 {
		go db.retain(rctx)
	} else {
		close(db.retentionDone)
	}
	return db, nil
}

func (db *DB) open(ctx context.Context, cfg *pgxpool.Config) error {
	var err error
	if db.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, db.opts.ConnectTimeout+time.Second)
	defer cancel()
	if err := db.pool.Ping(pctx); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	// goose takes no lock unless given a locker, and its PostgreSQL
	// session locker polls pg_try_advisory_lock every 5 s: replicas
	// starting together would wait seconds each. pg_advisory_lock waits
	// instead, and wakes the moment the replica migrating is done; the
	// others then find nothing to do.
	c, err := db.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	defer c.Release()
	if _, err := c.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrationLock); err != nil {
		return fmt.Errorf("migrations: lock: %w", err)
	}
	defer func() { _, _ = c.Exec(context.Background(), `SELECT pg_advisory_unlock($1)`, migrationLock) }()
	sqldb := stdlib.OpenDBFromPool(db.pool)
	defer sqldb.Close()
	sub, err := fs.Sub(migrations.Postgres, "postgres")
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, sqldb, sub, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// redact names the database without its password: user@host:port/database.
func redact(c *pgx.ConnConfig) string {
	return c.User + "@" + c.Host + ":" + strconv.Itoa(int(c.Port)) + "/" + c.Database
}

// errorf is fmt.Errorf with the password scrubbed from the result,
// whichever layer put it in the text.
func (db *DB) errorf(format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	if db.password == "" || !strings.Contains(err.Error(), db.password) {
		return err
	}
	return scrubbed{err, strings.ReplaceAll(err.Error(), db.password, "xxxxx")}
}

type scrubbed struct {
	err error
	msg string
}

func (e scrubbed) Error() string { return e.msg }
func (e scrubbed) Unwrap() error { return e.err }

// Close stops accepting rows, waits until the queued ones are committed (or
// counted lost: while PostgreSQL is unreachable, after CloseTimeout), and
// closes the pool. It is safe to call twice.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		db.closed.Store(true)
		// Sends never block, so the senders that got past the closed check
		// are done within moments; after that nothing can enter the queue.
		for db.senders.Load() > 0 {
			runtime.Gosched()
		}
		close(db.quit)
		<-db.done
		db.cancel()
		<-db.retentionDone
		db.pool.Close()
	})
	return db.closeErr
}

// Stats implements store.Store. Rows dropped because the writer's buffer
// was full while PostgreSQL was unreachable are counted as Lost, like rows
// that found the queue full; Buffer tells them apart.
func (db *DB) Stats() store.Stats {
	return store.Stats{
		Predictions:   db.preds.load(),
		ShadowResults: db.shadows.load(),
		Skips:         db.skips.load(),
		QueueDepth:    len(db.queue) + int(db.health.rows.Load()),
		QueueCapacity: cap(db.queue),
		Batches:       db.batches.Load(),
		FailedBatches: db.failedBatches.Load(),
	}
}

// limiter lets one log line through per logEvery and counts the rest.
type limiter struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int64
}

// allow reports whether to log now, and how many lines were held back since
// the last one that was let through.
func (l *limiter) allow() (ok bool, suppressed int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if !l.last.IsZero() && now.Sub(l.last) < logEvery {
		l.suppressed++
		return false, 0
	}
	l.last, suppressed, l.suppressed = now, l.suppressed, 0
	return true, suppressed
}
