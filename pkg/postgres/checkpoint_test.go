package postgres_test

import (
	"context"
	"database/sql"
	"errors"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/pgtest"
	"github.com/tokka-dev/tokka/pkg/postgres"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

func (b *testBundle) verifyIncremental(t *testing.T, u tokka.User) tokka.AuditVerification {
	t.Helper()
	v, err := b.db.VerifyAuditChain(context.Background(), u, false)
	require.NoError(t, err)
	return v
}

func (b *testBundle) rename(t *testing.T, u tokka.User, id string) {
	t.Helper()
	label := "renamed " + uuid.NewString()[:4]
	_, err := b.db.UpdateConnection(context.Background(), u, id, tokka.ConnectionUpdate{Label: &label},
		tokka.AuditEvent{Action: tokka.ActionConnectionRenamed, Outcome: tokka.OutcomeSuccess, Actor: "api:r"})
	require.NoError(t, err)
}

// TestAuditVerifyIsIncremental: a verification reads only the events after
// the last one an earlier verification found intact (across several read
// chunks), and full=true reads them all again.
func TestAuditVerifyIsIncremental(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u := newUser()
	conn := b.addConnection(t, u, "openai")
	require.NoError(t, pgtest.SeedAuditChain(context.Background(), b.sql, u.ID, 12000))
	b.rename(t, u, conn)
	const n = 1 + 12000 + 1

	v := b.verifyIncremental(t, u)
	require.True(t, v.Intact, "broken at %v: %v", v.FirstBrokenID, v.Problem)
	require.EqualValues(t, n, v.Events)
	require.EqualValues(t, n, v.Checked, "the first verification reads everything")
	head := v.HeadHash
	require.Len(t, head, 32)

	v = b.verifyIncremental(t, u)
	require.Equal(t, tokka.AuditVerification{Intact: true, Events: n, Checked: 0, HeadHash: head}, v)

	b.rename(t, u, conn)
	b.rename(t, u, conn)
	v = b.verifyIncremental(t, u)
	require.True(t, v.Intact)
	require.EqualValues(t, n+2, v.Events)
	require.EqualValues(t, 2, v.Checked, "only what is new")
	require.NotEqual(t, head, v.HeadHash)

	full := b.verify(t, u)
	require.True(t, full.Intact)
	require.EqualValues(t, n+2, full.Events)
	require.EqualValues(t, n+2, full.Checked)
	require.Equal(t, v.HeadHash, full.HeadHash)

	var cp struct {
		EventID int64 `db:"event_id"`
		Events  int64 `db:"events"`
	}
	require.NoError(t, b.sql.Get(&cp, `SELECT event_id, events FROM tokka.audit_checkpoints WHERE team_id = $1`, u.ID))
	require.Equal(t, b.eventIDs(t, u)[n+1], cp.EventID)
	require.EqualValues(t, n+2, cp.Events)
}

// TestPlantedCheckpointsAreRefused: as authenticated, the checkpoint table
// cannot be written, and the function that moves it accepts only one of the
// caller's own events with its real hash, and only forward.
func TestPlantedCheckpointsAreRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice, bob := newUser(), newUser()
	b.someEvents(t, alice)
	b.someEvents(t, bob)
	type ev struct {
		ID   int64  `db:"id"`
		Hash []byte `db:"hash"`
	}
	events := func(u tokka.User) []ev {
		var out []ev
		require.NoError(t, b.sql.Select(&out, `SELECT id, hash FROM tokka.audit_events WHERE team_id = $1 ORDER BY id`, u.ID))
		return out
	}
	mine, theirs := events(alice), events(bob)
	invalid := func(err error) bool {
		var pqErr *pq.Error
		return errors.As(err, &pqErr) && pqErr.Code == "22023"
	}
	advance := `SELECT tokka.advance_audit_checkpoint($1, $2)`

	require.True(t, denied(b.as(t, "authenticated", alice, `INSERT INTO tokka.audit_checkpoints (team_id, event_id, hash, events)
		VALUES ($1, $2, $3, 1)`, alice.ID, mine[4].ID, mine[4].Hash)))
	require.True(t, invalid(b.as(t, "authenticated", alice, advance, mine[4].ID+1_000_000, mine[4].Hash)), "no such event")
	require.True(t, invalid(b.as(t, "authenticated", alice, advance, mine[4].ID, mine[3].Hash)), "another hash")
	require.True(t, invalid(b.as(t, "authenticated", alice, advance, theirs[4].ID, theirs[4].Hash)), "another user's event")
	require.True(t, denied(b.as(t, "tokka_syncer", alice, advance, mine[4].ID, mine[4].Hash)), "only the api's role may call it")

	// The real thing works, counts for itself, and never moves back.
	require.NoError(t, b.inRole(t, "authenticated", alice, func(tx *sqlx.Tx) error {
		var n int64
		if err := tx.Get(&n, advance, mine[3].ID, mine[3].Hash); err != nil {
			return err
		}
		require.EqualValues(t, 4, n)
		_, err := tx.Exec(advance, mine[1].ID, mine[1].Hash)
		return err
	}))
	require.True(t, denied(b.as(t, "authenticated", alice, `UPDATE tokka.audit_checkpoints SET event_id = $1, hash = $2`,
		mine[4].ID, theirs[4].Hash)))
	var at int64
	require.NoError(t, b.sql.Get(&at, `SELECT event_id FROM tokka.audit_checkpoints WHERE team_id = $1`, alice.ID))
	require.Equal(t, mine[3].ID, at)
	v := b.verifyIncremental(t, alice)
	require.True(t, v.Intact)
	require.EqualValues(t, 5, v.Events)
	require.EqualValues(t, 1, v.Checked)
}

