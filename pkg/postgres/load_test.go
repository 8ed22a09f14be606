package postgres_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/postgres"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

func syncResult(w tokka.Window, usage []tokka.UsageRow, costs []tokka.CostRow) tokka.SyncResult {
	return tokka.SyncResult{Window: w, Usage: usage, Costs: costs, Backfill: true, Next: time.Now().Add(time.Hour),
		Event: tokka.AuditEvent{Action: tokka.ActionSyncSucceeded, Outcome: tokka.OutcomeSuccess, Actor: "syncer:t"}}
}

// Staged rows are stored under the leased connection's own user and
// provider, read from its row, whatever the lease value claims: a lease
// altered in memory cannot put rows on another user's dashboard, and a
// lease for one connection cannot write another connection's rows.
func TestStagedRowsLandOnlyOnTheLeasedConnection(t *testing.T) {
	t.Parallel()
	b := setup(t, ownDatabase())
	ctx := context.Background()
	u, other := newUser(), newUser()
	mine := b.addConnection(t, u, "openai")
	theirs := b.addConnection(t, other, "anthropic")
	leases := leaseAll(t, b.db, "syncer:one")
	day := time.Date(2026, 10, 30, 0, 0, 0, 0, time.UTC)
	usage, costs := someRows(day, "1.25")
	w := tokka.Window{From: day, To: day.AddDate(0, 0, 1)}

	forged := leases[mine]
	forged.TeamID, forged.Provider = other.ID, "anthropic"
	require.NoError(t, b.db.CompleteSync(ctx, forged, syncResult(w, usage, costs)))
	for _, table := range []string{"usage_daily", "cost_daily", "usage_monthly", "cost_monthly", "spend_daily"} {
		var owners []string
		require.NoError(t, b.sql.Select(&owners, `SELECT DISTINCT team_id::text || '/' || provider FROM tokka.`+table+`
			WHERE connection_id = $1`, mine))
		require.Equal(t, []string{u.ID + "/openai"}, owners, table)
		var n int
		require.NoError(t, b.sql.Get(&n, `SELECT count(*) FROM tokka.`+table+` WHERE team_id = $1`, other.ID))
		require.Zero(t, n, table)
	}

	// Another connection's id under this lease's owner is not held.
	stolen := leases[mine]
	stolen.ConnectionID = theirs
	require.ErrorIs(t, b.db.CompleteSync(ctx, stolen, syncResult(w, usage, costs)), tokka.ErrLeaseLost)
	require.Zero(t, spendRows(t, b.sql, theirs))
}

// A window stored twice keeps one copy of every row (daily and rollups),
// with the second sync's values, and every usage column and exact amount
// comes back as it was handed over.
func TestWindowReplacedTwiceKeepsOneCopy(t *testing.T) {
	t.Parallel()
	b := setup(t, ownDatabase())
	ctx := context.Background()
	id := b.addConnection(t, newUser(), "openai")
	day := time.Date(2026, 10, 30, 0, 0, 0, 0, time.UTC)
	w := tokka.Window{From: day.AddDate(0, 0, -1), To: day.AddDate(0, 0, 2)} // spans two months
	full := tokka.UsageRow{Day: day, Family: "f", Model: "m", ProjectID: "p", APIKeyID: "k", ServiceTier: "t", Batch: "true", ContextWindow: "0-200k", ImageSize: "1x1", ImageSource: "src", ContextLevel: "low", VectorStoreID: "vs", Images: 7, Characters: 8, Seconds: 9, Bytes: 10, Sessions: 11, FileSearches: 12, WebSearches: 13, Tokens: tokka.Tokens{InputUncachedTokens: 1, CacheReadTokens: 2, CacheWrite5mTokens: 3, CacheWrite1hTokens: 4, OutputTokens: 5, Requests: 6}}
	cost := func(usd string) tokka.CostRow {
		return tokka.CostRow{Day: day.AddDate(0, 0, 1), LineItem: "li, x", Model: "m", TokenType: "tt", CostType: "ct",
			ProjectID: "p", APIKeyID: "k", AmountUSD: decimal.RequireFromString(usd),
			Amount: decimal.RequireFromString(usd).Shift(2), Currency: "usd"}
	}
	for _, usd := range []string{"0.000000000000000001", "12345678901234567890.123456789012345678"} {
		l := leaseAll(t, b.db, "syncer:one")[id]
		require.NoError(t, b.db.CompleteSync(ctx, l, syncResult(w, []tokka.UsageRow{full}, []tokka.CostRow{cost(usd)})))
		_, err := b.sql.Exec(`UPDATE tokka.connections SET next_sync_at = now() WHERE id = $1`, id)
		require.NoError(t, err)
	}
	for table, want := range map[string]int{"usage_daily": 1, "cost_daily": 1, "usage_monthly": 1, "cost_monthly": 1, "spend_daily": 1} {
		var n int
		require.NoError(t, b.sql.Get(&n, `SELECT count(*) FROM tokka.`+table+` WHERE connection_id = $1`, id), table)
		require.Equal(t, want, n, table)
	}
	var got struct {
		tokka.UsageRow
		Day string `db:"day"`
	}
	require.NoError(t, b.sql.Get(&got, `SELECT to_char(day, 'YYYY-MM-DD') AS day, family AS "family", model AS "model",
		project_id AS "projectid", api_key_id AS "apikeyid", service_tier AS "servicetier", batch AS "batch",
		context_window AS "contextwindow", image_size AS "imagesize", image_source AS "imagesource",
		context_level AS "contextlevel", vector_store_id AS "vectorstoreid",
		input_uncached_tokens AS "inputuncachedtokens", cache_read_tokens AS "cachereadtokens",
		cache_write_5m_tokens AS "cachewrite5mtokens", cache_write_1h_tokens AS "cachewrite1htokens",
		output_tokens AS "outputtokens", requests AS "requests", images AS "images", characters AS "characters",
		seconds AS "seconds", bytes AS "bytes", sessions AS "sessions", file_searches AS "filesearches",
		web_searches AS "websearches"
		FROM tokka.usage_daily WHERE connection_id = $1`, id))
	require.Equal(t, day.Format(time.DateOnly), got.Day)
	want := full
	want.Day = time.Time{}
	require.Equal(t, want, got.UsageRow)
	var money []string
	require.NoError(t, b.sql.Select(&money, `
		SELECT line_item || '|' || token_type || '|' || cost_type || '|' || api_key_id || '|' || amount_usd::text || '|' || amount::text
		FROM tokka.cost_daily WHERE connection_id = $1
		UNION ALL SELECT amount_usd::text FROM tokka.spend_daily WHERE connection_id = $1`, id))
	require.Equal(t, []string{"li, x|tt|ct|k|12345678901234567890.123456789012345678|1234567890123456789012.3456789012345678",
		"12345678901234567890.123456789012345678"}, money)
}

