package incident_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/incident"
	"github.com/tokka-dev/tokka/pkg/pgtest"
	"github.com/tokka-dev/tokka/pkg/postgres"
	"github.com/tokka-dev/tokka/pkg/seal"
	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

type testBundle struct {
	db  *postgres.DB
	sql *sqlx.DB
	pk  *seal.PublicKey
	out *bytes.Buffer
	r   *incident.Responder
}

// setup gives each test its own database: an incident's affected set spans
// every user.
func setup(t *testing.T) *testBundle {
	t.Helper()
	kem, _, _ := seal.Suite()
	sk, err := kem.GenerateKey()
	require.NoError(t, err)
	pk, err := seal.NewPublicKey(sk.PublicKey().Bytes())
	require.NoError(t, err)
	db, raw := pgtest.OpenURL(t, pgtest.Fresh(t))
	b := &testBundle{db: db, sql: raw, pk: pk, out: &bytes.Buffer{}}
	b.r = &incident.Responder{Store: db, Actor: "syncer:incident-test", Out: b.out}
	return b
}

func user(id string) tokka.User {
	return tokka.User{ID: id, Claims: []byte(`{"sub":"` + id + `","role":"authenticated"}`)}
}

func (b *testBundle) addConnection(t *testing.T, userID string) string {
	t.Helper()
	id := uuid.NewString()
	blob, err := b.pk.Seal(secret.FromString("sk-admin-"+uuid.NewString()), seal.Binding{TeamID: userID, ConnectionID: id, Provider: "openai"})
	require.NoError(t, err)
	_, err = b.db.CreateConnection(context.Background(), user(userID), tokka.NewConnection{
		ID: id, Provider: "openai", Label: "org", KeyHint: "sk-admin-…abcd", SealedKey: blob,
	}, tokka.AuditEvent{Action: tokka.ActionKeyCreated, Outcome: tokka.OutcomeSuccess, Actor: "api:test"})
	require.NoError(t, err)
	return id
}

func (b *testBundle) state(t *testing.T, id string) (status string, lastError *string, due bool) {
	t.Helper()
	var row struct {
		Status    string  `db:"status"`
		LastError *string `db:"last_error"`
		Due       bool    `db:"due"`
	}
	require.NoError(t, b.sql.Get(&row, `SELECT status, last_error, next_sync_at <= now() AS due FROM tokka.connections WHERE id = $1`, id))
	return row.Status, row.LastError, row.Due
}

func (b *testBundle) events(t *testing.T, id, action string) []string {
	t.Helper()
	var out []string
	require.NoError(t, b.sql.Select(&out, `SELECT actor || ' ' || detail FROM tokka.audit_events
		WHERE connection_id = $1 AND action = $2 ORDER BY id`, id, action))
	return out
}

