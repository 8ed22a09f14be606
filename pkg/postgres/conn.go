package postgres

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"

	"github.com/lib/pq"
)

// A request's transaction costs round trips, and on a small read they are
// most of its time. Planning costs the server too: a dashboard query is
// planned in more CPU time than it runs in, so each connection keeps its
// statements prepared (stmtCache) and runs them again with Bind and
// Execute only. lib/pq sends BEGIN on its own, and the statement that
// sets the caller's claims, role, search_path and timeout is a second trip;
// so the pool's connections are wrapped (conn) to send that statement in
// the same simple-protocol message as BEGIN, and binary_parameters makes
// each statement with arguments one trip instead of two (Parse, Bind and
// Execute go out together, without a separate Describe).

// preludeKey is the context key of the SQL that BeginTx sends with BEGIN.
type preludeKey struct{}

// withPrelude returns ctx carrying prelude: SQL (one or more statements,
// no placeholders) that the next transaction begun with it runs right after
// BEGIN, in the same round trip. The SQL must be built from trusted text
// only: it is sent as is.
func withPrelude(ctx context.Context, prelude string) context.Context {
	return context.WithValue(ctx, preludeKey{}, prelude)
}

// newConnector returns lib/pq's connector for url with binary_parameters on,
// its connections wrapped in conn.
func newConnector(url string) (driver.Connector, error) {
	cfg, err := pq.NewConfig(url)
	if err != nil {
		return nil, err
	}
	// One round trip per statement with arguments. []byte arguments then
	// travel in binary form, which Postgres reads correctly for bytea and
	// text but not for jsonb: storage passes JSON as strings.
	cfg.BinaryParameters = true
	c, err := pq.NewConnectorConfig(cfg)
	if err != nil {
		return nil, err
	}
	return connector{c}, nil
}

// connector wraps each connection lib/pq makes in conn.
type connector struct{ pq *pq.Connector }

func (c connector) Connect(ctx context.Context) (driver.Conn, error) {
	cn, err := c.pq.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &conn{Conn: cn, stmts: newStmtCache(stmtCacheSize)}, nil
}

func (c connector) Driver() driver.Driver { return c.pq.Driver() }

// conn is a lib/pq connection whose BeginTx also runs the context's
// prelude (see withPrelude). Everything else is lib/pq's own.
type conn struct {
	driver.Conn
	// broken is set when a BEGIN with a prelude failed: the connection may
	// be inside an aborted transaction, so the pool must not reuse it.
	broken bool
	// stmts are the statements prepared on this connection, by their SQL.
	stmts *stmtCache
}

// BeginTx begins a transaction; with a prelude in ctx, BEGIN and the prelude
// go as one simple-protocol message. If either fails the connection is
// discarded, never handed to another request half set up.
func (c *conn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	prelude, _ := ctx.Value(preludeKey{}).(string)
	if prelude == "" {
		return c.Conn.(driver.ConnBeginTx).BeginTx(ctx, opts)
	}
	mode, err := beginMode(opts)
	if err != nil {
		return nil, err
	}
	if _, err := c.Conn.(driver.ExecerContext).ExecContext(ctx, "BEGIN "+mode+"; "+prelude, nil); err != nil {
		c.broken = true
		return nil, err
	}
	// lib/pq's connection is its own transaction: it tracks the server's
	// transaction status from every ReadyForQuery, so its Commit and
	// Rollback work for a BEGIN it did not send itself.
	return c.Conn.(driver.Tx), nil
}

// beginMode is BEGIN's isolation level and access mode. Both are always
// stated, so that session defaults an earlier user of the connection
// changed never apply.
func beginMode(opts driver.TxOptions) (string, error) {
	var level string
	switch sql.IsolationLevel(opts.Isolation) {
	case sql.LevelDefault, sql.LevelReadCommitted:
		level = "ISOLATION LEVEL READ COMMITTED"
	case sql.LevelRepeatableRead:
		level = "ISOLATION LEVEL REPEATABLE READ"
	case sql.LevelSerializable:
		level = "ISOLATION LEVEL SERIALIZABLE"
	default:
		return "", fmt.Errorf("postgres: isolation level %d not supported", opts.Isolation)
	}
	if opts.ReadOnly {
		return level + " READ ONLY", nil
	}
	return level + " READ WRITE", nil
}

func (c *conn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *conn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	st, err := c.Conn.(driver.ConnPrepareContext).PrepareContext(ctx, query)
	if err != nil || !strings.HasPrefix(query, "COPY ") {
		return st, err
	}
	rows, ok := st.(copyDataWriter)
	if !ok {
		_ = st.Close()
		return nil, errors.New("postgres: the driver cannot take COPY data")
	}
	return copyStmt{Stmt: st, rows: rows, conn: c}, nil
}

