// Package sqlite is the SQLite backend of the store contract (pkg/store):
// it stores predictions, shadow results, skip counters, the backlog of
// deferred shadow jobs, model history, events and the deployment in a
// SQLite database. Writes are queued without blocking the caller and
// committed in batches by one writer goroutine; reads go through a
// separate pool of read-only connections.
//
// It owns its SQL, its schema (migrations), its writer and its connections.
// What does not depend on SQLite (rollup spans and window covering, how a
// row is counted into the rollups, how rollups add up, the pair search,
// histogram and tensor encodings) comes from pkg/store and pkg/store/rollup,
// so that another backend gives the same numbers. It may import those,
// pkg/understudy and migrations; never the report, the HTTP API or another
// adapter.
package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mattn/go-sqlite3"
	"github.com/pressly/goose/v3"
	"github.com/rs/zerolog"

	"github.com/understudy-ml/understudy/migrations"
	"github.com/understudy-ml/understudy/pkg/store"
)

// Defaults for the zero values of Options.
const (
	DefaultInputCap          = 64 << 10
	DefaultQueueSize         = 65536
	DefaultBatchSize         = 1000
	DefaultFlushInterval     = 50 * time.Millisecond
	DefaultRetentionInterval = time.Minute
	DefaultReadConns         = 4
)

// retentionChunk bounds each retention DELETE, so that the writer never
// waits long for the single write connection.
const retentionChunk = 2000

// logEvery is the shortest interval between two log lines about failed
// writes or ignored duplicates; the lines in between are counted.
const logEvery = 10 * time.Second

