package postgres_test

import (
	"context"
	"encoding/hex"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/pgtest"
	"github.com/tokka-dev/tokka/pkg/postgres"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

func TestAuditEventsAreAppendOnlyForEveryApplicationRole(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u := newUser()
	b.addConnection(t, u, "openai")
	var n int
	require.NoError(t, b.sql.Get(&n, `SELECT count(*) FROM tokka.audit_events WHERE team_id = $1`, u.ID))
	require.Equal(t, 1, n)

	for _, role := range []string{"authenticated", "tokka_syncer"} {
		for _, stmt := range []string{
			`UPDATE tokka.audit_events SET detail = 'rewritten' WHERE team_id = $1`,
			`UPDATE tokka.audit_events SET hash = NULL, prev_hash = NULL WHERE team_id = $1`,
			`DELETE FROM tokka.audit_events WHERE team_id = $1`,
		} {
			err := b.as(t, role, u, stmt, u.ID)
			require.ErrorContains(t, err, "permission denied", "%s: %s", role, stmt)
		}
		require.ErrorContains(t, b.as(t, role, u, `TRUNCATE tokka.audit_events`), "permission denied", role)
		// The positive control: the same role may append and read, so the
		// denials above are about the operation, not a role that can do nothing.
		require.NoError(t, b.as(t, role, u, `SELECT count(*) FROM tokka.audit_events WHERE team_id = $1`, u.ID), role)
	}
	require.NoError(t, b.sql.Get(&n, `SELECT count(*) FROM tokka.audit_events WHERE team_id = $1 AND detail = ''`, u.ID))
	require.Equal(t, 1, n, "nothing was changed")
}

func TestSyncerRoleCannotManageConnections(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u := newUser()
	id := b.addConnection(t, u, "openai")
	denied := []string{
		`INSERT INTO tokka.connections (id, team_id, provider, label, key_hint, sealed_key)
		 VALUES (gen_random_uuid(), $1, 'openai', 'x', 'x', 'v2:00')`,
		`DELETE FROM tokka.connections WHERE team_id = $1`,
		`UPDATE tokka.connections SET label = 'renamed by the syncer' WHERE team_id = $1`,
		`UPDATE tokka.connections SET key_hint = 'sk-admin-…nope' WHERE team_id = $1`,
		`UPDATE tokka.connections SET team_id = gen_random_uuid() WHERE team_id = $1`,
		`UPDATE tokka.connections SET provider = 'anthropic' WHERE team_id = $1`,
		`UPDATE tokka.connections SET key_set_at = now() WHERE team_id = $1`,
		`UPDATE tokka.alerts SET acknowledged_at = now() WHERE team_id = $1`,
		`DELETE FROM tokka.alerts WHERE team_id = $1`,
	}
	for _, stmt := range denied {
		require.ErrorContains(t, b.as(t, "tokka_syncer", u, stmt, u.ID), "permission denied", stmt)
	}
	// What syncing and rewrapping need is allowed.
	for _, stmt := range []string{
		`UPDATE tokka.connections SET status = 'active', last_error = NULL, updated_at = now() WHERE team_id = $1`,
		`UPDATE tokka.connections SET sealed_key = sealed_key WHERE team_id = $1`,
		`SELECT sealed_key FROM tokka.connections WHERE team_id = $1 FOR UPDATE`,
	} {
		require.NoError(t, b.as(t, "tokka_syncer", u, stmt, u.ID), stmt)
	}
	var label string
	require.NoError(t, b.sql.Get(&label, `SELECT label FROM tokka.connections WHERE id = $1`, id))
	require.Equal(t, "org", label)
}

// TestEveryTableHasForcedRowLevelSecurity fails for any table in schema tokka
// (a future migration's included) that does not have row-level security both
// enabled and forced.
func TestEveryTableHasForcedRowLevelSecurity(t *testing.T) {
	t.Parallel()
	tx := pgtest.Tx(t)
	var tables []struct {
		Name    string `db:"relname"`
		Enabled bool   `db:"relrowsecurity"`
		Forced  bool   `db:"relforcerowsecurity"`
	}
	require.NoError(t, tx.Select(&tables, `
		SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'tokka' AND c.relkind IN ('r', 'p')
		ORDER BY c.relname`))
	names := map[string]bool{}
	for _, tb := range tables {
		names[tb.Name] = true
		require.True(t, tb.Enabled, "tokka.%s does not have row-level security enabled", tb.Name)
		require.True(t, tb.Forced, "tokka.%s does not have row-level security forced", tb.Name)
	}
	for _, want := range []string{"connections", "audit_events", "alerts", "usage_daily", "cost_daily", "goose_db_version"} {
		require.True(t, names[want], "the query did not see tokka.%s: the check would be vacuous", want)
	}
}

// verify checks u's whole chain (full=true), whatever earlier checks found.
func (b *testBundle) verify(t *testing.T, u tokka.User) tokka.AuditVerification {
	t.Helper()
	v, err := b.db.VerifyAuditChain(context.Background(), u, true)
	require.NoError(t, err)
	return v
}

func (b *testBundle) eventIDs(t *testing.T, u tokka.User) []int64 {
	t.Helper()
	var ids []int64
	require.NoError(t, b.sql.Select(&ids, `SELECT id FROM tokka.audit_events WHERE team_id = $1 ORDER BY id`, u.ID))
	return ids
}

// someEvents writes five events for u through the storage methods the api
// and the syncer use.
func (b *testBundle) someEvents(t *testing.T, u tokka.User) {
	t.Helper()
	ctx := context.Background()
	id := b.addConnection(t, u, "openai")
	label := "renamed"
	_, err := b.db.UpdateConnection(ctx, u, id, tokka.ConnectionUpdate{Label: &label},
		tokka.AuditEvent{Action: tokka.ActionConnectionRenamed, Outcome: tokka.OutcomeSuccess, Actor: "api:1",
			ClientIP: "203.0.113.9", UserAgent: "curl/8 “quoted” ünïcode"})
	require.NoError(t, err)
	_, err = b.db.UpdateConnection(ctx, u, id, tokka.ConnectionUpdate{SealedKey: "v2:01", KeyHint: "sk-admin-…wxyz"},
		tokka.AuditEvent{Action: tokka.ActionKeyReplaced, Outcome: tokka.OutcomeSuccess, Actor: "api:2"})
	require.NoError(t, err)
	b.addConnection(t, u, "openai")
	require.NoError(t, b.db.DeleteConnection(ctx, u, id,
		tokka.AuditEvent{Action: tokka.ActionKeyDeleted, Outcome: tokka.OutcomeSuccess, Actor: "api:3", Detail: "a\x01b:c|d\n"}))
}

func TestAuditChainIsIntactAndPinsItsHead(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u := newUser()
	v := b.verify(t, u)
	require.Equal(t, tokka.AuditVerification{Intact: true}, v, "an empty log is intact")

	b.someEvents(t, u)
	v = b.verify(t, u)
	require.True(t, v.Intact)
	require.EqualValues(t, 5, v.Events)
	require.Nil(t, v.FirstBrokenID)
	require.Nil(t, v.Problem)
	var head []byte
	require.NoError(t, b.sql.Get(&head, `SELECT hash FROM tokka.audit_events WHERE team_id = $1 ORDER BY id DESC LIMIT 1`, u.ID))
	require.Equal(t, head, []byte(v.HeadHash))

	// The stored links: first event has no predecessor, each later one
	// points at the one before it.
	evs, err := b.db.ListAuditEvents(context.Background(), u, 0, 100)
	require.NoError(t, err)
	require.Len(t, evs, 5)
	require.Nil(t, evs[4].PrevHash)
	for i := 0; i < 4; i++ {
		require.Equal(t, evs[i+1].Hash, evs[i].PrevHash)
		require.Len(t, evs[i].Hash, 32)
	}
}

func TestAuditChainLocatesTampering(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cases := []struct {
		name    string
		tamper  func(t *testing.T, ids []int64) int64 // returns the id verify must report
		problem string
	}{
		{"edited detail", func(t *testing.T, ids []int64) int64 {
			_, err := b.sql.Exec(`UPDATE tokka.audit_events SET detail = 'nothing happened' WHERE id = $1`, ids[2])
			require.NoError(t, err)
			return ids[2]
		}, "content does not match"},
		{"edited time", func(t *testing.T, ids []int64) int64 {
			_, err := b.sql.Exec(`UPDATE tokka.audit_events SET created_at = created_at - interval '1 microsecond' WHERE id = $1`, ids[1])
			require.NoError(t, err)
			return ids[1]
		}, "content does not match"},
		{"edited and re-hashed", func(t *testing.T, ids []int64) int64 {
			// An attacker who knows the encoding recomputes the edited event's
			// hash: the next event no longer links to it.
			_, err := b.sql.Exec(`UPDATE tokka.audit_events SET action = 'key.created',
				hash = tokka.audit_event_hash_v2(prev_hash, team_id, connection_id, provider, 'key.created', outcome,
					purpose, actor, client_ip, user_agent, detail, created_at, actor_user_id) WHERE id = $1`, ids[2])
			require.NoError(t, err)
			return ids[3]
		}, "does not follow"},
		{"deleted event", func(t *testing.T, ids []int64) int64 {
			_, err := b.sql.Exec(`DELETE FROM tokka.audit_events WHERE id = $1`, ids[1])
			require.NoError(t, err)
			return ids[2]
		}, "does not follow"},
		{"deleted first event", func(t *testing.T, ids []int64) int64 {
			_, err := b.sql.Exec(`DELETE FROM tokka.audit_events WHERE id = $1`, ids[0])
			require.NoError(t, err)
			return ids[1]
		}, "does not follow"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			u := newUser()
			b.someEvents(t, u)
			require.True(t, b.verify(t, u).Intact)
			want := tc.tamper(t, b.eventIDs(t, u))
			v := b.verify(t, u)
			require.False(t, v.Intact)
			require.NotNil(t, v.FirstBrokenID)
			require.Equal(t, want, *v.FirstBrokenID)
			require.Contains(t, *v.Problem, tc.problem)
			require.Nil(t, v.HeadHash)
		})
	}
}

