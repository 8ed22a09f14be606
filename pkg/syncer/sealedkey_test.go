package syncer_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/seal"
	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/syncer"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// addClientSealed stores a connection the way the api stores a key sealed
// by the client: the blob as sent (sealed for binding b), no hint, no
// fingerprint.
func (b *testBundle) addClientSealed(t *testing.T, userID, id string, p tokka.Provider, key string, sealedFor seal.Binding) string {
	t.Helper()
	blob, err := b.kr.PublicKey().Seal(secret.FromString(key), sealedFor)
	require.NoError(t, err)
	u := tokka.User{ID: userID, Claims: []byte(`{"sub":"` + userID + `","role":"authenticated"}`)}
	_, err = b.db.CreateConnection(context.Background(), u, tokka.NewConnection{
		ID: id, Provider: p, Label: "sealed " + id[:8], SealedKey: blob,
	}, tokka.AuditEvent{Action: tokka.ActionKeyCreated, Outcome: tokka.OutcomeSuccess, Actor: "api:test"})
	require.NoError(t, err)
	return id
}

type keyFacts struct {
	Hint        string `db:"key_hint"`
	Fingerprint []byte `db:"key_fingerprint"`
}

func (b *testBundle) keyFacts(t *testing.T, id string) keyFacts {
	t.Helper()
	var f keyFacts
	require.NoError(t, b.sql.Get(&f, `SELECT key_hint, key_fingerprint FROM tokka.connections WHERE id = $1`, id))
	return f
}

// The syncer does for a client-sealed key, on its first open, what the api
// does for a pasted one: it refuses a key that does not open under its
// row's binding (sealed for another connection or user) or is not an admin
// key of the provider, with a reason and an audit event; it sets the hint and
// the keyed fingerprint; and it refuses the same key connected twice. A good
// key then syncs exactly what the provider serves.
func TestClientSealedKeysAreCheckedOnFirstOpen(t *testing.T) {
	t.Parallel()
	b := setup(t)
	fp, err := secret.NewFingerprinter([]byte("syncer-test-fingerprint-secret-0123456789"))
	require.NoError(t, err)
	s := syncer.New(syncer.Config{Instance: "sealed", BackfillDays: 35, Concurrency: 3, Fingerprints: fp},
		b.db, b.kr, b.clients, zerolog.New(b.logs), syncer.NewMetrics(prometheus.NewRegistry()))

	user, other := uuid.NewString(), uuid.NewString()
	bind := func(u, id string) seal.Binding {
		return seal.Binding{TeamID: u, ConnectionID: id, Provider: tokka.OpenAI}
	}
	goodKey := "sk-admin-clientsealed-" + user[:8]
	id := uuid.NewString()
	good := b.addClientSealed(t, user, id, tokka.OpenAI, goodKey, bind(user, id))
	id = uuid.NewString()
	wrongPrefix := b.addClientSealed(t, user, id, tokka.OpenAI, "sk-ant-admin01-clientsealed-"+user[:8], bind(user, id))
	otherConn := b.addClientSealed(t, user, uuid.NewString(), tokka.OpenAI, "sk-admin-otherconn-"+user[:8], bind(user, uuid.NewString()))
	id = uuid.NewString()
	otherUser := b.addClientSealed(t, user, id, tokka.OpenAI, "sk-admin-otheruser-"+user[:8], bind(other, id))

	_, err = s.RunOnce(context.Background())
	require.NoError(t, err)

	status, reason := b.status(t, good)
	require.Equal(t, "active", status, reason)
	require.Equal(t, secret.FromString(goodKey).Hint("sk-admin-"), b.keyFacts(t, good).Hint)
	require.Equal(t, fp.Key(user, "openai", secret.FromString(goodKey)), b.keyFacts(t, good).Fingerprint)
	wantIn, wantOut, wantCost := expected(tokka.OpenAI, goodKey, tokka.DayWindow(time.Now(), 35))
	gotIn, gotOut, gotCost := b.stored(t, good)
	require.Equal(t, wantIn, gotIn)
	require.Equal(t, wantOut, gotOut)
	require.True(t, wantCost.Equal(gotCost), "to the cent: %s vs %s", wantCost, gotCost)

	status, reason = b.status(t, wrongPrefix)
	require.Equal(t, "invalid", status)
	require.Contains(t, reason, "is not an openai admin key (it must start with sk-admin-)")
	require.NotContains(t, reason, "clientsealed")
	require.Equal(t, []string{"key.created:success", "key.decrypted:success", "sync.failed:failure"}, b.actions(t, wrongPrefix))
	require.Equal(t, "", b.keyFacts(t, wrongPrefix).Hint, "a refused key gets no hint")

	for name, id := range map[string]string{"another connection": otherConn, "another user": otherUser} {
		status, reason = b.status(t, id)
		require.Equal(t, "invalid", status, name)
		require.Contains(t, reason, "does not open for this connection", name)
		require.Equal(t, []string{"key.created:success", "key.decrypted:success", "key.decrypted:failure"}, b.actions(t, id), name)
	}
	require.NotContains(t, b.logs.String(), goodKey)

	// The same key again, sealed for a new connection: duplicate, naming the
	// connection that has it; nothing of it is counted.
	again := uuid.NewString()
	b.addClientSealed(t, user, again, tokka.OpenAI, goodKey, bind(user, again))
	_, err = s.RunOnce(context.Background())
	require.NoError(t, err)
	status, reason = b.status(t, again)
	require.Equal(t, "duplicate", status)
	require.Contains(t, reason, "This key is already connected")
	require.Contains(t, reason, good)
	require.Nil(t, b.keyFacts(t, again).Fingerprint)
	gotIn, _, _ = b.stored(t, again)
	require.Zero(t, gotIn)
}
