package postgres_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/postgres"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// leaseAll leases every due connection for owner.
func leaseAll(t *testing.T, d *postgres.DB, owner string) map[string]tokka.Lease {
	t.Helper()
	ls, err := d.LeaseDue(context.Background(), owner, 100, time.Hour)
	require.NoError(t, err)
	out := map[string]tokka.Lease{}
	for _, l := range ls {
		out[l.ConnectionID] = l
	}
	return out
}

func syncFailed(actor string) tokka.AuditEvent {
	return tokka.AuditEvent{Action: tokka.ActionSyncFailed, Outcome: tokka.OutcomeFailure, Actor: actor, Purpose: "initial backfill"}
}

func spendRows(t *testing.T, raw *sqlx.DB, id string) int {
	t.Helper()
	var n int
	require.NoError(t, raw.Get(&n, `SELECT (SELECT count(*) FROM tokka.usage_daily WHERE connection_id = $1)
		+ (SELECT count(*) FROM tokka.cost_daily WHERE connection_id = $1)
		+ (SELECT count(*) FROM tokka.usage_monthly WHERE connection_id = $1)
		+ (SELECT count(*) FROM tokka.cost_monthly WHERE connection_id = $1)
		+ (SELECT count(*) FROM tokka.spend_daily WHERE connection_id = $1)`, id))
	return n
}

func someRows(day time.Time, usd string) ([]tokka.UsageRow, []tokka.CostRow) {
	return []tokka.UsageRow{{Day: day, Family: "completions", Model: "m", ProjectID: "proj_x", Tokens: tokka.Tokens{InputUncachedTokens: 10}}},
		[]tokka.CostRow{{Day: day, Model: "m", ProjectID: "proj_x", AmountUSD: decimal.RequireFromString(usd),
			Amount: decimal.RequireFromString(usd), Currency: "usd"}}
}

func complete(t *testing.T, d *postgres.DB, l tokka.Lease, day time.Time, usd string) error {
	t.Helper()
	usage, costs := someRows(day, usd)
	return d.CompleteSync(context.Background(), l, tokka.SyncResult{
		Window: tokka.Window{From: day, To: day.AddDate(0, 0, 1)}, Usage: usage, Costs: costs, Backfill: true,
		Next: time.Now().Add(time.Hour), Event: tokka.AuditEvent{Action: tokka.ActionSyncSucceeded, Outcome: tokka.OutcomeSuccess, Actor: "syncer:t"},
	})
}

