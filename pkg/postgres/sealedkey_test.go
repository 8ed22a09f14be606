package postgres_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// The syncer records a client-sealed key's hint and fingerprint only through
// tokka.record_sealed_key, which writes them only while the hint is empty and
// only under the caller's lease: a syncer cannot rewrite the hint of a key a
// user pasted, nor of a connection it does not hold.
func TestRecordSealedKeyWritesOnlyAnUncheckedLeasedKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u := newUser()
	pasted := b.addConnection(t, u, "openai")
	sealed := uuid.NewString()
	_, err := b.db.CreateConnection(context.Background(), u, tokka.NewConnection{
		ID: sealed, Provider: "openai", Label: "sealed", SealedKey: "v2:00",
	}, tokka.AuditEvent{Action: tokka.ActionKeyCreated, Outcome: tokka.OutcomeSuccess, Actor: "api:test"})
	require.NoError(t, err)
	_, err = b.sql.Exec(`UPDATE tokka.connections SET lease_owner = 'syncer-a/1', lease_expires_at = now() + interval '1 minute' WHERE id IN ($1, $2)`, pasted, sealed)
	require.NoError(t, err)

	call := func(id, owner string) bool {
		t.Helper()
		tx, err := b.sql.Beginx()
		require.NoError(t, err)
		defer tx.Rollback() //nolint:errcheck
		_, err = tx.Exec(`SET LOCAL role tokka_syncer`)
		require.NoError(t, err)
		var found bool
		require.NoError(t, tx.Get(&found, `SELECT tokka.record_sealed_key($1, $2, 'sk-admin-…wxyz', NULL)`, id, owner))
		return found
	}
	require.False(t, call(pasted, "syncer-a/1"), "a pasted key's hint is the api's")
	require.False(t, call(sealed, "syncer-b/2"), "only under the caller's own lease")
	require.True(t, call(sealed, "syncer-a/1"))
	require.ErrorContains(t, b.as(t, "tokka_syncer", u, `UPDATE tokka.connections SET key_hint = 'x' WHERE id = $1`, sealed), "permission denied")
}
