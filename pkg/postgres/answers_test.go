package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/pgtest"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// TestDataVersionMovesWithEveryChange: a user's data version moves when a
// connection is added, changed, leased, synced (rows written, rollups and
// directory included) or deleted, and never because of another user's.
func TestDataVersionMovesWithEveryChange(t *testing.T) {
	t.Parallel()
	d, _ := pgtest.OpenURL(t, pgtest.Fresh(t))
	ctx := context.Background()
	u, other := newUser(), newUser()
	version := func(u tokka.User) string {
		t.Helper()
		v, err := d.DataVersion(ctx, u)
		require.NoError(t, err)
		return v
	}
	seen := map[string]string{}
	moved := func(what string) {
		t.Helper()
		v := version(u)
		for before, at := range seen {
			require.NotEqual(t, at, v, "%s: the version is the one after %s", what, before)
		}
		seen[what] = v
	}
	moved("nothing yet")
	id := createConn(t, d, u, "openai")
	moved("a connection added")
	_, err := d.UpdateConnection(ctx, u, id, tokka.ConnectionUpdate{Label: ptrTo("renamed")},
		tokka.AuditEvent{Action: tokka.ActionConnectionRenamed, Outcome: tokka.OutcomeSuccess, Actor: "api:t"})
	require.NoError(t, err)
	moved("a label changed")

	theirs := createConn(t, d, other, "anthropic")
	before := version(u)
	leases := leaseAll(t, d, "syncer:t")
	moved("a lease")
	day := time.Now().UTC().Truncate(24 * time.Hour)
	require.NoError(t, complete(t, d, leases[theirs], day, "9.00"))
	require.Equal(t, version(u), seen["a lease"], "another user's sync")
	require.NotEqual(t, before, version(u))
	require.NoError(t, complete(t, d, leases[id], day, "1.25"))
	moved("a sync")

	createConn(t, d, u, "anthropic")
	moved("a second connection added")
	require.NoError(t, d.DeleteConnection(ctx, u, id,
		tokka.AuditEvent{Action: tokka.ActionKeyDeleted, Outcome: tokka.OutcomeSuccess, Actor: "api:t"}))
	moved("a connection deleted")
}

// TestKeptAnswersFollowTheData: with the answer cache on, a usage page and
// a summary asked again are given from the cache (shown by changing a row
// behind the triggers' back: the kept answer still says the old figure),
// but as soon as the user's data changes through any ordinary write the
// next answer is computed afresh; another user asking the same question
// gets their own answer.
func TestKeptAnswersFollowTheData(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.Fresh(t)
	d, raw := pgtest.OpenURL(t, dbURL)
	d.SetAnswerCache(1 << 20)
	ctx := context.Background()
	u, other := newUser(), newUser()
	id := createConn(t, d, u, "openai")
	createConn(t, d, other, "openai")
	day := time.Now().UTC().Truncate(24 * time.Hour)
	require.NoError(t, complete(t, d, leaseAll(t, d, "syncer:t")[id], day, "1.25"))

	q := tokka.UsageQuery{From: day.AddDate(0, 0, -3), To: day, GroupBy: []string{"day"},
		ProvisionalFrom: day.AddDate(0, 0, -3), Limit: 10}
	cost := func(u tokka.User) string {
		t.Helper()
		rows, err := d.Usage(ctx, u, q)
		require.NoError(t, err)
		total := decimal.Zero
		for _, r := range rows {
			total = total.Add(r.CostUSD)
		}
		return total.String()
	}
	mtd := func(u tokka.User) string {
		t.Helper()
		s, err := d.Summary(ctx, u, day, 5)
		require.NoError(t, err)
		total := decimal.Zero
		for _, p := range s.ByProvider {
			total = total.Add(p.MonthToDate)
		}
		return total.String()
	}
	// Due again and leased: the next sync will hold this lease.
	_, err := raw.Exec(`UPDATE tokka.connections SET next_sync_at = now() - interval '1 second' WHERE id = $1`, id)
	require.NoError(t, err)
	lease := leaseAll(t, d, "syncer:t")[id]

	require.Equal(t, "1.25", cost(u))
	require.Equal(t, "1.25", mtd(u))
	require.Equal(t, "0", cost(other))
	require.Equal(t, "0", mtd(other))

	// Behind the triggers' back (replication role skips them): the kept
	// answers do not see it.
	tx := raw.MustBegin()
	for _, stmt := range []string{`SET LOCAL session_replication_role = replica`,
		`UPDATE tokka.cost_daily SET amount_usd = 7 WHERE connection_id = $1`,
		`UPDATE tokka.spend_daily SET amount_usd = 7 WHERE connection_id = $1`} {
		var args []any
		if stmt[0] == 'U' {
			args = []any{id}
		}
		_, err = tx.Exec(stmt, args...)
		require.NoError(t, err)
	}
	require.NoError(t, tx.Commit())
	require.Equal(t, "1.25", cost(u), "the page was given from the cache")
	require.Equal(t, "1.25", mtd(u), "the summary was given from the cache")

	// An ordinary sync moves the version: both are computed again.
	require.NoError(t, complete(t, d, lease, day, "2.50"))
	require.Equal(t, "2.5", cost(u))
	require.Equal(t, "2.5", mtd(u))

	// Deleting the connection empties both at once.
	require.NoError(t, d.DeleteConnection(ctx, u, id,
		tokka.AuditEvent{Action: tokka.ActionKeyDeleted, Outcome: tokka.OutcomeSuccess, Actor: "api:t"}))
	require.Equal(t, "0", cost(u))
	require.Equal(t, "0", mtd(u))
}

func ptrTo[T any](v T) *T { return &v }