// The newer of two connections of one organisation (the same id, or any
// shared project) becomes the duplicate, whichever learns its organisation
// first: an older one that learns it late demotes the newer, whose rows go
// (rollups included), whose syncer mid-sync can store nothing and gives the
// lease back on the record, and which is never leased again until its key
// is replaced. Another provider, or another user, is never a duplicate.
func TestNewerConnectionOfAnOrganisationIsTheDuplicate(t *testing.T) {
	t.Parallel()
	b := setup(t, ownDatabase())
	ctx := context.Background()
	u, other := newUser(), newUser()
	older := b.addConnection(t, u, "openai")
	newer := b.addConnection(t, u, "openai")
	late := b.addConnection(t, u, "openai")
	elsewhere := b.addConnection(t, u, "openai")
	antA := b.addConnection(t, u, "anthropic")
	antB := b.addConnection(t, u, "anthropic")
	othersSame := b.addConnection(t, other, "openai")
	_, err := b.sql.Exec(`UPDATE tokka.connections SET created_at = now() - make_interval(mins => $2) WHERE id = $1`, older, 50)
	require.NoError(t, err)
	for i, id := range []string{newer, late, elsewhere, antA, antB, othersSame} {
		_, err := b.sql.Exec(`UPDATE tokka.connections SET created_at = now() - make_interval(mins => $2) WHERE id = $1`, id, 40-i)
		require.NoError(t, err)
	}
	leases := leaseAll(t, b.db, "syncer:one")
	require.Len(t, leases, 7)
	for _, l := range leases {
		require.False(t, l.OrganizationKnown)
	}
	day := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)

	// The newer one learns first and is counted for now; its sync finishes.
	dup, err := b.db.RecordOrganization(ctx, leases[newer], tokka.Organization{ProjectIDs: []string{"proj_a", "proj_b"}}, syncFailed("syncer:one"))
	require.NoError(t, err)
	require.Empty(t, dup)
	require.NoError(t, complete(t, b.db, leases[newer], day, "7"))
	require.Positive(t, spendRows(t, b.sql, newer))
	// Unrelated organisations, another provider, another user.
	for id, org := range map[string]tokka.Organization{
		elsewhere:  {ProjectIDs: []string{"proj_z"}},
		antA:       {ID: "org-1", ProjectIDs: []string{"proj_a"}},
		othersSame: {ProjectIDs: []string{"proj_a", "proj_b"}},
	} {
		dup, err := b.db.RecordOrganization(ctx, leases[id], org, syncFailed("syncer:one"))
		require.NoError(t, err)
		require.Empty(t, dup, id)
	}

	// The older one shares one project: it is kept, the newer is demoted.
	dup, err = b.db.RecordOrganization(ctx, leases[older], tokka.Organization{ProjectIDs: []string{"proj_b", "proj_c"}}, syncFailed("syncer:two"))
	require.NoError(t, err)
	require.Empty(t, dup)
	require.NoError(t, complete(t, b.db, leases[older], day, "7"))
	var st struct {
		Status    string  `db:"status"`
		LastError *string `db:"last_error"`
	}
	require.NoError(t, b.sql.Get(&st, `SELECT status, last_error FROM tokka.connections WHERE id = $1`, newer))
	require.EqualValues(t, tokka.StatusDuplicate, st.Status)
	require.Contains(t, *st.LastError, older)
	require.Zero(t, spendRows(t, b.sql, newer), "a duplicate's rows and rollups are gone")
	var spend decimal.Decimal
	require.NoError(t, b.sql.Get(&spend, `SELECT sum(amount_usd) FROM tokka.spend_daily WHERE team_id = $1`, u.ID))
	require.Equal(t, "7", spend.String(), "the organisation counts once")

	// A connection found later to share the organisation is the duplicate
	// at once, and gives its own lease back.
	dup, err = b.db.RecordOrganization(ctx, leases[late], tokka.Organization{ProjectIDs: []string{"proj_c"}}, syncFailed("syncer:one"))
	require.NoError(t, err)
	require.Equal(t, older, dup)
	require.ErrorIs(t, complete(t, b.db, leases[late], day, "7"), tokka.ErrLeaseLost)
	var owner *string
	require.NoError(t, b.sql.Get(&owner, `SELECT lease_owner FROM tokka.connections WHERE id = $1`, late))
	require.Nil(t, owner)
	// Anthropic: the same organisation id.
	dup, err = b.db.RecordOrganization(ctx, leases[antB], tokka.Organization{ID: "org-1"}, syncFailed("syncer:one"))
	require.NoError(t, err)
	require.Equal(t, antA, dup)

	// A sync that was running on a demoted connection stores nothing and
	// ends on the record.
	_, err = b.sql.Exec(`UPDATE tokka.connections SET lease_owner = 'syncer:three', lease_expires_at = now() + interval '1 hour'
		WHERE id = $1`, newer)
	require.NoError(t, err)
	stale := leases[newer]
	stale.Owner = "syncer:three"
	// (It would have learnt its organisation before the demotion; here it
	// writes its results after it.)
	err = complete(t, b.db, stale, day, "7")
	require.ErrorIs(t, err, tokka.ErrDuplicate)
	require.ErrorIs(t, err, tokka.ErrLeaseLost)
	require.Zero(t, spendRows(t, b.sql, newer))
	require.NoError(t, b.db.AbandonSync(ctx, stale, syncFailed("syncer:three")))
	require.NoError(t, b.sql.Get(&owner, `SELECT lease_owner FROM tokka.connections WHERE id = $1`, newer))
	require.Nil(t, owner)

	var events []string
	require.NoError(t, b.sql.Select(&events, `SELECT action || ':' || actor || ':' || left(detail, 10) FROM tokka.audit_events
		WHERE connection_id = $1 ORDER BY id`, newer))
	require.Equal(t, []string{"key.created:api:test:", "sync.succeeded:syncer:t:", "sync.failed:syncer:two:duplicate:",
		"sync.failed:syncer:three:"}, events)
	var alerts []struct {
		Conn   string `db:"connection_id"`
		Detail string `db:"detail"`
	}
	require.NoError(t, b.sql.Select(&alerts, `SELECT connection_id, detail->>'existing_connection_id' AS detail
		FROM tokka.alerts WHERE team_id = $1 AND kind = 'duplicate_connection' ORDER BY connection_id`, u.ID))
	want := map[string]string{newer: older, late: older, antB: antA}
	require.Len(t, alerts, len(want))
	for _, a := range alerts {
		require.Equal(t, want[a.Conn], a.Detail, a.Conn)
	}

	// Duplicates are never leased, however due; a new key brings one back
	// with its organisation to learn again.
	_, err = b.sql.Exec(`UPDATE tokka.connections SET next_sync_at = now() - interval '1 minute', lease_owner = NULL,
		lease_expires_at = NULL WHERE team_id = $1`, u.ID)
	require.NoError(t, err)
	again := leaseAll(t, b.db, "syncer:four")
	for _, id := range []string{newer, late, antB} {
		require.NotContains(t, again, id)
	}
	require.Contains(t, again, older)
	require.True(t, again[older].OrganizationKnown)
	for _, l := range again {
		require.NoError(t, b.db.ReleaseLease(ctx, l))
	}
	_, err = b.db.UpdateConnection(ctx, u, late, tokka.ConnectionUpdate{SealedKey: "v2:01", KeyHint: "h2"},
		tokka.AuditEvent{Action: tokka.ActionKeyReplaced, Outcome: tokka.OutcomeSuccess, Actor: "api:t"})
	require.NoError(t, err)
	again = leaseAll(t, b.db, "syncer:five")
	require.Contains(t, again, late)
	require.False(t, again[late].OrganizationKnown, "a new key's organisation is learnt afresh")
	dup, err = b.db.RecordOrganization(ctx, again[late], tokka.Organization{ProjectIDs: []string{"proj_q"}}, syncFailed("syncer:five"))
	require.NoError(t, err)
	require.Empty(t, dup)
}

