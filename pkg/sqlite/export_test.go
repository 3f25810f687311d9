package sqlite

import (
	"database/sql"
	"time"
)

// WritePool and ReadPool let tests inspect the connections and change
// pragmas such as max_page_count.
func (db *DB) WritePool() *sql.DB { return db.write }
func (db *DB) ReadPool() *sql.DB  { return db.read }

// StallShadowThread keeps the shadow-results thread busy for d, as a
// saturated machine would keep a SCHED_IDLE thread off the CPU.
func (db *DB) StallShadowThread(d time.Duration) {
	started := make(chan struct{})
	db.low.run <- &lowTask{f: func() { close(started); time.Sleep(d) }, done: make(chan struct{})}
	<-started
}

// CheckpointTID returns the OS thread that ran the last checkpoint.
func (db *DB) CheckpointTID() int { return int(db.checkpointTID.Load()) }
