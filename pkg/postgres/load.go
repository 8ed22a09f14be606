package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/shopspring/decimal"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// column is one column of a daily table as a sync fills it: its name, its
// SQL type, and how a row's value for it is written in COPY's text format.
// The stage table, the COPY column list and the data all come from one list
// of these, so a column is declared once.
type column[R any] struct {
	name, sqlType string
	text          func(b []byte, r *R) []byte // appends the row's value
}

func textColumn[R any](name string, v func(*R) string) column[R] {
	return column[R]{name, "text", func(b []byte, r *R) []byte { return appendCopyText(b, v(r)) }}
}

func bigintColumn[R any](name string, v func(*R) int64) column[R] {
	return column[R]{name, "bigint", func(b []byte, r *R) []byte { return strconv.AppendInt(b, v(r), 10) }}
}

// dayColumn is the bucket's date, which COPY reads as a date.
func dayColumn[R any](v func(*R) time.Time) column[R] {
	return column[R]{"day", "date", func(b []byte, r *R) []byte { return v(r).AppendFormat(b, time.DateOnly) }}
}

// numericColumn is an amount: decimal text into a numeric column, so no
// float ever touches money.
func numericColumn[R any](name string, v func(*R) decimal.Decimal) column[R] {
	return column[R]{name, "numeric", func(b []byte, r *R) []byte { return append(b, v(r).String()...) }}
}

// appendCopyText appends s escaped for COPY's text format: a backslash,
// newline, carriage return or tab in provider data stays data and never
// ends a value or a row.
func appendCopyText(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			b = append(b, '\\', '\\')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, c)
		}
	}
	return b
}

// day is the text form of a bucket's date.
func day(t time.Time) string { return t.Format(time.DateOnly) }

// usageColumns are usage_daily's columns besides the connection's own
// (connection_id, team_id, provider), which the move takes from the
// leased connection's row.
var usageColumns = []column[tokka.UsageRow]{
	dayColumn(func(r *tokka.UsageRow) time.Time { return r.Day }),
	textColumn("family", func(r *tokka.UsageRow) string { return r.Family }),
	textColumn("model", func(r *tokka.UsageRow) string { return r.Model }),
	textColumn("project_id", func(r *tokka.UsageRow) string { return r.ProjectID }),
	textColumn("api_key_id", func(r *tokka.UsageRow) string { return r.APIKeyID }),
	textColumn("service_tier", func(r *tokka.UsageRow) string { return r.ServiceTier }),
	textColumn("batch", func(r *tokka.UsageRow) string { return r.Batch }),
	textColumn("context_window", func(r *tokka.UsageRow) string { return r.ContextWindow }),
	textColumn("image_size", func(r *tokka.UsageRow) string { return r.ImageSize }),
	textColumn("image_source", func(r *tokka.UsageRow) string { return r.ImageSource }),
	textColumn("context_level", func(r *tokka.UsageRow) string { return r.ContextLevel }),
	textColumn("vector_store_id", func(r *tokka.UsageRow) string { return r.VectorStoreID }),
	bigintColumn("input_uncached_tokens", func(r *tokka.UsageRow) int64 { return r.InputUncachedTokens }),
	bigintColumn("cache_read_tokens", func(r *tokka.UsageRow) int64 { return r.CacheReadTokens }),
	bigintColumn("cache_write_5m_tokens", func(r *tokka.UsageRow) int64 { return r.CacheWrite5mTokens }),
	bigintColumn("cache_write_1h_tokens", func(r *tokka.UsageRow) int64 { return r.CacheWrite1hTokens }),
	bigintColumn("output_tokens", func(r *tokka.UsageRow) int64 { return r.OutputTokens }),
	bigintColumn("requests", func(r *tokka.UsageRow) int64 { return r.Requests }),
	bigintColumn("images", func(r *tokka.UsageRow) int64 { return r.Images }),
	bigintColumn("characters", func(r *tokka.UsageRow) int64 { return r.Characters }),
	bigintColumn("seconds", func(r *tokka.UsageRow) int64 { return r.Seconds }),
	bigintColumn("bytes", func(r *tokka.UsageRow) int64 { return r.Bytes }),
	bigintColumn("sessions", func(r *tokka.UsageRow) int64 { return r.Sessions }),
	bigintColumn("file_searches", func(r *tokka.UsageRow) int64 { return r.FileSearches }),
	bigintColumn("web_searches", func(r *tokka.UsageRow) int64 { return r.WebSearches }),
}

// costColumns are cost_daily's columns besides the connection's own.
var costColumns = []column[tokka.CostRow]{
	dayColumn(func(r *tokka.CostRow) time.Time { return r.Day }),
	textColumn("line_item", func(r *tokka.CostRow) string { return r.LineItem }),
	textColumn("model", func(r *tokka.CostRow) string { return r.Model }),
	textColumn("token_type", func(r *tokka.CostRow) string { return r.TokenType }),
	textColumn("cost_type", func(r *tokka.CostRow) string { return r.CostType }),
	textColumn("project_id", func(r *tokka.CostRow) string { return r.ProjectID }),
	textColumn("api_key_id", func(r *tokka.CostRow) string { return r.APIKeyID }),
	numericColumn("amount_usd", func(r *tokka.CostRow) decimal.Decimal { return r.AmountUSD }),
	numericColumn("amount", func(r *tokka.CostRow) decimal.Decimal { return r.Amount }),
	textColumn("currency", func(r *tokka.CostRow) string { return r.Currency }),
}