// Two first syncs of one organisation racing settle on the older
// connection whatever the order: the checks are serialised per user and
// provider, and exactly one connection stays counted.
func TestRacingOrganisationChecksKeepOneConnection(t *testing.T) {
	t.Parallel()
	b := setup(t, ownDatabase())
	ctx := context.Background()
	u := newUser()
	var ids []string
	for i := 0; i < 6; i++ {
		ids = append(ids, b.addConnection(t, u, "anthropic"))
		_, err := b.sql.Exec(`UPDATE tokka.connections SET created_at = now() - make_interval(mins => $2) WHERE id = $1`, ids[i], 60-i)
		require.NoError(t, err)
	}
	leases := leaseAll(t, b.db, "syncer:race")
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			_, err := b.db.RecordOrganization(ctx, leases[id], tokka.Organization{ID: "org-race"}, syncFailed("syncer:race"))
			require.NoError(t, err)
		})
	}
	wg.Wait()
	var kept []string
	require.NoError(t, b.sql.Select(&kept, `SELECT id FROM tokka.connections WHERE team_id = $1 AND status <> 'duplicate'`, u.ID))
	require.Equal(t, []string{ids[0]}, kept, "the oldest is the one kept")
}

// Two requests racing to connect one key: the unique fingerprint lets one
// in, and every other is a conflict naming it.
func TestConcurrentCreatesWithOneFingerprint(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u := newUser()
	fp := make([]byte, 32)
	copy(fp, u.ID)
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Go(func() {
			_, errs[i] = b.db.CreateConnection(context.Background(), u, tokka.NewConnection{
				ID: uuid.NewString(), Provider: "openai", Label: "x", KeyHint: "h", SealedKey: "v2:00", KeyFingerprint: fp,
			}, tokka.AuditEvent{Action: tokka.ActionKeyCreated, Outcome: tokka.OutcomeSuccess, Actor: "api:test"})
		})
	}
	wg.Wait()
	var winner string
	require.NoError(t, b.sql.Get(&winner, `SELECT id FROM tokka.connections WHERE team_id = $1`, u.ID))
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
			continue
		}
		var de *tokka.Error
		require.True(t, errors.As(err, &de), err)
		require.Equal(t, tokka.CodeConflict, de.Code)
		require.Equal(t, winner, de.ConnectionID)
	}
	require.Equal(t, 1, ok)
	var events int
	require.NoError(t, b.sql.Get(&events, `SELECT count(*) FROM tokka.audit_events WHERE team_id = $1`, u.ID))
	require.Equal(t, 1, events, "a refused create writes no audit event")
}

