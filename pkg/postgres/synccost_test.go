package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// TestOneTransactionDrawsOneDataVersionPerConnection: inside one
// transaction, only the first statement that changes a connection's rows
// writes the connection row (migration 00023); later ones find the row
// already written by the transaction and leave it. The committed state
// still has a version no earlier state had, and a write made only in a
// rolled-back subtransaction does not count as written.
func TestOneTransactionDrawsOneDataVersionPerConnection(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u := newUser()
	id := b.addConnection(t, u, "openai")
	type rowState struct {
		Ctid    string `db:"ctid"`
		Version int64  `db:"data_version"`
	}
	state := func(q interface {
		Get(any, string, ...any) error
	}) rowState {
		t.Helper()
		var s rowState
		require.NoError(t, q.Get(&s, `SELECT ctid::text AS ctid, data_version FROM tokka.connections WHERE id = $1`, id))
		return s
	}
	insertUsage := `INSERT INTO tokka.usage_daily (connection_id, team_id, provider, day, family, model, project_id, api_key_id,
		input_uncached_tokens, cache_read_tokens, cache_write_5m_tokens, cache_write_1h_tokens, output_tokens, requests)
		VALUES ($1, $2, 'openai', $3, 'completions', 'gpt-x', '', '', 1, 0, 0, 0, 1, 1)`
	insertCost := `INSERT INTO tokka.cost_daily (connection_id, team_id, provider, day, line_item, model, project_id, api_key_id, amount_usd, amount, currency)
		VALUES ($1, $2, 'openai', $3, 'gpt-x, input', 'gpt-x', '', '', 0.5, 0.5, 'usd')`
	before := state(b.sql)

	tx := b.begin(t, "tokka_syncer", u)
	defer tx.Rollback() //nolint:errcheck
	_, err := tx.Exec(insertUsage, id, u.ID, "2026-11-01")
	require.NoError(t, err)
	first := state(tx)
	require.NotEqual(t, before.Version, first.Version, "the first write draws a version")
	for _, q := range []string{insertCost, insertUsage} {
		_, err = tx.Exec(q, id, u.ID, "2026-11-02")
		require.NoError(t, err)
		require.Equal(t, first, state(tx), "later writes in the same transaction leave the row alone")
	}
	_, err = tx.Exec(`DELETE FROM tokka.usage_daily WHERE connection_id = $1 AND day = '2026-11-01'`, id)
	require.NoError(t, err)
	require.Equal(t, first, state(tx))
	require.NoError(t, tx.Commit())
	committed := state(b.sql)
	require.Equal(t, first.Version, committed.Version)

	// A write rolled back to a savepoint leaves the committed row version
	// visible again, so the next write draws a fresh number.
	tx = b.begin(t, "tokka_syncer", u)
	defer tx.Rollback() //nolint:errcheck
	_, err = tx.Exec(`SAVEPOINT s`)
	require.NoError(t, err)
	_, err = tx.Exec(insertCost, id, u.ID, "2026-11-03")
	require.NoError(t, err)
	_, err = tx.Exec(`ROLLBACK TO SAVEPOINT s`)
	require.NoError(t, err)
	require.Equal(t, committed, state(tx))
	_, err = tx.Exec(insertCost, id, u.ID, "2026-11-04")
	require.NoError(t, err)
	require.NotEqual(t, committed.Version, state(tx).Version)
	require.NoError(t, tx.Commit())
	require.NotEqual(t, committed.Version, state(b.sql).Version)
}

