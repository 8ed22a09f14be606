package postgres

import (
	"context"

	"github.com/jmoiron/sqlx"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// Pool exposes d's connection pool to tests that must act on the very
// connections the storage methods use (session poisoning).
func (d *DB) Pool() *sqlx.DB { return d.db }

// EachUsageRowInChunks is EachUsageRow with a chosen chunk size, so tests
// can cross many chunk boundaries with little data.
func (d *DB) EachUsageRowInChunks(ctx context.Context, u tokka.User, q tokka.UsageQuery, chunk int, fn func(tokka.UsageGroup) error) error {
	return d.eachUsageRow(ctx, u, q, chunk, fn)
}

// DomainError is domainError, for the tests of the error mapping.
var DomainError = domainError

// OnChunkChecked sets a hook run after each audit-verification chunk, so a
// test can cut a verification off between two chunks.
func (d *DB) OnChunkChecked(fn func()) { d.chunkChecked = fn }

// VerifyChunk is how many audit events one verification chunk reads.
const VerifyChunk = verifyChunk

// ReadPool exposes the read replica's pool (nil without one), so tests can
// ask it what it is.
func (d *DB) ReadPool() *sqlx.DB { return d.read }

// ForgetWrites ends every user's read-after-write window now, as if it had
// run out.
func (d *DB) ForgetWrites() {
	d.writers.mu.Lock()
	defer d.writers.mu.Unlock()
	clear(d.writers.at)
}

// AsReader and AsUser run fn as the api's reads and writes run, so tests
// can look at the transaction they get.
func (d *DB) AsReader(ctx context.Context, u tokka.User, fn func(tx *sqlx.Tx) error) error {
	return d.asReader(ctx, u, fn)
}

// AsUser: see AsReader.
func (d *DB) AsUser(ctx context.Context, u tokka.User, fn func(tx *sqlx.Tx) error) error {
	return d.asUser(ctx, u, fn)
}

// StmtCacheSize is how many statements a connection keeps prepared.
const StmtCacheSize = stmtCacheSize