// The idempotency store: a claim runs once, its response is replayed, a
// different request with the key is refused, a claim whose holder died is
// taken over, an expired key is forgotten, and each user sees only theirs.
func TestIdempotencyKeysAreClaimedOnceAndReplayed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	alice, bob := newUser(), newUser()
	h1, h2 := make([]byte, 32), make([]byte, 32)
	h2[0] = 1
	claim := func(u tokka.User, key string, h []byte) (*tokka.IdempotentResponse, error) {
		return b.db.ClaimIdempotencyKey(ctx, u, key, h, 24*time.Hour, time.Minute)
	}
	code := func(err error) tokka.Code { return tokka.ErrorCode(err) }

	r, err := claim(alice, "k", h1)
	require.NoError(t, err)
	require.Nil(t, r, "claimed")
	_, err = claim(alice, "k", h1)
	require.Equal(t, tokka.CodeConflict, code(err), "still running")
	_, err = claim(alice, "k", h2)
	require.Equal(t, tokka.CodeUnprocessable, code(err), "another request")
	r, err = claim(bob, "k", h1)
	require.NoError(t, err)
	require.Nil(t, r, "Bob's k is his own")

	resp := tokka.IdempotentResponse{Status: 201, Location: "/v1/x/1", ContentType: "application/json", Body: []byte(`{"id":1}`)}
	require.NoError(t, b.db.SaveIdempotentResponse(ctx, alice, "k", h1, resp))
	r, err = claim(alice, "k", h1)
	require.NoError(t, err)
	require.Equal(t, &resp, r)
	_, err = claim(alice, "k", h2)
	require.Equal(t, tokka.CodeUnprocessable, code(err))

	// Released: the next claim runs afresh, with any request.
	_, err = claim(alice, "rel", h1)
	require.NoError(t, err)
	require.NoError(t, b.db.ReleaseIdempotencyKey(ctx, alice, "rel", h1))
	r, err = claim(alice, "rel", h2)
	require.NoError(t, err)
	require.Nil(t, r)

	// A holder that died: taken over once its claim lapses.
	_, err = b.sql.Exec(`UPDATE tokka.idempotency_keys SET locked_until = now() - interval '1 second'
		WHERE user_id = $1 AND idempotency_key = 'rel'`, alice.ID)
	require.NoError(t, err)
	r, err = claim(alice, "rel", h2)
	require.NoError(t, err)
	require.Nil(t, r, "taken over")

	// Expired: forgotten, so the key is free for another request.
	_, err = b.sql.Exec(`UPDATE tokka.idempotency_keys SET expires_at = now() - interval '1 second'
		WHERE user_id = $1 AND idempotency_key = 'k'`, alice.ID)
	require.NoError(t, err)
	r, err = claim(alice, "k", h2)
	require.NoError(t, err)
	require.Nil(t, r)

	// Row-level security: Bob's role sees none of Alice's keys, and cannot
	// write one for her.
	require.NoError(t, b.as(t, "authenticated", bob, `DO $$ BEGIN
		IF (SELECT count(*) FROM tokka.idempotency_keys WHERE user_id <> tokka.uid()) > 0 THEN RAISE 'leak'; END IF; END $$`))
	err = b.as(t, "authenticated", bob, `INSERT INTO tokka.idempotency_keys (user_id, idempotency_key, request_hash, locked_until, expires_at)
		VALUES ($1, 'x', $2, now(), now())`, alice.ID, h1)
	require.ErrorContains(t, err, "row-level security")
}