// TestAuditHashSQLAndGoAgree checks the two implementations of the canonical
// encoding (the SQL one writes, the Go one verifies) on awkward values, with
// a session time zone whose offset is not whole hours.
func TestAuditHashSQLAndGoAgree(t *testing.T) {
	t.Parallel()
	tx := pgtest.Tx(t)
	_, err := tx.Exec(`SET LOCAL TimeZone = 'Asia/Kathmandu'`)
	require.NoError(t, err)
	conn := uuid.NewString()
	prev := make([]byte, 32)
	for i := range prev {
		prev[i] = byte(i * 7)
	}
	evs := []tokka.AuditEvent{
		{TeamID: uuid.NewString(), Action: "key.created", Outcome: "success", Actor: "api:x", CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 678901000, time.UTC)},
		{TeamID: uuid.NewString(), ConnectionID: &conn, Provider: "openai", Action: "a", Outcome: "failure", Purpose: "p",
			Actor: "syncer:h", ClientIP: "::1", UserAgent: "ü “x”", Detail: "a\x01b|c:d", CreatedAt: time.Date(1999, 12, 31, 23, 59, 59, 999999000, time.UTC)},
		{TeamID: uuid.NewString(), ConnectionID: &conn, Action: "ab", Outcome: "", Purpose: "c", CreatedAt: time.Date(2030, 6, 1, 0, 0, 0, 1000, time.FixedZone("x", 5*3600+45*60))},
	}
	for i, ev := range evs {
		for _, p := range [][]byte{nil, prev} {
			var got []byte
			require.NoError(t, tx.Get(&got, `SELECT tokka.audit_event_hash($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
				p, ev.TeamID, ev.ConnectionID, ev.Provider, ev.Action, ev.Outcome, ev.Purpose, ev.Actor,
				ev.ClientIP, ev.UserAgent, ev.Detail, ev.CreatedAt))
			require.Equal(t, hex.EncodeToString(postgres.AuditEventHash(p, ev)), hex.EncodeToString(got), "event %d", i)

			// With an acting user: the v2 hash, which is another value.
			actor := uuid.NewString()
			withActor := ev
			withActor.ActorUserID = &actor
			require.NoError(t, tx.Get(&got, `SELECT tokka.audit_event_hash_v2($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
				p, ev.TeamID, ev.ConnectionID, ev.Provider, ev.Action, ev.Outcome, ev.Purpose, ev.Actor,
				ev.ClientIP, ev.UserAgent, ev.Detail, ev.CreatedAt, actor))
			require.Equal(t, hex.EncodeToString(postgres.AuditEventHash(p, withActor)), hex.EncodeToString(got), "event %d with an actor", i)
			require.NotEqual(t, postgres.AuditEventHash(p, ev), postgres.AuditEventHash(p, withActor))
			require.NoError(t, tx.Get(&got, `SELECT tokka.audit_event_hash_v2($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, NULL)`,
				p, ev.TeamID, ev.ConnectionID, ev.Provider, ev.Action, ev.Outcome, ev.Purpose, ev.Actor,
				ev.ClientIP, ev.UserAgent, ev.Detail, ev.CreatedAt))
			require.Equal(t, hex.EncodeToString(postgres.AuditEventHash(p, ev)), hex.EncodeToString(got), "without an actor, v1")
		}
	}
	// Moving a byte between adjacent fields changes the hash (length prefixes).
	a := tokka.AuditEvent{TeamID: evs[0].TeamID, Action: "ab", Outcome: "c", CreatedAt: evs[0].CreatedAt}
	c := tokka.AuditEvent{TeamID: evs[0].TeamID, Action: "a", Outcome: "bc", CreatedAt: evs[0].CreatedAt}
	require.NotEqual(t, postgres.AuditEventHash(nil, a), postgres.AuditEventHash(nil, c))
}