// TestSyncRowsOutsideTheWindowAreRefused: the replace deletes the window's
// days only, so a row dated outside them would be counted again by the
// next sync; CompleteSync refuses such results and stores nothing.
func TestSyncRowsOutsideTheWindowAreRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, ownDatabase())
	d := b.db
	u := newUser()
	id := b.addConnection(t, u, "openai")
	l := leaseAll(t, d, "syncer:t")[id]
	today := time.Now().UTC().Truncate(24 * time.Hour)
	for _, stray := range []time.Time{today.AddDate(0, 0, -1), today.AddDate(0, 0, 1)} {
		usage, costs := someRows(today, "1.00")
		for _, r := range []tokka.SyncResult{
			{Usage: append(usage, tokka.UsageRow{Day: stray, Model: "gpt-x"}), Costs: costs},
			{Usage: usage, Costs: append(costs, tokka.CostRow{Day: stray, Model: "gpt-x"})},
		} {
			r.Window = tokka.Window{From: today, To: today.AddDate(0, 0, 1)}
			r.Next = time.Now().Add(time.Hour)
			r.Event = tokka.AuditEvent{Action: tokka.ActionSyncSucceeded, Outcome: tokka.OutcomeSuccess, Actor: "syncer:t"}
			err := d.CompleteSync(context.Background(), l, r)
			require.ErrorContains(t, err, "outside the sync window")
			require.Zero(t, spendRows(t, b.sql, id))
		}
	}
	require.NoError(t, complete(t, d, l, today, "1.00"), "the lease is still held")
	require.NotZero(t, spendRows(t, b.sql, id))
}

// TestRollupsFollowOverlappingSyncs: after each of several syncs whose
// windows overlap, cross a month's end and drop or add groups, every
// monthly rollup and daily spend total equals what RebuildRollups computes
// from the daily rows, although a sync rebuilds the daily totals of its own
// window's days only.
func TestRollupsFollowOverlappingSyncs(t *testing.T) {
	t.Parallel()
	b := setup(t, ownDatabase())
	ctx := context.Background()
	id := b.addConnection(t, newUser(), "openai")
	date := func(m time.Month, d int) time.Time { return time.Date(2026, m, d, 0, 0, 0, 0, time.UTC) }
	rows := func(w tokka.Window, models []string, usd string) ([]tokka.UsageRow, []tokka.CostRow) {
		var us []tokka.UsageRow
		var cs []tokka.CostRow
		for d := w.From; d.Before(w.To); d = d.AddDate(0, 0, 1) {
			for i, m := range models {
				us = append(us, tokka.UsageRow{Day: d, Family: "completions", Model: m, ProjectID: "p",
					Tokens: tokka.Tokens{OutputTokens: int64(d.Day()*10 + i), Requests: 1}})
				cs = append(cs, tokka.CostRow{Day: d, Model: m, ProjectID: "p", LineItem: m + ", output",
					AmountUSD: decimal.RequireFromString(usd), Amount: decimal.RequireFromString(usd), Currency: "usd"})
			}
		}
		return us, cs
	}
	// dump is every rollup row of the connection, as text, in one order.
	dump := func() []string {
		var out []string
		require.NoError(t, b.sql.Select(&out, `
			SELECT 'u|' || day || '|' || last_day || '|' || model || '|' || output_tokens || '|' || requests FROM tokka.usage_monthly WHERE connection_id = $1
			UNION ALL SELECT 'c|' || day || '|' || last_day || '|' || model || '|' || amount_usd FROM tokka.cost_monthly WHERE connection_id = $1
			UNION ALL SELECT 's|' || day || '|' || amount_usd FROM tokka.spend_daily WHERE connection_id = $1
			ORDER BY 1`, id))
		return out
	}
	for i, s := range []struct {
		w      tokka.Window
		models []string
		usd    string
	}{
		{tokka.Window{From: date(10, 20), To: date(11, 10)}, []string{"a", "b"}, "1.50"},
		{tokka.Window{From: date(11, 5), To: date(11, 20)}, []string{"a", "c"}, "0.25"},
		{tokka.Window{From: date(10, 30), To: date(11, 2)}, []string{"b"}, "7"},
		{tokka.Window{From: date(11, 18), To: date(12, 3)}, nil, "0"},
	} {
		usage, costs := rows(s.w, s.models, s.usd)
		l := leaseAll(t, b.db, "syncer:t")[id]
		require.NoError(t, b.db.CompleteSync(ctx, l, syncResult(s.w, usage, costs)), "sync %d", i)
		_, err := b.sql.Exec(`UPDATE tokka.connections SET next_sync_at = now() WHERE id = $1`, id)
		require.NoError(t, err)
		synced := dump()
		require.NotEmpty(t, synced)
		require.NoError(t, b.db.RebuildRollups(ctx))
		require.Equal(t, dump(), synced, "after sync %d the rollups differ from a rebuild", i)
	}
}
