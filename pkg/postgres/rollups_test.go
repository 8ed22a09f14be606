package postgres_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

// Rows written straight into the daily tables (an import, a generator) get
// monthly rollups that agree with them exactly once RebuildRollups runs.
func TestRebuildRollupsAgreesWithDailyRows(t *testing.T) {
	t.Parallel()
	b := setup(t, ownDatabase())
	user, conn := uuid.NewString(), uuid.NewString()
	_, err := b.sql.Exec(`INSERT INTO tokka.connections (id, team_id, provider, label, key_hint, sealed_key)
		VALUES ($1, $2, 'openai', 'x', 'h', 'v2:00')`, conn, user)
	require.NoError(t, err)
	_, err = b.sql.Exec(`
		INSERT INTO tokka.usage_daily (connection_id, team_id, provider, day, family, model, output_tokens)
		SELECT $1, $2, 'openai', d::date, 'completions', 'm' || (extract(day FROM d)::int % 3), extract(day FROM d)::int
		FROM generate_series('2026-09-20'::date, '2026-11-05'::date, interval '1 day') d`, conn, user)
	require.NoError(t, err)
	_, err = b.sql.Exec(`
		INSERT INTO tokka.cost_daily (connection_id, team_id, provider, day, model, amount_usd, amount, currency)
		SELECT $1, $2, 'openai', d::date, 'm1', 0.0000001 * extract(day FROM d), 0, 'usd'
		FROM generate_series('2026-09-20'::date, '2026-11-05'::date, interval '1 day') d`, conn, user)
	require.NoError(t, err)

	require.NoError(t, b.db.RebuildRollups(context.Background()))
	require.NoError(t, b.db.RebuildRollups(context.Background()), "rebuilding twice must not double")
	type month struct {
		Day    string `db:"day"`
		Tokens int64  `db:"tokens"`
		Cost   string `db:"cost"`
		Last   string `db:"last_day"`
	}
	var daily, monthly []month
	require.NoError(t, b.sql.Select(&daily, `
		WITH u AS (SELECT date_trunc('month', day) AS m, sum(output_tokens) AS tokens, max(day) AS last_day
		           FROM tokka.usage_daily GROUP BY 1),
		     c AS (SELECT date_trunc('month', day) AS m, sum(amount_usd) AS cost FROM tokka.cost_daily GROUP BY 1)
		SELECT to_char(m, 'YYYY-MM-DD') AS day, tokens, cost::text AS cost, last_day::text AS last_day
		FROM u JOIN c USING (m) ORDER BY 1`))
	require.NoError(t, b.sql.Select(&monthly, `
		SELECT to_char(u.day, 'YYYY-MM-DD') AS day, sum(u.output_tokens) AS tokens,
			(SELECT sum(amount_usd)::text FROM tokka.cost_monthly c WHERE c.day = u.day) AS cost,
			max(u.last_day)::text AS last_day
		FROM tokka.usage_monthly u GROUP BY u.day ORDER BY 1`))
	require.Len(t, daily, 3)
	require.Equal(t, daily, monthly)
}