// TestReleaseUndoesAMistakenQuarantine: `syncer incident release` puts the
// connections one incident quarantined back to pending, audited, and leaves
// alone those it must not touch: a key the user replaced since, a
// connection another incident's quarantine still holds, a deleted one. A
// second run changes nothing; a reference that quarantined nothing fails.
func TestReleaseUndoesAMistakenQuarantine(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	alice, bob := uuid.NewString(), uuid.NewString()
	window := func(ref string) incident.Window {
		w, err := incident.ParseWindow(time.Now().Add(-time.Hour).Format(time.RFC3339Nano), time.Now().Format(time.RFC3339Nano), ref)
		require.NoError(t, err)
		return w
	}
	// An earlier incident quarantined one of alice's connections.
	twice := b.addConnection(t, alice)
	sum, err := b.r.Quarantine(ctx, window("INC-OTHER"))
	require.NoError(t, err)
	require.Equal(t, 1, sum.Quarantined)

	plain := b.addConnection(t, alice)
	replaced := b.addConnection(t, bob) // its user pastes a new key after the quarantine
	deleted := b.addConnection(t, bob)  // deleted after the quarantine
	sum, err = b.r.Quarantine(ctx, window("INC-MISTAKE"))
	require.NoError(t, err)
	require.Equal(t, 4, sum.Quarantined)
	require.NoError(t, b.db.DeleteConnection(ctx, user(bob), deleted,
		tokka.AuditEvent{Action: tokka.ActionKeyDeleted, Outcome: tokka.OutcomeSuccess, Actor: "api:test"}))
	blob, err := b.pk.Seal(secret.FromString("sk-admin-new-"+uuid.NewString()), seal.Binding{TeamID: bob, ConnectionID: replaced, Provider: "openai"})
	require.NoError(t, err)
	_, err = b.db.UpdateConnection(ctx, user(bob), replaced, tokka.ConnectionUpdate{SealedKey: blob, KeyHint: "sk-admin-…wxyz"},
		tokka.AuditEvent{Action: tokka.ActionKeyReplaced, Outcome: tokka.OutcomeSuccess, Actor: "api:test"})
	require.NoError(t, err)

	b.out.Reset()
	rel, err := b.r.Release(ctx, "INC-MISTAKE")
	require.NoError(t, err)
	require.Equal(t, incident.ReleaseSummary{Released: 1, NotCompromised: 1, StillHeld: 1, Deleted: 1}, rel, b.out.String())
	require.Contains(t, b.out.String(), "released\tuser "+alice+"\tconnection "+plain+"\n")
	require.Contains(t, b.out.String(), "release INC-MISTAKE: released 1, already released 0, no longer compromised 1, still quarantined by another incident 1, deleted 1\n")

	status, lastError, due := b.state(t, plain)
	require.EqualValues(t, tokka.StatusPending, status)
	require.Nil(t, lastError, "the quarantine's reason is gone")
	require.True(t, due, "it syncs again at once")
	ev := b.events(t, plain, tokka.ActionIncidentReleased)
	require.Len(t, ev, 1)
	require.True(t, strings.HasPrefix(ev[0], "syncer:incident-test incident INC-MISTAKE: quarantine released"), ev[0])
	status, _, _ = b.state(t, twice)
	require.EqualValues(t, tokka.StatusCompromised, status, "INC-OTHER still holds it")
	ev = b.events(t, twice, tokka.ActionIncidentReleased)
	require.Len(t, ev, 1)
	require.Contains(t, ev[0], "stays compromised under incident INC-OTHER")

	// The released key is leased again; the one still held is not.
	leases, err := b.db.LeaseDue(ctx, "incident-test-syncer", 10, time.Minute)
	require.NoError(t, err)
	var leased []string
	for _, l := range leases {
		leased = append(leased, l.ConnectionID)
	}
	require.Contains(t, leased, plain)
	require.NotContains(t, leased, twice)
	for _, l := range leases {
		require.NoError(t, b.db.ReleaseLease(ctx, l))
	}

	// Again: nothing changes.
	rel, err = b.r.Release(ctx, "INC-MISTAKE")
	require.NoError(t, err)
	require.Equal(t, incident.ReleaseSummary{Already: 2, NotCompromised: 1, Deleted: 1}, rel)
	require.Len(t, b.events(t, plain, tokka.ActionIncidentReleased), 1)

	// Releasing the other incident too frees alice's second connection.
	rel, err = b.r.Release(ctx, "INC-OTHER")
	require.NoError(t, err)
	require.Equal(t, 1, rel.Released, b.out.String())
	status, _, _ = b.state(t, twice)
	require.EqualValues(t, tokka.StatusPending, status)

	_, err = b.r.Release(ctx, "INC-TYPO")
	require.ErrorIs(t, err, incident.ErrNothingQuarantined)

	// Every user's chain still verifies with the new events in it.
	for _, u := range []string{alice, bob} {
		v, err := b.db.VerifyAuditChain(ctx, user(u), true)
		require.NoError(t, err)
		require.True(t, v.Intact, u)
	}
}