// TestMigration00012KeepsEveryRow replays migration 00012 over a database
// that holds connections in every status, alerts, usage and rollups: after
// it, every row is there unchanged and new connections can be added; its
// Down turns a duplicate into invalid (never synced, its reason kept) and
// loses nothing else. It migrates down, so it has a database of its own.
func TestMigration00012KeepsEveryRow(t *testing.T) {
	t.Parallel()
	url, raw, downAgain := beforeMigration(t, 12)
	ctx := context.Background()

	u := newUser()
	statuses := []string{"pending", "active", "invalid", "error", "needs_reconnect", "compromised"}
	for i, st := range statuses {
		id := uuid.NewString()
		_, err := raw.Exec(`INSERT INTO tokka.connections (id, user_id, provider, label, key_hint, sealed_key, status)
			VALUES ($1, $2, 'openai', $3, 'h', 'v2:00', $4)`, id, u.ID, "c"+st, st)
		require.NoError(t, err)
		_, err = raw.Exec(`INSERT INTO tokka.cost_daily (connection_id, user_id, provider, day, model, amount_usd, amount, currency)
			VALUES ($1, $2, 'openai', '2026-11-01'::date + $3::int, 'm', 1.5, 1.5, 'usd')`, id, u.ID, i)
		require.NoError(t, err)
		_, err = raw.Exec(`INSERT INTO tokka.alerts (user_id, kind, connection_id, dedup_key, title) VALUES ($1, 'key_rotation', $2, $3, 't')`,
			u.ID, id, "rot:"+id)
		require.NoError(t, err)
	}
	snapshot := func() string {
		var s string
		require.NoError(t, raw.QueryRow(`SELECT
			(SELECT string_agg(id || status || label || coalesce(last_error, ''), ',' ORDER BY id) FROM tokka.connections) ||
			(SELECT string_agg(connection_id::text || day::text || amount_usd::text, ',' ORDER BY connection_id) FROM tokka.cost_daily) ||
			(SELECT string_agg(dedup_key || kind, ',' ORDER BY dedup_key) FROM tokka.alerts)`).Scan(&s))
		return s
	}
	want := snapshot()

	require.NoError(t, postgres.Migrate(ctx, url))
	require.Equal(t, want, snapshot(), "the upgrade changes no row")
	var unknown int
	require.NoError(t, raw.QueryRow(`SELECT count(*) FROM tokka.connections
		WHERE key_fingerprint IS NULL AND organization_checked_at IS NULL AND project_ids = '{}'`).Scan(&unknown))
	require.Equal(t, len(statuses), unknown, "existing connections learn their organisation at their next sync")

	// Down again with a duplicate in the data.
	var active string
	require.NoError(t, raw.QueryRow(`SELECT id FROM tokka.connections WHERE status = 'active'`).Scan(&active))
	_, err := raw.Exec(`UPDATE tokka.connections SET status = 'duplicate', last_error = 'covered by another' WHERE id = $1`, active)
	require.NoError(t, err)
	_, err = raw.Exec(`INSERT INTO tokka.alerts (team_id, kind, connection_id, dedup_key, title) VALUES ($1, 'duplicate_connection', $2, 'dup', 't')`,
		u.ID, active)
	require.NoError(t, err)
	downAgain()
	var st, reason string
	require.NoError(t, raw.QueryRow(`SELECT status, last_error FROM tokka.connections WHERE id = $1`, active).Scan(&st, &reason))
	require.Equal(t, "invalid", st)
	require.Equal(t, "covered by another", reason)
	_, err = raw.Exec(`UPDATE tokka.connections SET status = 'active', last_error = NULL WHERE id = $1`, active)
	require.NoError(t, err)
	require.Equal(t, want, snapshot(), "the downgrade loses nothing else")

	require.NoError(t, postgres.Migrate(ctx, url))
	d, err := postgres.Open(ctx, url, 2)
	require.NoError(t, err)
	defer d.Close()
	_, err = d.CreateConnection(ctx, u, tokka.NewConnection{ID: uuid.NewString(), Provider: "openai", Label: "new",
		KeyHint: "h", SealedKey: "v2:00", KeyFingerprint: make([]byte, 32)},
		tokka.AuditEvent{Action: tokka.ActionKeyCreated, Outcome: tokka.OutcomeSuccess, Actor: "api:new"})
	require.NoError(t, err)
}
