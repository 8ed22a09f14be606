package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/pgtest"
	"github.com/tokka-dev/tokka/pkg/postgres"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// These tests play an SQL injection in the api: arbitrary statements as role
// authenticated (or, for the audit chain, as tokka_syncer), and check that
// what SECURITY.md promises is enforced by the database, not by the Go code
// behaving.

// denied reports whether err is Postgres refusing on privilege or policy.
func denied(err error) bool {
	var pqErr *pq.Error
	return errors.As(err, &pqErr) && pqErr.Code == "42501"
}

// TestPoisonedSessionDoesNotReachTheNextRequest replays the identity
// poisoning: as authenticated, on one pooled connection, the attacker sets
// session-level (not transaction-local) claims naming their victim and a
// search_path that puts a function of theirs before pg_catalog's, and
// commits. The same physical connection then serves one of the attacker's
// own ordinary requests: it must act as the attacker, see only the
// attacker's rows and call no function of theirs.
func TestPoisonedSessionDoesNotReachTheNextRequest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	attacker, victim := newUser(), newUser()
	mine := b.addConnection(t, attacker, "openai")
	b.addConnection(t, victim, "openai")

	// A schema authenticated may create in (Supabase grants it on public).
	schema := "poison_" + uuid.NewString()[:8]
	_, err := b.sql.Exec(`CREATE SCHEMA ` + schema + `; GRANT USAGE, CREATE ON SCHEMA ` + schema + ` TO authenticated`)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = b.sql.Exec(`DROP SCHEMA ` + schema + ` CASCADE`) })

	// A pool of exactly one connection: every storage call below runs on it.
	d, err := postgres.Open(ctx, pgtest.URL(t), 1)
	require.NoError(t, err)
	defer d.Close()
	pinned := func(fn func(c *sqlx.Conn)) int {
		t.Helper()
		c, err := d.Pool().Connx(ctx)
		require.NoError(t, err)
		defer c.Close()
		fn(c)
		var pid int
		require.NoError(t, c.GetContext(ctx, &pid, `SELECT pg_backend_pid()`))
		return pid
	}

	pid := pinned(func(c *sqlx.Conn) {
		tx, err := c.BeginTxx(ctx, nil)
		require.NoError(t, err)
		_, err = tx.Exec(`SELECT set_config('request.jwt.claims', $1, true), set_config('role', 'authenticated', true)`,
			string(attacker.Claims))
		require.NoError(t, err)
		_, err = tx.Exec(`CREATE FUNCTION ` + schema + `.now() RETURNS timestamptz LANGUAGE sql AS $$ SELECT '2001-01-01'::timestamptz $$`)
		require.NoError(t, err)
		_, err = tx.Exec(`SELECT set_config('request.jwt.claim.sub', $1, false), set_config('request.jwt.claims', $2, false),
			set_config('search_path', $3, false)`, victim.ID, string(victim.Claims), schema+", pg_catalog")
		require.NoError(t, err)
		require.NoError(t, tx.Commit())
	})

	// The attacker's next requests, through the api's own storage methods.
	conns, err := d.ListConnectionsPage(ctx, attacker, nil, 100)
	require.NoError(t, err)
	require.Len(t, conns, 1)
	require.Equal(t, mine, conns[0].ID, "the request acted as the user whose claims it carried")
	label := "renamed"
	c, err := d.UpdateConnection(ctx, attacker, mine, tokka.ConnectionUpdate{Label: &label},
		tokka.AuditEvent{Action: tokka.ActionConnectionRenamed, Outcome: tokka.OutcomeSuccess, Actor: "api:poison"})
	require.NoError(t, err)
	require.True(t, c.UpdatedAt.After(time.Date(2002, 1, 1, 0, 0, 0, 0, time.UTC)),
		"the request called the attacker's now(): %s", c.UpdatedAt)

	// Same connection, and the poison is still on it: it was ignored, not
	// cleaned away by luck.
	require.Equal(t, pid, pinned(func(c *sqlx.Conn) {
		var sub, claims string
		require.NoError(t, c.QueryRowxContext(ctx, `SELECT current_setting('request.jwt.claim.sub'),
			current_setting('request.jwt.claims')`).Scan(&sub, &claims))
		require.Equal(t, victim.ID, sub)
		require.Contains(t, claims, victim.ID)
		tx, err := c.BeginTxx(ctx, nil)
		require.NoError(t, err)
		defer tx.Rollback() //nolint:errcheck
		_, err = tx.Exec(`SELECT set_config('request.jwt.claims', $1, true)`, string(attacker.Claims))
		require.NoError(t, err)
		var uid string
		require.NoError(t, tx.Get(&uid, `SELECT tokka.uid()`))
		require.Equal(t, attacker.ID, uid, "uid() reads the transaction's claims, not request.jwt.claim.sub")
	}))
}

