package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// TestDataVersionMovesWithEveryChange: a user's data version moves when a
// connection is added, changed, leased, synced (rows written, rollups and
// directory included) or deleted, and never because of another user's.
func TestDataVersionMovesWithEveryChange(t *testing.T) {
	t.Parallel()
	b := setup(t, ownDatabase())
	d := b.db
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
	id := b.addConnection(t, u, "openai")
	moved("a connection added")
	_, err := d.UpdateConnection(ctx, u, id, tokka.ConnectionUpdate{Label: new("renamed")},
		tokka.AuditEvent{Action: tokka.ActionConnectionRenamed, Outcome: tokka.OutcomeSuccess, Actor: "api:t"})
	require.NoError(t, err)
	moved("a label changed")

	theirs := b.addConnection(t, other, "anthropic")
	before := version(u)
	leases := leaseAll(t, d, "syncer:t")
	moved("a lease")
	day := time.Now().UTC().Truncate(24 * time.Hour)
	require.NoError(t, complete(t, d, leases[theirs], day, "9.00"))
	require.Equal(t, version(u), seen["a lease"], "another user's sync")
	require.NotEqual(t, before, version(u))
	require.NoError(t, complete(t, d, leases[id], day, "1.25"))
	moved("a sync")

	b.addConnection(t, u, "anthropic")
	moved("a second connection added")
	require.NoError(t, d.DeleteConnection(ctx, u, id,
		tokka.AuditEvent{Action: tokka.ActionKeyDeleted, Outcome: tokka.OutcomeSuccess, Actor: "api:t"}))
	moved("a connection deleted")
}

// TestAnswersCarryTheVersionTheyWereReadAt: UsageAt and SummaryAt return
// the same data version DataVersion reads, in the summary's case from its
// own statement.
func TestAnswersCarryTheVersionTheyWereReadAt(t *testing.T) {
	t.Parallel()
	b := setup(t, ownDatabase())
	d := b.db
	ctx := context.Background()
	u := newUser()
	for i := 0; i < 2; i++ {
		want, err := d.DataVersion(ctx, u)
		require.NoError(t, err)
		day := time.Now().UTC().Truncate(24 * time.Hour)
		_, got, err := d.UsageAt(ctx, u, tokka.UsageQuery{From: day, To: day, GroupBy: []string{"day"}, ProvisionalFrom: day, Limit: 10})
		require.NoError(t, err)
		require.Equal(t, want, got)
		_, got, err = d.SummaryAt(ctx, u, day, 5)
		require.NoError(t, err)
		require.Equal(t, want, got)
		b.addConnection(t, u, "openai")
	}
}

// TestDataVersionSeesALateCommitOfAnEarlyNumber: two transactions change
// two connections of one user; the one that drew the lower number commits
// last. The version read between the two commits must differ from the one
// read after both, or an answer computed in between (with the first
// connection's old rows) would be given again as current.
func TestDataVersionSeesALateCommitOfAnEarlyNumber(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	u := newUser()
	first, second := b.addConnection(t, u, "openai"), b.addConnection(t, u, "anthropic")
	early := b.begin(t, "tokka_syncer", u)
	defer early.Rollback() //nolint:errcheck
	_, err := early.Exec(`UPDATE tokka.connections SET updated_at = now() WHERE id = $1`, first)
	require.NoError(t, err)
	require.NoError(t, b.inRole(t, "tokka_syncer", u, func(tx *sqlx.Tx) error {
		_, err := tx.Exec(`UPDATE tokka.connections SET updated_at = now() WHERE id = $1`, second)
		return err
	}))
	var drawn []int64
	require.NoError(t, early.Select(&drawn, `SELECT data_version FROM tokka.connections WHERE id IN ($1, $2) ORDER BY id = $1 DESC`, first, second))
	require.Less(t, drawn[0], drawn[1], "the early transaction drew the lower number")
	between, err := b.db.DataVersion(ctx, u)
	require.NoError(t, err)
	require.NoError(t, early.Commit())
	after, err := b.db.DataVersion(ctx, u)
	require.NoError(t, err)
	require.NotEqual(t, between, after)
}