// stage is where a sync's rows wait between COPY and the move into their
// RLS-protected daily table: a temporary table of the session, so no other
// session can see or write it, emptied at every commit (ON COMMIT DELETE
// ROWS) and with everything staged by a failed transaction rolled back,
// so nothing staged outlives the transaction that staged it.
type stage[R any] struct {
	table, target string
	columns       []column[R]
}

var (
	usageStage = stage[tokka.UsageRow]{table: "usage_stage", target: "tokka.usage_daily", columns: usageColumns}
	costStage  = stage[tokka.CostRow]{table: "cost_stage", target: "tokka.cost_daily", columns: costColumns}
)

func (s stage[R]) names(prefix string) string {
	names := make([]string, len(s.columns))
	for i, c := range s.columns {
		names[i] = prefix + c.name
	}
	return strings.Join(names, ", ")
}

// create makes the stage table if this session has none yet (the pool
// keeps sessions, so normally once per session).
func (s stage[R]) create() string {
	defs := make([]string, len(s.columns))
	for i, c := range s.columns {
		defs[i] = c.name + " " + c.sqlType
	}
	return `CREATE TEMP TABLE IF NOT EXISTS ` + s.table + ` (` + strings.Join(defs, ", ") + `) ON COMMIT DELETE ROWS`
}

// copyChunk is about how much COPY text goes to the driver at a time.
const copyChunk = 60 << 10

// copy streams rows into the stage table with COPY: COPY is refused on
// the daily tables themselves (row-level security) but costs the server
// and the syncer far less per row than any INSERT. The rows are written
// in COPY's text format here and handed to the driver in chunks
// (copyData), not one database/sql call per row, which cost the syncer
// more than the rest of storing a sync.
func (s stage[R]) copy(ctx context.Context, tx *sqlx.Tx, rows []R) error {
	if len(rows) == 0 {
		return nil
	}
	stmt, err := tx.PrepareContext(ctx, `COPY pg_temp.`+s.table+` (`+s.names("")+`) FROM STDIN`)
	if err != nil {
		return domainError(err, "stage "+s.table)
	}
	defer stmt.Close()
	b := make([]byte, 0, copyChunk+4096)
	for i := range rows {
		if len(b) > 0 {
			b = append(b, '\n')
		}
		for j, c := range s.columns {
			if j > 0 {
				b = append(b, '\t')
			}
			b = c.text(b, &rows[i])
		}
		if len(b) >= copyChunk || i == len(rows)-1 {
			if _, err := stmt.ExecContext(ctx, copyData(b)); err != nil {
				return domainError(err, "stage "+s.table)
			}
			b = b[:0]
		}
	}
	if _, err := stmt.ExecContext(ctx); err != nil {
		return domainError(err, "stage "+s.table)
	}
	return nil
}

// move is the CTE that inserts the staged rows into the daily table. The
// connection's id, user and provider come from its row, which holdLease
// has locked for this lease ($1 the connection, $2 the lease owner), never
// from the caller: a lease value altered in memory cannot file rows under
// another user or provider.
func (s stage[R]) move() string {
	return `INSERT INTO ` + s.target + ` (connection_id, team_id, provider, ` + s.names("") + `)
		SELECT c.id, c.team_id, c.provider, ` + s.names("s.") + `
		FROM pg_temp.` + s.table + ` s,
			(SELECT id, team_id, provider FROM tokka.connections WHERE id = $1 AND lease_owner = $2) c`
}

// replaceWindow stages the sync's rows with COPY, then in one statement
// deletes the window's old daily rows and daily spend totals, and the
// monthly rollups of every month it touches (months from $5 to $6), and
// moves the staged rows in; the totals and rollups are rebuilt afterwards
// by refreshRollups. It runs in the caller's transaction, after holdLease.
func replaceWindow(ctx context.Context, tx *sqlx.Tx, l tokka.Lease, r tokka.SyncResult, months [2]string) error {
	// Without arguments lib/pq sends both statements in one round trip.
	if _, err := tx.ExecContext(ctx, usageStage.create()+`; `+costStage.create()); err != nil {
		return domainError(err, "stage tables")
	}
	if err := usageStage.copy(ctx, tx, r.Usage); err != nil {
		return err
	}
	if err := costStage.copy(ctx, tx, r.Costs); err != nil {
		return err
	}
	// The CTEs see the table as it was before the statement, so the
	// deletes never touch the rows moved in by the same statement.
	_, err := tx.ExecContext(ctx, fmt.Sprintf(`
		WITH old_usage AS (DELETE FROM tokka.usage_daily WHERE connection_id = $1 AND day >= $3 AND day < $4),
		old_costs AS (DELETE FROM tokka.cost_daily WHERE connection_id = $1 AND day >= $3 AND day < $4),
		old_usage_months AS (DELETE FROM tokka.usage_monthly WHERE connection_id = $1 AND day >= $5 AND day < $6),
		old_cost_months AS (DELETE FROM tokka.cost_monthly WHERE connection_id = $1 AND day >= $5 AND day < $6),
		old_spend AS (DELETE FROM tokka.spend_daily WHERE connection_id = $1 AND day >= $3 AND day < $4),
		new_usage AS (%s)
		%s`, usageStage.move(), costStage.move()),
		l.ConnectionID, l.Owner, day(r.Window.From), day(r.Window.To), months[0], months[1])
	return domainError(err, "replace window")
}