// forgeAudit inserts an event as a forger who knows the encoding would:
// predecessor, time and hash all chosen to verify.
const forgeAudit = `
	INSERT INTO tokka.audit_events (team_id, action, outcome, actor, created_at, prev_hash, hash)
	SELECT $1::uuid, $2::text, 'success', $3::text, now(), p.hash,
		tokka.audit_event_hash(p.hash, $1::uuid, NULL, '', $2::text, 'success', '', $3::text, '', '', '', now())
	FROM (SELECT (SELECT hash FROM tokka.audit_events WHERE team_id = $1::uuid ORDER BY id DESC LIMIT 1) AS hash) p`

// TestEachRoleAppendsOnlyItsOwnAuditActions: the api's role writes only
// what the api records (changes by the user, as api:<request>), the
// syncer's only what the syncer records (key use and sync outcomes, as
// syncer:<instance>), whatever hash the writer supplies.
func TestEachRoleAppendsOnlyItsOwnAuditActions(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u := newUser()
	b.addConnection(t, u, "openai")
	for _, tc := range []struct {
		role, action, actor string
		ok                  bool
	}{
		{"authenticated", tokka.ActionKeyDecrypted, "syncer:forged-instance", false},
		{"authenticated", tokka.ActionKeyDecrypted, "api:1", false},
		{"authenticated", tokka.ActionSyncSucceeded, "api:1", false},
		{"authenticated", tokka.ActionIncidentQuarantined, "api:1", false},
		{"authenticated", tokka.ActionKeyCreated, "syncer:forged-instance", false},
		{"authenticated", tokka.ActionKeyCreated, "", false},
		{"authenticated", "key.exported", "api:1", false},
		{"tokka_syncer", tokka.ActionKeyCreated, "syncer:a", false},
		{"tokka_syncer", tokka.ActionKeyDeleted, "syncer:a", false},
		{"tokka_syncer", tokka.ActionKeyDecrypted, "api:1", false},
		{"tokka_syncer", tokka.ActionSyncRequested, "syncer:a", false},
		// The positive controls: each role's own actions go in.
		{"authenticated", tokka.ActionKeyCreated, "api:1", true},
		{"authenticated", tokka.ActionKeyReplaced, "api:1", true},
		{"authenticated", tokka.ActionKeyDeleted, "api:1", true},
		{"authenticated", tokka.ActionConnectionRenamed, "api:1", true},
		{"authenticated", tokka.ActionSyncRequested, "api:1", true},
		{"tokka_syncer", tokka.ActionKeyDecrypted, "syncer:a", true},
		{"tokka_syncer", tokka.ActionKeyRewrapped, "syncer:a", true},
		{"tokka_syncer", tokka.ActionSyncSucceeded, "syncer:a", true},
		{"tokka_syncer", tokka.ActionSyncFailed, "syncer:a", true},
		{"tokka_syncer", tokka.ActionIncidentQuarantined, "syncer:a", true},
		{"tokka_syncer", tokka.ActionIncidentNotified, "syncer:a", true},
		{"tokka_syncer", tokka.ActionIncidentReleased, "syncer:a", true},
	} {
		err := b.inRole(t, tc.role, u, func(tx *sqlx.Tx) error {
			_, err := tx.Exec(forgeAudit, u.ID, tc.action, tc.actor)
			return err
		})
		if tc.ok {
			require.NoError(t, err, "%s %s %s", tc.role, tc.action, tc.actor)
		} else {
			require.True(t, denied(err), "%s may not append %s as %q: %v", tc.role, tc.action, tc.actor, err)
		}
	}
	v := b.verify(t, u)
	require.True(t, v.Intact, "broken at %v: %v", v.FirstBrokenID, v.Problem)
	require.EqualValues(t, 1+12, v.Events)
}

