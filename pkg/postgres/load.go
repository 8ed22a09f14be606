package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// column is one column of a daily table as a sync fills it: its name, its
// SQL type, and how a row's value for it is read. The stage table, the COPY
// column list and the values all come from one list of these, so a column
// is declared once.
type column[R any] struct {
	name, sqlType string
	value         func(*R) any
}

// day is the text form of a bucket's date: COPY reads it as a date.
func day(t time.Time) string { return t.Format(time.DateOnly) }

// usageColumns are usage_daily's columns besides the connection's own
// (connection_id, user_id, provider), which the move takes from the
// leased connection's row.
var usageColumns = []column[tokka.UsageRow]{
	{"day", "date", func(r *tokka.UsageRow) any { return day(r.Day) }},
	{"family", "text", func(r *tokka.UsageRow) any { return r.Family }},
	{"model", "text", func(r *tokka.UsageRow) any { return r.Model }},
	{"project_id", "text", func(r *tokka.UsageRow) any { return r.ProjectID }},
	{"api_key_id", "text", func(r *tokka.UsageRow) any { return r.APIKeyID }},
	{"service_tier", "text", func(r *tokka.UsageRow) any { return r.ServiceTier }},
	{"batch", "text", func(r *tokka.UsageRow) any { return r.Batch }},
	{"context_window", "text", func(r *tokka.UsageRow) any { return r.ContextWindow }},
	{"image_size", "text", func(r *tokka.UsageRow) any { return r.ImageSize }},
	{"image_source", "text", func(r *tokka.UsageRow) any { return r.ImageSource }},
	{"context_level", "text", func(r *tokka.UsageRow) any { return r.ContextLevel }},
	{"vector_store_id", "text", func(r *tokka.UsageRow) any { return r.VectorStoreID }},
	{"input_uncached_tokens", "bigint", func(r *tokka.UsageRow) any { return r.InputUncachedTokens }},
	{"cache_read_tokens", "bigint", func(r *tokka.UsageRow) any { return r.CacheReadTokens }},
	{"cache_write_5m_tokens", "bigint", func(r *tokka.UsageRow) any { return r.CacheWrite5mTokens }},
	{"cache_write_1h_tokens", "bigint", func(r *tokka.UsageRow) any { return r.CacheWrite1hTokens }},
	{"output_tokens", "bigint", func(r *tokka.UsageRow) any { return r.OutputTokens }},
	{"requests", "bigint", func(r *tokka.UsageRow) any { return r.Requests }},
	{"images", "bigint", func(r *tokka.UsageRow) any { return r.Images }},
	{"characters", "bigint", func(r *tokka.UsageRow) any { return r.Characters }},
	{"seconds", "bigint", func(r *tokka.UsageRow) any { return r.Seconds }},
	{"bytes", "bigint", func(r *tokka.UsageRow) any { return r.Bytes }},
	{"sessions", "bigint", func(r *tokka.UsageRow) any { return r.Sessions }},
	{"file_searches", "bigint", func(r *tokka.UsageRow) any { return r.FileSearches }},
	{"web_searches", "bigint", func(r *tokka.UsageRow) any { return r.WebSearches }},
}

// costColumns are cost_daily's columns besides the connection's own.
// Amounts travel as decimal text into numeric columns, so no float ever
// touches money.
var costColumns = []column[tokka.CostRow]{
	{"day", "date", func(r *tokka.CostRow) any { return day(r.Day) }},
	{"line_item", "text", func(r *tokka.CostRow) any { return r.LineItem }},
	{"model", "text", func(r *tokka.CostRow) any { return r.Model }},
	{"token_type", "text", func(r *tokka.CostRow) any { return r.TokenType }},
	{"cost_type", "text", func(r *tokka.CostRow) any { return r.CostType }},
	{"project_id", "text", func(r *tokka.CostRow) any { return r.ProjectID }},
	{"api_key_id", "text", func(r *tokka.CostRow) any { return r.APIKeyID }},
	{"amount_usd", "numeric", func(r *tokka.CostRow) any { return r.AmountUSD.String() }},
	{"amount", "numeric", func(r *tokka.CostRow) any { return r.Amount.String() }},
	{"currency", "text", func(r *tokka.CostRow) any { return r.Currency }},
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

// copy streams rows into the stage table with COPY: COPY is refused on
// the daily tables themselves (row-level security) but costs the server
// and the syncer far less per row than any INSERT.
func (s stage[R]) copy(ctx context.Context, tx *sqlx.Tx, rows []R) error {
	if len(rows) == 0 {
		return nil
	}
	stmt, err := tx.PrepareContext(ctx, `COPY pg_temp.`+s.table+` (`+s.names("")+`) FROM STDIN`)
	if err != nil {
		return domainError(err, "stage "+s.table)
	}
	defer stmt.Close()
	vals := make([]any, len(s.columns))
	for i := range rows {
		for j, c := range s.columns {
			vals[j] = c.value(&rows[i])
		}
		if _, err := stmt.ExecContext(ctx, vals...); err != nil {
			return domainError(err, "stage "+s.table)
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
	return `INSERT INTO ` + s.target + ` (connection_id, user_id, provider, ` + s.names("") + `)
		SELECT c.id, c.user_id, c.provider, ` + s.names("s.") + `
		FROM pg_temp.` + s.table + ` s,
			(SELECT id, user_id, provider FROM tokka.connections WHERE id = $1 AND lease_owner = $2) c`
}

// replaceWindow stages the sync's rows with COPY, then in one statement
// deletes the window's old daily rows and the rollups of every month it
// touches (months from $5 to $6) and moves the staged rows in; the
// rollups are rebuilt afterwards by refreshRollups. It runs in the
// caller's transaction, after holdLease.
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
		old_spend AS (DELETE FROM tokka.spend_daily WHERE connection_id = $1 AND day >= $5 AND day < $6),
		new_usage AS (%s)
		%s`, usageStage.move(), costStage.move()),
		l.ConnectionID, l.Owner, day(r.Window.From), day(r.Window.To), months[0], months[1])
	return domainError(err, "replace window")
}