// TestFullVerifyFindsWhatTheCheckpointSkips: the table owner's edits behind
// the checkpoint are found by full=true; an edit of the checkpoint's own
// event, or removing it, is found by either.
func TestFullVerifyFindsWhatTheCheckpointSkips(t *testing.T) {
	t.Parallel()
	b := setup(t)

	t.Run("edit behind the checkpoint", func(t *testing.T) {
		t.Parallel()
		u := newUser()
		b.someEvents(t, u)
		require.True(t, b.verifyIncremental(t, u).Intact)
		ids := b.eventIDs(t, u)
		_, err := b.sql.Exec(`UPDATE tokka.audit_events SET detail = 'nothing happened' WHERE id = $1`, ids[1])
		require.NoError(t, err)
		v := b.verifyIncremental(t, u)
		require.True(t, v.Intact, "the checkpoint is trusted")
		require.Zero(t, v.Checked)
		v = b.verify(t, u)
		require.False(t, v.Intact)
		require.Equal(t, ids[1], *v.FirstBrokenID)
		require.Contains(t, *v.Problem, "edited")
	})
	t.Run("the checkpoint's event rewritten", func(t *testing.T) {
		t.Parallel()
		u := newUser()
		b.someEvents(t, u)
		require.True(t, b.verifyIncremental(t, u).Intact)
		ids := b.eventIDs(t, u)
		last := ids[len(ids)-1]
		// Edited and re-hashed: the chain itself is consistent again.
		_, err := b.sql.Exec(`UPDATE tokka.audit_events SET detail = 'nothing happened',
			hash = tokka.audit_event_hash_v2(prev_hash, team_id, connection_id, provider, action, outcome, purpose, actor,
				client_ip, user_agent, 'nothing happened', created_at, actor_user_id) WHERE id = $1`, last)
		require.NoError(t, err)
		for _, v := range []tokka.AuditVerification{b.verifyIncremental(t, u), b.verify(t, u)} {
			require.False(t, v.Intact)
			require.Equal(t, last, *v.FirstBrokenID)
			require.Contains(t, *v.Problem, "last verification ended at was removed or changed")
		}
	})
	t.Run("the tail removed", func(t *testing.T) {
		t.Parallel()
		u := newUser()
		b.someEvents(t, u)
		require.True(t, b.verifyIncremental(t, u).Intact)
		ids := b.eventIDs(t, u)
		_, err := b.sql.Exec(`DELETE FROM tokka.audit_events WHERE id >= $1 AND team_id = $2`, ids[3], u.ID)
		require.NoError(t, err)
		for _, v := range []tokka.AuditVerification{b.verifyIncremental(t, u), b.verify(t, u)} {
			require.False(t, v.Intact)
			require.Equal(t, ids[4], *v.FirstBrokenID)
			require.Contains(t, *v.Problem, "removed or changed")
		}
	})
}

// TestConcurrentWritersFromBothRolesKeepOneChain: api and syncer writers of
// one user at once, the syncer's straight in SQL. The database's trigger
// must serialise them into one chain whose ids follow its order (verify
// reads by id).
func TestConcurrentWritersFromBothRolesKeepOneChain(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u := newUser()
	conn := b.addConnection(t, u, "openai")
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Go(func() {
			_, err := b.db.CreateConnection(ctx, u, tokka.NewConnection{
				ID: uuid.NewString(), Provider: "anthropic", Label: "x", KeyHint: "h", SealedKey: "v2:00",
			}, tokka.AuditEvent{Action: tokka.ActionKeyCreated, Outcome: tokka.OutcomeSuccess, Actor: "api:c"})
			require.NoError(t, err)
		})
		wg.Go(func() {
			require.NoError(t, b.inRole(t, "tokka_syncer", u, func(tx *sqlx.Tx) error {
				_, err := tx.Exec(`INSERT INTO tokka.audit_events (team_id, connection_id, action, outcome, actor)
					VALUES ($1, $2, 'key.decrypted', 'success', 'syncer:c'), ($1, $2, 'sync.succeeded', 'success', 'syncer:c')`,
					u.ID, conn)
				return err
			}))
		})
	}
	wg.Wait()
	v := b.verify(t, u)
	require.True(t, v.Intact, "broken at %v: %v", v.FirstBrokenID, v.Problem)
	require.EqualValues(t, 1+20+40, v.Events)
	var distinct int
	require.NoError(t, b.sql.Get(&distinct, `SELECT count(DISTINCT coalesce(prev_hash, '')) FROM tokka.audit_events WHERE team_id = $1`, u.ID))
	require.Equal(t, 1+20+40, distinct, "no two events claim the same predecessor")
}