// TestForgedAuditEventGetsTheDatabasesChain replays the forgery: the
// syncer's role inserts a back-dated key.decrypted by a made-up instance with
// a predecessor and hash of its choosing. The row goes in (the role may
// record decryptions) but with the database's link, hash and clock.
func TestForgedAuditEventGetsTheDatabasesChain(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u := newUser()
	conn := b.addConnection(t, u, "openai")
	var head tokka.AuditEvent
	require.NoError(t, b.sql.Get(&head, `SELECT id, hash, created_at FROM tokka.audit_events WHERE team_id = $1`, u.ID))

	backdated := time.Now().Add(-30 * 24 * time.Hour)
	var got tokka.AuditEvent
	err := b.inRole(t, "tokka_syncer", u, func(tx *sqlx.Tx) error {
		return tx.Get(&got, `
			INSERT INTO tokka.audit_events (team_id, connection_id, provider, action, outcome, purpose, actor,
				created_at, prev_hash, hash)
			VALUES ($1, $2, 'openai', 'key.decrypted', 'success', 'scheduled sync', 'syncer:forged-instance', $3, $4, $5)
			RETURNING id, team_id, connection_id, provider, action, outcome, purpose, actor, client_ip, user_agent,
				detail, created_at, prev_hash, hash`,
			u.ID, conn, backdated, bytes.Repeat([]byte{0xcd}, 32), bytes.Repeat([]byte{0xab}, 32))
	})
	require.NoError(t, err)
	require.Equal(t, []byte(head.Hash), []byte(got.PrevHash), "linked to the real head, not the forger's choice")
	require.Equal(t, postgres.AuditEventHash(got.PrevHash, got), []byte(got.Hash), "hashed by the database")
	require.False(t, got.CreatedAt.Before(head.CreatedAt), "not back-dated: %s", got.CreatedAt)
	require.WithinDuration(t, time.Now(), got.CreatedAt, time.Hour, "the database's clock")
	require.Greater(t, got.ID, head.ID)

	var stored tokka.AuditEvent
	require.NoError(t, b.sql.Get(&stored, `SELECT created_at, prev_hash, hash FROM tokka.audit_events WHERE id = $1`, got.ID))
	require.Equal(t, got.Hash, stored.Hash)
	v := b.verify(t, u)
	require.True(t, v.Intact)
	require.EqualValues(t, 2, v.Events)
}

// TestAPIRoleCannotChangeConnectionState replays the quarantine undo: as
// authenticated, no statement may set a connection's status or the fields
// that decide when and with which key it is synced. Renaming still works.
func TestAPIRoleCannotChangeConnectionState(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u := newUser()
	id := b.addConnection(t, u, "openai")
	_, err := b.sql.Exec(`UPDATE tokka.connections SET status = 'compromised', last_error = 'incident x' WHERE id = $1`, id)
	require.NoError(t, err)
	for _, stmt := range []string{
		`UPDATE tokka.connections SET status = 'active' WHERE id = $1`,
		`UPDATE tokka.connections SET status = 'pending', last_error = NULL WHERE id = $1`,
		`UPDATE tokka.connections SET last_error = NULL WHERE id = $1`,
		`UPDATE tokka.connections SET next_sync_at = now() WHERE id = $1`,
		`UPDATE tokka.connections SET sync_requested_at = now() WHERE id = $1`,
		`UPDATE tokka.connections SET last_sync_request_at = NULL WHERE id = $1`,
		`UPDATE tokka.connections SET key_set_at = now() WHERE id = $1`,
		`UPDATE tokka.connections SET sealed_key = 'v2:01' WHERE id = $1`,
		`UPDATE tokka.connections SET key_hint = 'sk-admin-…nope' WHERE id = $1`,
	} {
		require.True(t, denied(b.as(t, "authenticated", u, stmt, id)), stmt)
	}
	require.NoError(t, b.as(t, "authenticated", u, `UPDATE tokka.connections SET label = 'mine', updated_at = now() WHERE id = $1`, id))
	var status string
	require.NoError(t, b.sql.Get(&status, `SELECT status FROM tokka.connections WHERE id = $1`, id))
	require.EqualValues(t, tokka.StatusCompromised, status)
}

