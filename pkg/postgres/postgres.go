// Package postgres owns every SQL statement Tokka runs. The api's methods run
// inside a transaction as role authenticated with the caller's claims (so
// row-level security decides what they see); the syncer's run as role
// tokka_syncer, whose grants bound what it may touch.
package postgres

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/tokka-dev/tokka/db"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// DB is Tokka's storage over one connection pool, plus a one-connection
// pool of its own for Ping.
type DB struct {
	db *sqlx.DB
	// statementTimeout bounds every statement of an api transaction, in
	// milliseconds as Postgres's statement_timeout reads it.
	statementTimeout string
	// verifyTurns caps how many audit-verification chunks are read and
	// checked at once (a quarter of the pool, at least one): see
	// VerifyAuditChain.
	verifyTurns chan struct{}
	// chunkChecked, in this package's tests only, is told when a
	// verification chunk has been read and checked.
	chunkChecked func()
	// ping answers readiness probes on a connection of its own, so a pool
	// that busy requests have taken whole does not read as a database
	// that is down (and get every replica pulled from the load balancer).
	ping *sqlx.DB
	// read, when set (OpenReadReplica), serves the api's reads; see
	// asReader.
	read *sqlx.DB
	// writers remembers who wrote lately, so their reads stay on the
	// primary until the replica has caught up (only with read set).
	writers *recentWriters
}

// DefaultStatementTimeout bounds each statement of an api transaction
// unless SetStatementTimeout says otherwise.
const DefaultStatementTimeout = 5 * time.Second

