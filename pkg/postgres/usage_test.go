package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// TestChunkedUsageRowsEqualOneQuery: reading the usage rows in small
// keyset-paged chunks (as exports do, one short transaction per chunk)
// gives exactly the rows, in exactly the order, of one query, for every
// kind of grouping: time buckets, uuids, text that sorts by collation
// (case, punctuation, accents, empty), a dimension only the token side has,
// the monthly-rollup path, and filters.
func TestChunkedUsageRowsEqualOneQuery(t *testing.T) {
	t.Parallel()
	b := setup(t, ownDatabase())
	userID := uuid.NewString()
	u := tokka.User{ID: userID, Claims: []byte(`{"sub":"` + userID + `","role":"authenticated"}`)}
	models := []string{"", "Model-b", "model_a", "model a", "ÄModel", "zeta", "m,quote\""}
	for i, p := range []string{"openai", "anthropic"} {
		conn := uuid.NewString()
		_, err := b.sql.Exec(`INSERT INTO tokka.connections (id, team_id, provider, label, key_hint, sealed_key)
			VALUES ($1, $2, $3, 'x', 'h', 'v2:00')`, conn, userID, p)
		require.NoError(t, err)
		for j, m := range models {
			_, err = b.sql.Exec(`
				INSERT INTO tokka.usage_daily (connection_id, team_id, provider, day, family, model, project_id,
					service_tier, input_uncached_tokens, output_tokens)
				SELECT $1, $2, $3, d::date, 'f', $4, 'proj' || (extract(day FROM d)::int % 3),
					CASE WHEN extract(day FROM d)::int % 2 = 0 THEN 'default' ELSE 'flex' END, $5, extract(day FROM d)::int
				FROM generate_series('2026-09-20'::date, '2026-11-05'::date, interval '1 day') d`, conn, userID, p, m, 10*i+j)
			require.NoError(t, err)
			_, err = b.sql.Exec(`
				INSERT INTO tokka.cost_daily (connection_id, team_id, provider, day, model, project_id, amount_usd, amount, currency)
				SELECT $1, $2, $3, d::date, $4, 'proj' || (extract(day FROM d)::int % 4), 0.001 * $5, 0, 'usd'
				FROM generate_series('2026-09-25'::date, '2026-11-10'::date, interval '1 day') d`, conn, userID, p, m, 1+j)
			require.NoError(t, err)
		}
	}
	require.NoError(t, b.db.RebuildRollups(context.Background()))

	from, to := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		groupBy []string
		filters map[string]string
	}{
		{groupBy: []string{"day", "model"}},
		{groupBy: []string{"week", "provider", "model", "service_tier"}},
		{groupBy: []string{"month", "connection", "project"}}, // whole months: the rollup path
		{groupBy: []string{"model", "project"}},
		{groupBy: []string{"connection", "service_tier"}},
		{groupBy: []string{"day", "model"}, filters: map[string]string{"provider": "anthropic"}},
		{groupBy: []string{"project"}, filters: map[string]string{"service_tier": "flex"}},
		{groupBy: []string{}},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.groupBy, ","), func(t *testing.T) {
			t.Parallel() // each case only reads
			q := tokka.UsageQuery{From: from, To: to, GroupBy: tc.groupBy, Filters: tc.filters, ProvisionalFrom: to}
			if q.Filters == nil {
				q.Filters = map[string]string{}
			}
			want, err := b.db.Usage(context.Background(), u, q)
			require.NoError(t, err)
			require.NotEmpty(t, want)
			for _, chunk := range []int{1, 3, 7, len(want), len(want) + 1} {
				var got []tokka.UsageGroup
				require.NoError(t, b.db.EachUsageRowInChunks(context.Background(), u, q, chunk, func(r tokka.UsageGroup) error {
					got = append(got, r)
					return nil
				}))
				require.Equal(t, len(want), len(got), "chunk %d", chunk)
				for i := range want {
					require.Equal(t, fmt.Sprint(want[i]), fmt.Sprint(got[i]), "chunk %d, row %d", chunk, i)
				}
			}
		})
	}
}
