package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// Replicas share one deployment row. A save on any of them sends NOTIFY in
// its transaction; the others' watchers LISTEN on a connection of their own
// (not the pool's: a listening connection is held for good) and load the
// row when told. LISTEN can miss a change: notifications sent while the
// connection is down are lost, and a pooler in transaction mode does not
// carry them at all. So the watcher also polls the row's updated_us every
// second, and a change seen either way is delivered once.

const (
	// pollEvery is the backstop's period, and the longest a missed
	// notification delays a change.
	pollEvery = time.Second
	// The reconnection backoff of the listening connection.
	minListenBackoff = 100 * time.Millisecond
	maxListenBackoff = 5 * time.Second
)

// WatchDeployment implements store.DeploymentWatcher. It calls fn with the
// deployment after each change saved by any replica (this one included),
// found by LISTEN or by the poll; not with the one stored when it starts
// (unless it could not be read then: it is delivered once it can).
// It reconnects with backoff when the listening connection drops, and
// returns ctx's error when ctx is done.
func (db *DB) WatchDeployment(ctx context.Context, fn func(understudy.Deployment)) error {
	w := watcher{db: db, fn: fn}
	// The baseline: changes after this one are delivered.
	if _, updated, err := db.loadDeployment(ctx); err == nil {
		w.seen = updated
	} else if ctx.Err() != nil {
		return ctx.Err()
	}
	notes := make(chan struct{}, 1)
	lctx, stop := context.WithCancel(ctx)
	listening := make(chan struct{})
	go func() {
		defer close(listening)
		w.listen(lctx, notes)
	}()
	// Nothing of the watcher outlives the call.
	defer func() { stop(); <-listening }()
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-notes:
		case <-tick.C:
		}
		w.check(ctx)
	}
}

type watcher struct {
	db   *DB
	fn   func(understudy.Deployment)
	seen int64 // updated_us of the last deployment delivered
}

// check loads the deployment and delivers it if it changed.
func (w *watcher) check(ctx context.Context) {
	d, updated, err := w.db.loadDeployment(ctx)
	if err != nil {
		if ctx.Err() == nil {
			w.db.log.Debug().Err(err).Msg("deployment watcher: load failed; retried at the next poll")
		}
		return
	}
	if d == nil || updated == w.seen {
		return
	}
	w.seen = updated
	w.fn(*d)
}

// listen holds a LISTEN connection until ctx is done, reconnecting with
// backoff, and signals notes on every notification and every reconnection
// (a change may have been missed while it was down).
func (w *watcher) listen(ctx context.Context, notes chan<- struct{}) {
	signal := func() {
		select {
		case notes <- struct{}{}:
		default:
		}
	}
	backoff := minListenBackoff
	for ctx.Err() == nil {
		start := time.Now()
		err := w.listenOnce(ctx, signal)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > maxListenBackoff {
			backoff = minListenBackoff // it held for a while: not a flapping server
		}
		w.db.log.Warn().Str("db", w.db.url).Str("err", w.db.errorf("%w", err).Error()).Dur("retry_in", backoff).
			Msg("deployment watcher: LISTEN connection lost; polling meanwhile")
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxListenBackoff)
	}
}

func (w *watcher) listenOnce(ctx context.Context, signal func()) error {
	cctx, cancel := context.WithTimeout(ctx, w.db.opts.ConnectTimeout)
	conn, err := pgx.ConnectConfig(cctx, w.db.listen)
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{w.db.channel}.Sanitize()); err != nil {
		return err
	}
	signal()
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		signal()
	}
}