// Open connects to url and checks the connection; it fails when Postgres is
// unreachable. maxConns ≤ 0 takes DefaultMaxConns.
func Open(ctx context.Context, url string, maxConns int) (*DB, error) {
	if maxConns <= 0 {
		maxConns = DefaultMaxConns
	}
	d, err := openPool(ctx, url, maxConns)
	if err != nil {
		return nil, err
	}
	// Opened lazily: a process that never pings (the syncer) never
	// connects it.
	ping, err := sqlx.Open("postgres", url)
	if err != nil {
		_ = d.Close()
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	ping.SetMaxOpenConns(1)
	ping.SetMaxIdleConns(1)
	ping.SetConnMaxIdleTime(5 * time.Minute)
	db := &DB{db: d, ping: ping, verifyTurns: make(chan struct{}, max(1, maxConns/4))}
	db.SetStatementTimeout(DefaultStatementTimeout)
	return db, nil
}

// DefaultMaxConns is the pool size Open takes when it is given none. A
// request holds a connection only for its three round trips, so a few
// connections per database core keep the server busy; more only queue
// inside Postgres, and a handful of api replicas stay well under its
// max_connections.
const DefaultMaxConns = 10

// openPool opens a pool of at most maxConns connections to url (see conn)
// and checks that the database answers.
func openPool(ctx context.Context, url string, maxConns int) (*sqlx.DB, error) {
	c, err := newConnector(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	d := sqlx.NewDb(sql.OpenDB(c), "postgres")
	d.SetMaxOpenConns(maxConns)
	d.SetMaxIdleConns(maxConns)
	d.SetConnMaxIdleTime(5 * time.Minute)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := d.PingContext(pctx); err != nil {
		_ = d.Close()
		return nil, fmt.Errorf("postgres: cannot reach database: %w", err)
	}
	return d, nil
}

// SetStatementTimeout bounds each statement the api runs (every method that
// takes a tokka.User) to t, rounded up to a millisecond: a statement that
// runs longer is cancelled by Postgres and the method returns a
// CodeUnavailable error, so one user's expensive request cannot hold a pooled
// connection for long. t ≤ 0 restores the default. Call it before the DB is
// used; it is not safe to call concurrently with requests.
func (d *DB) SetStatementTimeout(t time.Duration) {
	if t <= 0 {
		t = DefaultStatementTimeout
	}
	ms := (t + time.Millisecond - 1) / time.Millisecond
	d.statementTimeout = strconv.FormatInt(int64(ms), 10)
}

// Close closes the pools.
func (d *DB) Close() error {
	err := errors.Join(d.db.Close(), d.ping.Close())
	if d.read != nil {
		err = errors.Join(err, d.read.Close())
	}
	return err
}

// Ping reports whether the database answers a trivial query, on a
// connection no request can hold (see DB.ping); an unreachable database is
// ErrUnavailable.
func (d *DB) Ping(ctx context.Context) error {
	var one int
	if err := d.ping.GetContext(ctx, &one, `SELECT 1`); err != nil {
		return domainError(err, "ping")
	}
	return nil
}

// Migrate applies every pending migration in db/migrations. goose holds a
// Postgres advisory lock while it works, so two migrators never race.
func Migrate(ctx context.Context, url string) error { return migrate(ctx, url, false) }

// MigrateAllowingGaps is Migrate for a database that was migrated from a
// build in the middle of the migration history (a kept benchmark database):
// it also applies versions lower than the database's current one. Never
// for production: there, migrations land in order.
func MigrateAllowingGaps(ctx context.Context, url string) error { return migrate(ctx, url, true) }

func migrate(ctx context.Context, url string, allowGaps bool) error {
	d, err := sql.Open("postgres", url)
	if err != nil {
		return fmt.Errorf("migrate: open: %w", err)
	}
	defer d.Close()
	migrations, err := fs.Sub(db.Migrations, "migrations")
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	// goose's bookkeeping table lives in our schema, not in public (which
	// Supabase exposes), so the schema must exist before goose starts.
	if _, err := d.ExecContext(ctx, `CREATE SCHEMA IF NOT EXISTS tokka`); err != nil {
		return fmt.Errorf("migrate: create schema: %w", err)
	}
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, d, migrations,
		goose.WithSessionLocker(locker),
		goose.WithTableName("tokka.goose_db_version"),
		goose.WithDisableGlobalRegistry(true),
		goose.WithAllowOutofOrder(allowGaps))
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// asUser runs fn in one read-write transaction on the primary as role
// authenticated with the user's verified claims, exactly as Supabase's
// PostgREST does, under the api's statement timeout; see userPrelude for
// how. For the read-replica window (readAfterWrite), it counts as u's write.
func (d *DB) asUser(ctx context.Context, u tokka.User, fn func(tx *sqlx.Tx) error) error {
	defer d.wrote(u)
	return d.asUserOn(ctx, d.db, false, u, fn)
}

// asUserKeeping is asUser for bookkeeping that changes nothing u reads back
// (rate-limit counters, verification checkpoints): it runs on the primary
// but leaves u's reads on the replica.
func (d *DB) asUserKeeping(ctx context.Context, u tokka.User, fn func(tx *sqlx.Tx) error) error {
	return d.asUserOn(ctx, d.db, false, u, fn)
}

// asReader is asUser for what only reads: a READ ONLY transaction, on the
// read replica when there is one, unless u wrote within the last
// readAfterWrite (then on the primary, so u reads its own writes).
func (d *DB) asReader(ctx context.Context, u tokka.User, fn func(tx *sqlx.Tx) error) error {
	pool := d.db
	if d.read != nil && !d.recentWriter(u) {
		pool = d.read
	}
	return d.asUserOn(ctx, pool, true, u, fn)
}

func (d *DB) asUserOn(ctx context.Context, pool *sqlx.DB, readOnly bool, u tokka.User, fn func(tx *sqlx.Tx) error) error {
	prelude, err := d.userPrelude(u)
	if err != nil {
		return err
	}
	return d.inTx(withPrelude(ctx, prelude), pool, readOnly, fn)
}

// userPrelude is the statement that starts each of u's transactions, sent
// in the same round trip as BEGIN (see conn). Every setting is made with
// set_config(…, true), which is transaction-local, so nothing leaks onto
// the pooled connection; and because each of them is set again at the start
// of every transaction, nothing an earlier transaction left on the
// connection at session level (an SQL injection's set_config(…, false))
// reaches this one: the claims are this request's (tokka.uid() reads nothing
// else), the role is authenticated, and search_path is pinned to
// pg_catalog, so a function planted in a schema the role may create in
// cannot stand in for a built-in one. Isolation level and access mode are
// stated in BEGIN for the same reason.
//
// The claims are the only outside text in it, and they go in as hex digits
// decoded by Postgres: no quote, backslash or byte sequence in a token's
// payload can end the literal, whatever standard_conforming_strings or
// client_encoding an earlier session set.
func (d *DB) userPrelude(u tokka.User) (string, error) {
	if !utf8.Valid(u.Claims) || bytes.IndexByte(u.Claims, 0) >= 0 {
		return "", tokka.Errorf(tokka.CodeUnauthorized, "invalid access token")
	}
	var b strings.Builder
	b.Grow(len(u.Claims)*2 + 300)
	b.WriteString("SELECT set_config('request.jwt.claims', convert_from(decode('")
	b.WriteString(hex.EncodeToString(u.Claims))
	b.WriteString("', 'hex'), 'UTF8'), true), set_config('role', 'authenticated', true), ")
	b.WriteString("set_config('search_path', 'pg_catalog, pg_temp', true), set_config('statement_timeout', '")
	b.WriteString(d.statementTimeout) // digits only: see SetStatementTimeout
	b.WriteString("', true)")
	return b.String(), nil
}

// syncerPrelude starts each of the syncer's transactions (see asSyncer).
const syncerPrelude = "SELECT set_config('role', 'tokka_syncer', true)"

// asSyncer runs fn in one transaction on the primary as role tokka_syncer.
func (d *DB) asSyncer(ctx context.Context, fn func(tx *sqlx.Tx) error) error {
	return d.inTx(withPrelude(ctx, syncerPrelude), d.db, false, fn)
}

// inTx runs fn in one READ COMMITTED transaction on pool, read-only or
// read-write as asked, both named in the BEGIN itself so that session
// defaults a previous user of the pooled connection may have changed do
// not apply (the audit chain needs READ COMMITTED: see migration 00011). A
// prelude in ctx (withPrelude) runs in the same round trip as BEGIN.
func (d *DB) inTx(ctx context.Context, pool *sqlx.DB, readOnly bool, fn func(tx *sqlx.Tx) error) (err error) {
	tx, err := pool.BeginTxx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted, ReadOnly: readOnly})
	if err != nil {
		return domainError(err, "begin")
	}
	defer func() {
		if p := recover(); p != nil {
			_ = tx.Rollback()
			panic(p)
		}
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if err = fn(tx); err != nil {
		// Methods wrap their own errors; whichever way they did, losing
		// the database half way is ErrUnavailable.
		if unreachable(err) && !errors.Is(err, tokka.ErrUnavailable) && tokka.ErrorCode(err) == tokka.CodeInternal {
			return &unavailableError{what: "transaction", cause: err}
		}
		return err
	}
	if err = tx.Commit(); err != nil {
		return domainError(err, "commit")
	}
	return nil
}

// isUniqueViolation reports whether err is a unique-constraint violation.
func isUniqueViolation(err error) bool {
	var pqErr *pq.Error
	return errors.As(err, &pqErr) && pqErr.Code == "23505"
}

// unavailableError is ErrUnavailable that keeps the driver's error for the
// logs (the message the caller sees is ErrUnavailable's).
type unavailableError struct {
	what  string
	cause error
}

func (e *unavailableError) Error() string {
	return "postgres: " + e.what + ": database unavailable: " + e.cause.Error()
}

func (e *unavailableError) Unwrap() []error { return []error{tokka.ErrUnavailable, e.cause} }

// unreachable reports whether err means the database itself could not be
// used, rather than that a statement failed: the connection could not be
// made or broke, or the server is shutting down or not yet accepting
// connections.
func unreachable(err error) bool {
	var pqErr *pq.Error
	if errors.As(err, &pqErr) {
		switch pqErr.Code {
		case "57P01", "57P02", "57P03": // admin_shutdown, crash_shutdown, cannot_connect_now
			return true
		case "53300": // too_many_connections: full, not broken, but the answer is the same
			return true
		}
		return pqErr.Code.Class() == "08" // connection_exception
	}
	var opErr *net.OpError
	return errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) || errors.As(err, &opErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// domainError turns driver errors that mean "the caller asked for something
// impossible" into domain errors, and a statement cancelled by the statement
// timeout into a CodeUnavailable one; everything else passes through.
func domainError(err error, what string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return tokka.ErrNotFound
	}
	var pqErr *pq.Error
	if errors.As(err, &pqErr) {
		switch pqErr.Code {
		case "23505":
			return tokka.Errorf(tokka.CodeConflict, "%s already exists", what)
		case "23514", "22P02", "22001":
			return tokka.Errorf(tokka.CodeInvalid, "invalid %s", what)
		case "42501": // insufficient_privilege: a grant or a row-level security check refused it
			return tokka.Errorf(tokka.CodeForbidden, "your role in this team does not allow changing %s", what)
		case "57014": // query_canceled: the statement timeout (or the request went away)
			return &tokka.Error{Code: tokka.CodeUnavailable, Message: "the database took too long to answer; try again shortly"}
		}
	}
	if unreachable(err) {
		return &unavailableError{what: what, cause: err}
	}
	return fmt.Errorf("postgres: %s: %w", what, err)
}