// TestAPIRoleRaisesOnlyItsOwnAlerts replays the alert forgery: the api's role
// may raise only the alert the api raises (a key_access sync-now spike), for
// its own user, about nothing or one of its own connections. The foreign key
// alone would accept another user's connection.
func TestAPIRoleRaisesOnlyItsOwnAlerts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice, bob := newUser(), newUser()
	mine, theirs := b.addConnection(t, alice, "openai"), b.addConnection(t, bob, "openai")
	insert := `INSERT INTO tokka.alerts (team_id, kind, severity, connection_id, dedup_key, title)
		VALUES ($1, $2, 'critical', $3, $4, 'forged')`
	for _, tc := range []struct {
		name   string
		user   string
		kind   string
		conn   any
		dedup  string
		wantOK bool
	}{
		{"another user's connection", alice.ID, "key_access", theirs, "sync-request-spike:x", false},
		{"in another user's name", bob.ID, "key_access", nil, "sync-request-spike:x", false},
		{"a budget alert", alice.ID, "budget_threshold", nil, "sync-request-spike:x", false},
		{"a key_access alert the api never raises", alice.ID, "key_access", mine, "decrypt-by-unknown:x", false},
		{"a rotation reminder", alice.ID, "key_rotation", mine, "sync-request-spike:x", false},
		{"the spike alert", alice.ID, "key_access", nil, "sync-request-spike:x", true},
		{"the spike alert about an own connection", alice.ID, "key_access", mine, "sync-request-spike:y", true},
	} {
		err := b.as(t, "authenticated", alice, insert, tc.user, tc.kind, tc.conn, tc.dedup)
		if tc.wantOK {
			require.NoError(t, err, tc.name)
		} else {
			require.True(t, denied(err), "%s: %v", tc.name, err)
		}
	}
}

// TestQuarantineIsLeftOnlyByANewKey: through the api's storage methods, a
// compromised connection refuses "sync now" until its key is replaced, which
// puts it back to pending and due; someone else's connection is not found.
func TestQuarantineIsLeftOnlyByANewKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	alice, bob := newUser(), newUser()
	id := b.addConnection(t, alice, "openai")
	_, err := b.sql.Exec(`UPDATE tokka.connections SET status = 'compromised', last_error = 'incident x' WHERE id = $1`, id)
	require.NoError(t, err)
	ev := tokka.AuditEvent{Action: tokka.ActionSyncRequested, Outcome: tokka.OutcomeSuccess, Actor: "api:s"}

	_, _, err = b.db.RequestSync(ctx, alice, id, time.Minute, ev)
	require.Equal(t, tokka.CodeConflict, tokka.ErrorCode(err))
	_, _, err = b.db.RequestSync(ctx, bob, id, time.Minute, ev)
	require.ErrorIs(t, err, tokka.ErrNotFound)
	_, err = b.db.UpdateConnection(ctx, bob, id, tokka.ConnectionUpdate{SealedKey: "v2:02", KeyHint: "x"},
		tokka.AuditEvent{Action: tokka.ActionKeyReplaced, Outcome: tokka.OutcomeSuccess, Actor: "api:r"})
	require.ErrorIs(t, err, tokka.ErrNotFound)

	c, err := b.db.UpdateConnection(ctx, alice, id, tokka.ConnectionUpdate{SealedKey: "v2:01", KeyHint: "sk-admin-…new1"},
		tokka.AuditEvent{Action: tokka.ActionKeyReplaced, Outcome: tokka.OutcomeSuccess, Actor: "api:r"})
	require.NoError(t, err)
	require.EqualValues(t, tokka.StatusPending, c.Status)
	require.Nil(t, c.LastError)
	require.Equal(t, "sk-admin-…new1", c.KeyHint)
	var blob string
	require.NoError(t, b.sql.Get(&blob, `SELECT sealed_key FROM tokka.connections WHERE id = $1`, id))
	require.Equal(t, "v2:01", blob)

	c, wait, err := b.db.RequestSync(ctx, alice, id, time.Minute, ev)
	require.NoError(t, err)
	require.Zero(t, wait)
	require.Equal(t, id, c.ID)
	_, wait, err = b.db.RequestSync(ctx, alice, id, time.Minute, ev)
	require.Equal(t, tokka.CodeRateLimited, tokka.ErrorCode(err))
	require.Greater(t, wait, 50*time.Second)
	v := b.verify(t, alice)
	require.True(t, v.Intact)
	require.EqualValues(t, 3, v.Events, "key.created, key.replaced, one accepted sync.requested")
}