// Options configures a DB. The zero value is usable.
type Options struct {
	// InputCap is the largest encoded inputs JSON, in bytes, that is stored;
	// larger inputs keep only their sha256 and size. Default 64 KiB;
	// negative stores no inputs at all.
	InputCap int
	// ShadowNice, if above 0, is the niceness of an OS thread of its own on
	// which the writer commits shadow results, in a transaction apart from
	// the primary's rows: a shadow must not slow the primary through the
	// store either. 0 commits everything on the writer's thread.
	ShadowNice int
	// ShadowIdle commits shadow results on a thread of their own in the
	// SCHED_IDLE class instead, which yields the CPU the moment a request
	// wants it; a niced thread may keep it for a scheduler slice.
	ShadowIdle bool
	// ShadowHandoff is how long the writer waits for that thread to start
	// a commit before doing it itself, so that a starved thread never holds
	// up the primary's rows. Default 5ms.
	ShadowHandoff time.Duration
	// CheckpointEvery, with a shadow-results thread, is how often that
	// thread copies the write-ahead log back into the database. SQLite's
	// own checkpoints are then off: they would run inside whichever commit
	// crossed 1,000 log pages, two times in three a shadow's rows' worth of
	// copying and fsync on the writer's thread. Default 1s.
	CheckpointEvery time.Duration
	// QueueSize is the number of rows waiting for the writer before new rows
	// are counted as lost. Default 65536.
	QueueSize int
	// BatchSize is the most rows committed in one transaction. Default 1000.
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
	// ReadConns is the size of the read-only pool. Default 4.
	ReadConns int
	// MaxPageCount sets PRAGMA max_page_count on the write connection, which
	// makes SQLite report "database or disk is full" beyond that many pages.
	// For tests; 0 leaves SQLite's limit.
	MaxPageCount int64
	// Log receives failed batches (rate limited), ignored duplicates and
	// recoveries. The zero Logger discards.
	Log zerolog.Logger
	// Now is the clock for label times, model sightings and retention.
	// Default time.Now.
	Now func() time.Time
	// Replica is the id stamped on the rows this process writes and under
	// which its traffic is counted (--replica-id).
	Replica string
	// OnCommit, if set, is told of every batch the writer commits or
	// fails to commit, on the writer's goroutine: for metrics.
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
	if o.ReadConns <= 0 {
		o.ReadConns = DefaultReadConns
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ShadowHandoff <= 0 {
		o.ShadowHandoff = 5 * time.Millisecond
	}
	if o.CheckpointEvery <= 0 {
		o.CheckpointEvery = time.Second
	}
}

// ThreadStats count what the writer's shadow-results thread did: the
// SQLite-specific side of the store's counters, beside store.Stats.
type ThreadStats struct {
	// ShadowCommitsTakenBack counts shadow-result commits the writer made
	// on its own thread because the low-priority thread had not started
	// them in time: a sign that the cores were saturated.
	ShadowCommitsTakenBack int64
	// ShadowCommitsRaised counts shadow-result commits the low-priority
	// thread had started but was too starved to finish, which it then
	// finished at the writer's priority.
	ShadowCommitsRaised int64
	// Checkpoints counts the write-ahead log checkpoints the store ran
	// itself (with a shadow-results thread; SQLite's own are not counted).
	Checkpoints int64
}

type tableCounters struct {
	written, duplicate, lost, deleted atomic.Int64
}

func (c *tableCounters) load() store.TableStats {
	return store.TableStats{Written: c.written.Load(), Duplicate: c.duplicate.Load(), Lost: c.lost.Load(), Deleted: c.deleted.Load()}
}

// DB is the SQLite store. It implements store.Store.
type DB struct {
	path  string
	opts  Options
	log   zerolog.Logger
	write *sql.DB // one connection, used by the writer, labels and retention
	read  *sql.DB // read-only pool

	insPreds                           inserter[*predRow]   // writechunks.go
	insShadows                         inserter[*shadowRow] // writechunks.go
	rowArgs                            []any                // the writer's, reused across batches
	predScratch                        []predRow            // the writer's: predRows
	predPtrs                           []*predRow
	predBuf                            []byte
	boxes                              boxes // the writer's: predArgs
	upsertSkip                         *sql.Stmt
	upsertDrop, insBacklog, delBacklog *sql.Stmt
	rollup                             rollupStmts

	queue   chan any
	senders atomic.Int64 // Write* calls in progress; Close waits for none
	closed  atomic.Bool
	quit    chan struct{} // closed by Close once no sender can enqueue
	done    chan struct{} // closed when the writer has drained the queue

	cancel        context.CancelFunc // stops retention
	retentionDone chan struct{}
	closeOnce     sync.Once
	closeErr      error

	preds, shadows, skips       tableCounters
	batches, failedBatches      atomic.Int64
	checkpoints                 atomic.Int64
	checkpointTID               atomic.Int64 // the thread of the last checkpoint, for tests
	failLog, dupLog, recoverLog limiter
	retainLog                   limiter
	failing                     bool          // writer only: the last batch failed
	kick                        chan struct{} // wakes the writer for a flush
	low                         *lowPriority  // commits shadow results; nil without ShadowNice
	lastCheckpoint              time.Time     // writer only
	checkpointLog               limiter
}

var _ store.Store = (*DB)(nil)

// Open opens or creates the database at path, applies the migrations and
// starts the writer. A database left by a killed process opens normally:
// SQLite replays or discards its write-ahead log.
func Open(path string, opts Options) (*DB, error) {
	opts.setDefaults()
	db := &DB{
		path:          path,
		opts:          opts,
		log:           opts.Log,
		queue:         make(chan any, opts.QueueSize),
		quit:          make(chan struct{}),
		kick:          make(chan struct{}, 1),
		done:          make(chan struct{}),
		retentionDone: make(chan struct{}),
	}
	if opts.ShadowIdle || opts.ShadowNice > 0 {
		low, err := startLowPriority(opts.ShadowIdle, opts.ShadowNice, opts.ShadowHandoff)
		if err != nil {
			db.log.Warn().Err(err).Bool("idle", opts.ShadowIdle).Int("nice", opts.ShadowNice).
				Msg("cannot run the store's shadow-results thread at a lower priority and raise it back when the writer waits on it (needs CAP_SYS_NICE); shadow results are committed on the writer's thread")
		} else {
			db.low = low
		}
	}
	if err := db.open(); err != nil {
		if db.low != nil {
			close(db.low.run)
		}
		if db.write != nil {
			db.write.Close()
		}
		if db.read != nil {
			db.read.Close()
		}
		return nil, fmt.Errorf("open database %q: %w", path, err)
	}
	go db.run()
	ctx, cancel := context.WithCancel(context.Background())
	db.cancel = cancel
	if opts.RetainDays > 0 || opts.RetainRows > 0 {
		go db.retain(ctx)
	} else {
		close(db.retentionDone)
	}
	return db, nil
}

// dsn puts every per-connection pragma in the connection string, so each
// pooled connection gets them. Read connections are query-only and take
// deferred transactions, so a read never holds the write lock.
//
// _mutex=no opens connections in SQLite's multi-thread mode: database/sql
// never uses one connection from two goroutines at once, so the lock that
// serialized mode takes around every call (each bound parameter, each
// step: fifteen per stored row) guards nothing here.
func dsn(path string, readOnly bool) string {
	r := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23")
	s := "file:" + r.Replace(path) + "?_journal_mode=WAL&_busy_timeout=5000&_synchronous=NORMAL&_foreign_keys=on&_mutex=no"
	if readOnly {
		return s + "&_txlock=deferred&_query_only=1"
	}
	return s + "&_txlock=immediate"
}

type connector struct {
	drv *sqlite3.SQLiteDriver
	dsn string
}

func (c connector) Connect(context.Context) (driver.Conn, error) { return c.drv.Open(c.dsn) }
func (c connector) Driver() driver.Driver                        { return c.drv }

func (db *DB) open() error {
	maxPages := db.opts.MaxPageCount
	ownCheckpoints := db.low != nil
	drv := &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
		if ownCheckpoints {
			if _, err := c.Exec("PRAGMA wal_autocheckpoint = 0", nil); err != nil {
				return err
			}
		}
		if maxPages <= 0 {
			return nil
		}
		_, err := c.Exec(fmt.Sprintf("PRAGMA max_page_count = %d", maxPages), nil)
		return err
	}}
	db.write = sql.OpenDB(connector{drv: drv, dsn: dsn(db.path, false)})
	db.write.SetMaxOpenConns(1)
	db.write.SetMaxIdleConns(1)
	db.write.SetConnMaxLifetime(0)
	db.write.SetConnMaxIdleTime(0)

	ctx := context.Background()
	p, err := goose.NewProvider(goose.DialectSQLite3, db.write, migrations.FS, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}

	db.read, err = sql.Open("sqlite3", dsn(db.path, true))
	if err != nil {
		return err
	}
	db.read.SetMaxOpenConns(db.opts.ReadConns)
	db.read.SetMaxIdleConns(db.opts.ReadConns)
	if err := db.read.PingContext(ctx); err != nil {
		return fmt.Errorf("read pool: %w", err)
	}

	// The replica id is the same for every row, so it is part of the
	// statement rather than one more parameter to bind per row.
	replica := "'" + strings.ReplaceAll(db.opts.Replica, "'", "''") + "'"
	for _, s := range []struct {
		stmt **sql.Stmt
		sql  string
	}{
		{&db.upsertSkip, upsertSkipSQL},
		{&db.upsertDrop, upsertDropSQL},
		{&db.insBacklog, `INSERT INTO shadow_backlog (request_id, shadow, version, time_us, deferred_us) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (request_id, shadow, version) DO NOTHING`},
		{&db.delBacklog, `DELETE FROM shadow_backlog WHERE request_id = ? AND shadow = ? AND version = ?`},
	} {
		if *s.stmt, err = db.write.PrepareContext(ctx, s.sql); err != nil {
			return fmt.Errorf("prepare: %w", err)
		}
	}
	if err := db.prepareInserts(ctx, replica); err != nil {
		return err
	}
	return db.rollup.prepare(ctx, db.write)
}

// Close stops accepting rows, waits until the queued ones are committed (or
// counted lost), and closes the database. It is safe to call twice.
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
		db.closeErr = errors.Join(db.insPreds.close(), db.insShadows.close(), db.upsertSkip.Close(),
			db.upsertDrop.Close(), db.insBacklog.Close(), db.delBacklog.Close(), db.rollup.close(), db.write.Close(), db.read.Close())
	})
	return db.closeErr
}

// Stats implements store.Store.
func (db *DB) Stats() store.Stats {
	return store.Stats{
		Predictions:   db.preds.load(),
		ShadowResults: db.shadows.load(),
		Skips:         db.skips.load(),
		QueueDepth:    len(db.queue),
		QueueCapacity: cap(db.queue),
		Batches:       db.batches.Load(),
		FailedBatches: db.failedBatches.Load(),
	}
}

// ThreadStats returns the counters of the shadow-results thread.
func (db *DB) ThreadStats() ThreadStats {
	s := ThreadStats{Checkpoints: db.checkpoints.Load()}
	if db.low != nil {
		s.ShadowCommitsTakenBack = db.low.takenBack.Load()
		s.ShadowCommitsRaised = db.low.boosts.Load()
	}
	return s
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
