package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

func (b *testBundle) pauseReplay(t *testing.T) {
	t.Helper()
	_, err := b.standby.Exec(`SELECT pg_wal_replay_pause()`)
	require.NoError(t, err)
}

func ids(cs []tokka.Connection) []string {
	out := []string{}
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return out
}

// TestReadsGoToTheReplicaAndWritersReadTheirWrites runs storage against a
// real streaming replica whose replay is paused, so what the replica
// serves is visibly stale: a read is answered by the replica (in recovery,
// read-only, as authenticated with the caller's claims, search_path and
// timeout, so row-level security holds), a write lands on the primary,
// and the writer's next reads come from the primary until the window ends,
// while other users keep reading the replica.
func TestReadsGoToTheReplicaAndWritersReadTheirWrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, withReplica())
	alice, bob := newUser(), newUser()
	aliceFirst := b.insertConnection(t, alice)
	bobFirst := b.insertConnection(t, bob)
	b.primary.WaitForReplay(t, b.replica)

	// The read pool is the replica, and reads there are the caller's.
	var inRecovery bool
	require.NoError(t, b.db.ReadPool().Get(&inRecovery, `SELECT pg_is_in_recovery()`))
	require.True(t, inRecovery, "DATABASE_READ_URL's pool is the standby")
	page, err := b.db.ListConnectionsPage(ctx, bob, nil, 10)
	require.NoError(t, err)
	require.Equal(t, []string{bobFirst}, ids(page), "row-level security holds on the replica")
	_, err = b.db.GetConnection(ctx, bob, aliceFirst)
	require.ErrorIs(t, err, tokka.ErrNotFound, "another user's connection does not exist for bob on the replica")
	// The same transaction as on the primary: role, claims, search_path,
	// timeout, and read-only.
	var tx txSettings
	require.NoError(t, b.db.AsReader(ctx, bob, func(t *sqlx.Tx) error { return t.Get(&tx, txSettingsQuery) }))
	require.Equal(t, txSettings{Recovery: true, Role: "authenticated", UID: bob.ID, SearchPath: "pg_catalog, pg_temp",
		Timeout: "5s", ReadOnly: "on", Isolation: "read committed"}, tx)

	// Replay stops: what is written now exists on the primary only.
	b.pauseReplay(t)
	aliceBehind := b.insertConnection(t, alice)
	page, err = b.db.ListConnectionsPage(ctx, alice, nil, 10)
	require.NoError(t, err)
	require.Equal(t, []string{aliceFirst}, ids(page), "the read was served by the (paused) replica")

	// Alice renames her connection: the write goes to the primary (the
	// replica refuses writes), and its answer is the primary's row.
	label := "renamed"
	renamed, err := b.db.UpdateConnection(ctx, alice, aliceFirst, tokka.ConnectionUpdate{Label: &label},
		tokka.AuditEvent{Action: tokka.ActionConnectionRenamed, Outcome: tokka.OutcomeSuccess, Actor: "api:test"})
	require.NoError(t, err)
	require.Equal(t, "renamed", renamed.Label)
	var onPrimary string
	require.NoError(t, b.sql.Get(&onPrimary, `SELECT label FROM tokka.connections WHERE id = $1`, aliceFirst))
	require.Equal(t, "renamed", onPrimary)

	// Her next reads see her write (and everything else on the primary).
	got, err := b.db.GetConnection(ctx, alice, aliceFirst)
	require.NoError(t, err)
	require.Equal(t, "renamed", got.Label, "a user reads their own write")
	page, err = b.db.ListConnectionsPage(ctx, alice, nil, 10)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{aliceFirst, aliceBehind}, ids(page))

	// Bob has not written: his reads stay on the replica, and still see
	// only his own rows there.
	bobBehind := b.insertConnection(t, bob)
	page, err = b.db.ListConnectionsPage(ctx, bob, nil, 10)
	require.NoError(t, err)
	require.Equal(t, []string{bobFirst}, ids(page))

	// Rate-limit counting is bookkeeping on the primary: it works while
	// the replica is paused and does not pull Bob's reads to the primary.
	_, err = b.db.HitRateLimit(ctx, bob, "", tokka.RateLimit{Scope: "test", PerUser: 10, PerIP: 10, Window: time.Minute})
	require.NoError(t, err)
	page, err = b.db.ListConnectionsPage(ctx, bob, nil, 10)
	require.NoError(t, err)
	require.Equal(t, []string{bobFirst}, ids(page))

	// Once Alice's window is over she reads the replica again.
	b.db.ForgetWrites()
	got, err = b.db.GetConnection(ctx, alice, aliceFirst)
	require.NoError(t, err)
	require.NotEqual(t, "renamed", got.Label, "after the window, reads are the replica's again")

	// Replay resumes: the replica catches up and serves everything.
	_, err = b.standby.Exec(`SELECT pg_wal_replay_resume()`)
	require.NoError(t, err)
	b.primary.WaitForReplay(t, b.replica)
	page, err = b.db.ListConnectionsPage(ctx, bob, nil, 10)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{bobFirst, bobBehind}, ids(page))
	got, err = b.db.GetConnection(ctx, alice, aliceFirst)
	require.NoError(t, err)
	require.Equal(t, "renamed", got.Label)
}

// txSettingsQuery reads what a transaction runs under.
const txSettingsQuery = `SELECT pg_is_in_recovery() AS recovery, current_user AS role, tokka.uid()::text AS uid,
	current_setting('search_path') AS search_path, current_setting('statement_timeout') AS timeout,
	current_setting('transaction_read_only') AS read_only, current_setting('transaction_isolation') AS isolation`

type txSettings struct {
	Recovery   bool   `db:"recovery"`
	Role       string `db:"role"`
	UID        string `db:"uid"`
	SearchPath string `db:"search_path"`
	Timeout    string `db:"timeout"`
	ReadOnly   string `db:"read_only"`
	Isolation  string `db:"isolation"`
}