// TestAuditAppendsNeedReadCommitted: in a REPEATABLE READ transaction the
// trigger's read of the previous event could miss one committed meanwhile,
// forking the chain; such appends are refused.
func TestAuditAppendsNeedReadCommitted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u := newUser()
	b.addConnection(t, u, "openai")
	tx, err := b.sql.BeginTxx(context.Background(), &sql.TxOptions{Isolation: sql.LevelRepeatableRead})
	require.NoError(t, err)
	defer tx.Rollback() //nolint:errcheck
	_, err = tx.Exec(`SELECT set_config('role', 'tokka_syncer', true)`)
	require.NoError(t, err)
	_, err = tx.Exec(`INSERT INTO tokka.audit_events (team_id, action, outcome, actor) VALUES ($1, 'key.decrypted', 'success', 'syncer:rr')`, u.ID)
	require.ErrorContains(t, err, "READ COMMITTED")
}

// TestStatementTimeoutIsUnavailable: an api statement that runs past the
// statement timeout (here: waiting for a row lock that is never released in
// time) is cancelled by Postgres and becomes a CodeUnavailable error that
// says so; the connection is fine afterwards.
func TestStatementTimeoutIsUnavailable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	u := newUser()
	id := b.addConnection(t, u, "openai")
	d, err := postgres.Open(ctx, pgtest.URL(t), 1)
	require.NoError(t, err)
	defer d.Close()
	d.SetStatementTimeout(200 * time.Millisecond)

	lock, err := b.sql.Beginx()
	require.NoError(t, err)
	_, err = lock.Exec(`SELECT 1 FROM tokka.connections WHERE id = $1 FOR UPDATE`, id)
	require.NoError(t, err)
	label := "blocked"
	_, err = d.UpdateConnection(ctx, u, id, tokka.ConnectionUpdate{Label: &label},
		tokka.AuditEvent{Action: tokka.ActionConnectionRenamed, Outcome: tokka.OutcomeSuccess, Actor: "api:t"})
	var te *tokka.Error
	require.ErrorAs(t, err, &te)
	require.Equal(t, tokka.CodeUnavailable, te.Code)
	require.Equal(t, "the database took too long to answer; try again shortly", te.Message)
	require.NoError(t, lock.Rollback())

	_, err = d.UpdateConnection(ctx, u, id, tokka.ConnectionUpdate{Label: &label},
		tokka.AuditEvent{Action: tokka.ActionConnectionRenamed, Outcome: tokka.OutcomeSuccess, Actor: "api:t"})
	require.NoError(t, err)
	// The timeout was the transaction's, not the session's.
	var timeout string
	require.NoError(t, d.Pool().Get(&timeout, `SHOW statement_timeout`))
	require.Equal(t, "0", timeout)
}

// TestCutOffVerificationKeepsItsProgress: a long verification moves the
// checkpoint over each chunk it found intact as it reads the next one, so a
// verification cut off part-way (a timeout, a client gone) does not have to
// start from the beginning next time. Here the third chunk is never read:
// the checkpoint stands at the end of the first, which the second chunk's
// transaction recorded.
func TestCutOffVerificationKeepsItsProgress(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u := newUser()
	b.addConnection(t, u, "openai")
	require.NoError(t, pgtest.SeedAuditChain(context.Background(), b.sql, u.ID, 2*postgres.VerifyChunk+10))
	ids := b.eventIDs(t, u)
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })

	db := pgtest.Open(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	chunks := 0
	db.OnChunkChecked(func() {
		if chunks++; chunks == 2 {
			cancel()
		}
	})
	_, err := db.VerifyAuditChain(ctx, u, false)
	require.ErrorIs(t, err, context.Canceled)
	var through int64
	require.NoError(t, b.sql.Get(&through, `SELECT event_id FROM tokka.audit_checkpoints WHERE team_id = $1`, u.ID))
	require.Equal(t, ids[postgres.VerifyChunk-1], through, "the checkpoint covers the first chunk")

	v := b.verifyIncremental(t, u)
	require.True(t, v.Intact)
	require.EqualValues(t, len(ids)-postgres.VerifyChunk, v.Checked, "the next verification starts where the cut-off one got to")
}