// TestAuditVerifyReportsTimeGoingBackwards: an event dated before its
// predecessor (re-hashed by someone who can, so content and links hold) is
// reported: the database dates every event itself, in order.
func TestAuditVerifyReportsTimeGoingBackwards(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u := newUser()
	b.someEvents(t, u)
	ids := b.eventIDs(t, u)
	last := ids[len(ids)-1]
	_, err := b.sql.Exec(`UPDATE tokka.audit_events e SET created_at = p.created_at - interval '1 second',
			hash = tokka.audit_event_hash_v2(e.prev_hash, e.team_id, e.connection_id, e.provider, e.action, e.outcome,
				e.purpose, e.actor, e.client_ip, e.user_agent, e.detail, p.created_at - interval '1 second', e.actor_user_id)
		FROM tokka.audit_events p WHERE e.id = $1 AND p.id = $2`, last, ids[len(ids)-2])
	require.NoError(t, err)
	v := b.verify(t, u)
	require.False(t, v.Intact)
	require.Equal(t, last, *v.FirstBrokenID)
	require.Contains(t, *v.Problem, "earlier than the event before it")
}

// TestStateFunctionsActOnlyForTheCaller: the two functions that change
// connection state, called straight in SQL, touch only the caller's own
// connections, refuse a caller without claims, and are not the syncer's to
// call.
func TestStateFunctionsActOnlyForTheCaller(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice, bob := newUser(), newUser()
	theirs := b.addConnection(t, bob, "openai")
	var before string
	row := `SELECT status || key_hint || sealed_key || coalesce(sync_requested_at::text, '-') FROM tokka.connections WHERE id = $1`
	require.NoError(t, b.sql.Get(&before, row, theirs))

	require.NoError(t, b.inRole(t, "authenticated", alice, func(tx *sqlx.Tx) error {
		var found bool
		require.NoError(t, tx.Get(&found, `SELECT tokka.replace_connection_key($1, 'mine now', 'h', 'v2:0bad')`, theirs))
		require.False(t, found)
		var outcome string
		require.NoError(t, tx.Get(&outcome, `SELECT outcome FROM tokka.request_sync($1, 60)`, theirs))
		require.Equal(t, "not_found", outcome)
		return nil
	}))
	var after string
	require.NoError(t, b.sql.Get(&after, row, theirs))
	require.Equal(t, before, after)

	for _, call := range []string{
		`SELECT tokka.replace_connection_key($1, NULL, 'h', 'v2:01')`,
		`SELECT * FROM tokka.request_sync($1, 60)`,
	} {
		require.True(t, denied(b.as(t, "tokka_syncer", bob, call, theirs)), call)
		require.True(t, denied(b.as(t, "authenticated", tokka.User{Claims: []byte(`{}`)}, call, theirs)), "no user: %s", call)
	}
	// The cool-down is the database's to keep: not shorter than a second.
	var pqErr *pq.Error
	require.ErrorAs(t, b.as(t, "authenticated", bob, `SELECT * FROM tokka.request_sync($1, 0)`, theirs), &pqErr)
	require.Equal(t, pqerror.InvalidParameterValue, pqErr.Code)
}