// copyData is COPY text (rows in COPY's text format, separated by
// newlines, without the last one) that a COPY statement's Exec takes as
// its one argument and hands to the driver as is: one call for many rows,
// where lib/pq's own COPY takes one database/sql call per row.
type copyData []byte

// copyDataWriter is lib/pq's COPY statement, which takes raw COPY text.
type copyDataWriter interface {
	CopyData(ctx context.Context, line string) (driver.Result, error)
}

// copyStmt is a COPY statement that also takes copyData.
type copyStmt struct {
	driver.Stmt
	rows copyDataWriter
	conn *conn
}

func (s copyStmt) CheckNamedValue(nv *driver.NamedValue) error {
	if _, ok := nv.Value.(copyData); ok {
		return nil
	}
	return s.conn.CheckNamedValue(nv)
}

func (s copyStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	if len(args) == 1 {
		if data, ok := args[0].Value.(copyData); ok {
			return s.rows.CopyData(ctx, string(data))
		}
	}
	values := make([]driver.Value, len(args))
	for i, a := range args {
		values[i] = a.Value
	}
	// lib/pq's COPY statement has only the old Exec.
	//lint:ignore SA1019 lib/pq's COPY statement implements no ExecContext
	return s.Stmt.Exec(values)
}

// ExecContext runs a statement with arguments as a statement prepared on
// this connection, as QueryContext does: a sync's writes are the same few
// statements every time, and planning them (CTEs over RLS tables) cost
// PostgreSQL more than running them. Without arguments it goes as a simple
// query (which may hold several statements).
func (c *conn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if len(args) == 0 {
		return c.Conn.(driver.ExecerContext).ExecContext(ctx, query, args)
	}
	st, err := c.prepared(ctx, query)
	if err != nil {
		return nil, err
	}
	res, err := st.(driver.StmtExecContext).ExecContext(ctx, args)
	return res, c.distrust(err)
}

// QueryContext runs a query with arguments as a statement prepared on this
// connection, preparing it the first time (one more round trip, once per
// connection). A query without arguments goes as a simple query: one trip,
// nothing to prepare.
func (c *conn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if len(args) == 0 {
		return c.Conn.(driver.QueryerContext).QueryContext(ctx, query, args)
	}
	st, err := c.prepared(ctx, query)
	if err != nil {
		return nil, err
	}
	rows, err := st.(driver.StmtQueryContext).QueryContext(ctx, args)
	return rows, c.distrust(err)
}

// distrust returns err, and marks the connection broken when err is
// PostgreSQL refusing a prepared statement: its result no longer matches
// its tables (a migration changed them), or it is gone from the session (a
// DEALLOCATE). Then this connection's statements are not to be trusted, so
// the pool discards it and the next one prepares afresh.
func (c *conn) distrust(err error) error {
	if err != nil && lostStatement(err) {
		c.broken = true
	}
	return err
}

// prepared returns this connection's prepared statement for query. The
// least recently used statement is closed when the cache is full, so
// generated SQL (usage queries of every shape) cannot grow it without end.
func (c *conn) prepared(ctx context.Context, query string) (driver.Stmt, error) {
	if st := c.stmts.get(query); st != nil {
		return st, nil
	}
	st, err := c.Conn.(driver.ConnPrepareContext).PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if old := c.stmts.put(query, st); old != nil {
		if err := old.Close(); err != nil {
			// The statement is left on the server; a connection that
			// cannot close one is not trusted with more.
			c.broken = true
		}
	}
	return st, nil
}

// lostStatement reports whether err is PostgreSQL refusing a prepared
// statement: its tables changed shape ("cached plan must not change result
// type") or the session no longer has it.
func lostStatement(err error) bool {
	var pqErr *pq.Error
	return errors.As(err, &pqErr) && (pqErr.Code == "0A000" || pqErr.Code == "26000")
}

func (c *conn) Ping(ctx context.Context) error { return c.Conn.(driver.Pinger).Ping(ctx) }

func (c *conn) CheckNamedValue(nv *driver.NamedValue) error {
	return c.Conn.(driver.NamedValueChecker).CheckNamedValue(nv)
}

func (c *conn) ResetSession(ctx context.Context) error {
	if c.broken {
		return driver.ErrBadConn
	}
	return c.Conn.(driver.SessionResetter).ResetSession(ctx)
}

func (c *conn) IsValid() bool { return !c.broken && c.Conn.(driver.Validator).IsValid() }