// A sync whose rows are refused (a negative count) stores nothing, and
// leaves nothing behind on its database session for the next sync to
// pick up: the next one, on the same single pooled session, stores exactly
// its own rows.
func TestRefusedRowsLeaveNothingForTheNextSync(t *testing.T) {
	t.Parallel()
	b := setup(t, ownDatabase())
	d, err := postgres.Open(context.Background(), b.url, 1)
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close() })
	ctx := context.Background()
	u := newUser()
	bad, good := b.addConnection(t, u, "openai"), b.addConnection(t, u, "anthropic")
	leases := leaseAll(t, d, "syncer:one")
	day := time.Date(2026, 10, 30, 0, 0, 0, 0, time.UTC)
	w := tokka.Window{From: day, To: day.AddDate(0, 0, 1)}

	usage, costs := someRows(day, "3")
	usage = append(usage, tokka.UsageRow{Day: day, Family: "completions", Model: "neg", Tokens: tokka.Tokens{OutputTokens: -1}})
	require.Error(t, d.CompleteSync(ctx, leases[bad], syncResult(w, usage, costs)))
	require.Zero(t, spendRows(t, b.sql, bad))

	usage, costs = someRows(day, "4")
	require.NoError(t, d.CompleteSync(ctx, leases[good], syncResult(w, usage, costs)))
	var rows []string
	require.NoError(t, b.sql.Select(&rows, `SELECT model FROM tokka.usage_daily WHERE team_id = $1
		UNION ALL SELECT amount_usd::text FROM tokka.cost_daily WHERE team_id = $1`, u.ID))
	require.ElementsMatch(t, []string{"m", "4"}, rows)
}

// Provider text is data: a tab, newline, carriage return or backslash in a
// value (and COPY's end marker, "\.") comes back exactly, and a sync of
// more rows than one chunk of COPY text stores every row.
func TestCopyKeepsProviderTextAndEveryRow(t *testing.T) {
	t.Parallel()
	b := setup(t, ownDatabase())
	d, raw := b.db, b.sql
	ctx := context.Background()
	id := b.addConnection(t, newUser(), "openai")
	day := time.Date(2026, 10, 30, 0, 0, 0, 0, time.UTC)
	w := tokka.Window{From: day.AddDate(0, 0, -30), To: day.AddDate(0, 0, 1)}
	hostile := []string{"tab\there", "line\nbreak", "cr\rhere", `back\slash`, `\.`, `\N`, "\\\t\n\r", "ünïcödé ☃"}
	var usage []tokka.UsageRow
	var costs []tokka.CostRow
	for i := range 3000 {
		model := hostile[i%len(hostile)] + " #" + strconv.Itoa(i)
		d := day.AddDate(0, 0, -(i % 30))
		usage = append(usage, tokka.UsageRow{Day: d, Family: "completions", Model: model, Tokens: tokka.Tokens{OutputTokens: int64(i)}})
		costs = append(costs, tokka.CostRow{Day: d, LineItem: model, Model: model, AmountUSD: decimal.New(int64(i), -2),
			Amount: decimal.New(int64(i), -2), Currency: "usd"})
	}
	require.NoError(t, d.CompleteSync(ctx, leaseAll(t, d, "syncer:one")[id], syncResult(w, usage, costs)))

	var models []string
	require.NoError(t, raw.Select(&models, `SELECT model FROM tokka.usage_daily WHERE connection_id = $1 ORDER BY output_tokens`, id))
	var lines []string
	require.NoError(t, raw.Select(&lines, `SELECT line_item || '=' || amount_usd::text FROM tokka.cost_daily
		WHERE connection_id = $1 ORDER BY amount_usd`, id))
	require.Len(t, models, len(usage))
	require.Len(t, lines, len(costs))
	for i := range usage {
		require.Equal(t, usage[i].Model, models[i])
		require.Equal(t, costs[i].LineItem+"="+costs[i].AmountUSD.String(), lines[i])
	}
}
