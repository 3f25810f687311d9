package postgres

// SetDeploymentChannel changes the channel db notifies and listens on, so
// that a test can leave a watcher with its poll alone.
func SetDeploymentChannel(db *DB, channel string) { db.channel = channel }
