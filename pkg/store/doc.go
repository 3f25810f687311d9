// Package store is the contract between Understudy and its storage
// backends, in the manner of Vault's physical.Backend or Go's fs.FS: the
// interfaces a backend implements (Store and Snapshot), the values that
// cross that boundary, and what every backend must store alike, namely the
// histogram bucket layouts and their encoding and the stored form of
// tensors and comparisons.
//
// It may import pkg/understudy and the standard library only: never an
// adapter (pkg/sqlite, a PostgreSQL one), never the report. Consumers (the
// report, the HTTP API) depend on this package, not on a backend; cmd
// wires a backend in. Logic the backends share but consumers need not see
// (rollup spans and window covering, rollup deltas, the pair search) is in
// store/rollup, and the conformance suite every backend passes is in
// store/storetest.
package store