// TestConcurrentAuditWritesKeepOneChain writes one user's events from many
// transactions at once, as the api and several syncers do: the advisory lock
// must serialise them into one unbroken chain.
func TestConcurrentAuditWritesKeepOneChain(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u := newUser()
	ids := make([]string, 8)
	for i := range ids {
		ids[i] = b.addConnection(t, u, "openai")
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := 0; i < 24; i++ {
		wg.Go(func() {
			label := "label " + string(rune('a'+i))
			_, err := b.db.UpdateConnection(ctx, u, ids[i%len(ids)], tokka.ConnectionUpdate{Label: &label},
				tokka.AuditEvent{Action: tokka.ActionConnectionRenamed, Outcome: tokka.OutcomeSuccess, Actor: "api:c"})
			require.NoError(t, err)
		})
		wg.Go(func() {
			_, err := b.db.CreateConnection(ctx, u, tokka.NewConnection{
				ID: uuid.NewString(), Provider: "anthropic", Label: "x", KeyHint: "h", SealedKey: "v2:00",
			}, tokka.AuditEvent{Action: tokka.ActionKeyCreated, Outcome: tokka.OutcomeSuccess, Actor: "api:c"})
			require.NoError(t, err)
		})
	}
	wg.Wait()
	v := b.verify(t, u)
	require.True(t, v.Intact, "broken at %v: %v", v.FirstBrokenID, v.Problem)
	require.EqualValues(t, 8+48, v.Events)
	var distinct int
	require.NoError(t, b.sql.Get(&distinct, `SELECT count(DISTINCT coalesce(prev_hash, '')) FROM tokka.audit_events WHERE team_id = $1`, u.ID))
	require.Equal(t, 8+48, distinct, "no two events claim the same predecessor")
}

// TestMigrationChainsEventsWrittenBeforeIt replays migration 00005 over a log
// written before it existed: the events it finds are chained and verify. It
// migrates down, so it has a database of its own.
func TestMigrationChainsEventsWrittenBeforeIt(t *testing.T) {
	t.Parallel()
	url, raw, _ := beforeMigration(t, 5)
	ctx := context.Background()

	users := []tokka.User{newUser(), newUser()}
	for i := 0; i < 7; i++ {
		u := users[i%2]
		_, err := raw.Exec(`INSERT INTO tokka.audit_events (user_id, connection_id, action, outcome, actor, detail, created_at)
			VALUES ($1, $2, 'key.decrypted', 'success', 'syncer:old', $3, now() - make_interval(days => $4))`,
			u.ID, uuid.NewString(), "before the chain "+string(rune('a'+i)), 10-i)
		require.NoError(t, err)
	}
	require.NoError(t, postgres.Migrate(ctx, url))

	d, err := postgres.Open(ctx, url, 2)
	require.NoError(t, err)
	defer d.Close()
	for i, u := range users {
		v, err := d.VerifyAuditChain(ctx, u, false)
		require.NoError(t, err)
		require.True(t, v.Intact, "user %d", i)
		require.EqualValues(t, 4-i, v.Events)
	}
	// New events continue each chain.
	_, err = d.CreateConnection(ctx, users[0], tokka.NewConnection{ID: uuid.NewString(), Provider: "openai",
		Label: "x", KeyHint: "h", SealedKey: "v2:00"}, tokka.AuditEvent{Action: tokka.ActionKeyCreated, Outcome: tokka.OutcomeSuccess, Actor: "api:new"})
	require.NoError(t, err)
	v, err := d.VerifyAuditChain(ctx, users[0], false)
	require.NoError(t, err)
	require.True(t, v.Intact)
	require.EqualValues(t, 5, v.Events)
}
