// Package postgres owns every SQL statement Tokka runs. The api's methods run
// inside a transaction as role authenticated with the caller's claims (so
// row-level security decides what they see); the syncer's run as role
// tokka_syncer, whose grants bound what it may touch.
package postgres

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"strconv"
	"syscall"
	"time"

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
}

// DefaultStatementTimeout bounds each statement of an api transaction
// unless SetStatementTimeout says otherwise.
const DefaultStatementTimeout = 5 * time.Second

// Open connects to url and checks the connection; it fails when Postgres is
// unreachable.
func Open(ctx context.Context, url string, maxConns int) (*DB, error) {
	d, err := sqlx.Open("postgres", url)
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	if maxConns <= 0 {
		maxConns = 10
	}
	d.SetMaxOpenConns(maxConns)
	d.SetMaxIdleConns(maxConns)
	d.SetConnMaxIdleTime(5 * time.Minute)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := d.PingContext(pctx); err != nil {
		_ = d.Close()
		return nil, fmt.Errorf("postgres: cannot reach database: %w", err)
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
func (d *DB) Close() error { return errors.Join(d.db.Close(), d.ping.Close()) }

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

// asUser runs fn in one transaction as role authenticated with the user's
// verified claims, exactly as Supabase's PostgREST does, under the api's
// statement timeout. Every setting is made with set_config(…, true), which is
// transaction-local, so nothing leaks onto the pooled connection; and because
// each of them is set again at the start of every transaction, nothing an
// earlier transaction left on the connection at session level (an SQL
// injection's set_config(…, false)) reaches this one: the claims are this
// request's (tokka.uid() reads nothing else), and search_path is pinned to
// pg_catalog, so a function planted in a schema the role may create in
// cannot stand in for a built-in one. Isolation level and read-write mode
// are stated in BEGIN for the same reason (see inTx).
func (d *DB) asUser(ctx context.Context, u tokka.User, fn func(tx *sqlx.Tx) error) error {
	return d.inTx(ctx, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, `
			SELECT set_config('request.jwt.claims', $1, true), set_config('role', 'authenticated', true),
				set_config('search_path', 'pg_catalog, pg_temp', true), set_config('statement_timeout', $2, true)`,
			string(u.Claims), d.statementTimeout); err != nil {
			return fmt.Errorf("postgres: impersonate: %w", err)
		}
		return fn(tx)
	})
}

// asSyncer runs fn in one transaction as role tokka_syncer.
func (d *DB) asSyncer(ctx context.Context, fn func(tx *sqlx.Tx) error) error {
	return d.inTx(ctx, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, `SELECT set_config('role', 'tokka_syncer', true)`); err != nil {
			return fmt.Errorf("postgres: assume syncer role: %w", err)
		}
		return fn(tx)
	})
}

// inTx runs fn in one READ COMMITTED, read-write transaction, named in the
// BEGIN itself so that session defaults a previous user of the pooled
// connection may have changed do not apply (the audit chain needs READ
// COMMITTED: see migration 00011).
func (d *DB) inTx(ctx context.Context, fn func(tx *sqlx.Tx) error) (err error) {
	tx, err := d.db.BeginTxx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
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
		case "57014": // query_canceled: the statement timeout (or the request went away)
			return &tokka.Error{Code: tokka.CodeUnavailable, Message: "the database took too long to answer; try again shortly"}
		}
	}
	if unreachable(err) {
		return &unavailableError{what: what, cause: err}
	}
	return fmt.Errorf("postgres: %s: %w", what, err)
}
