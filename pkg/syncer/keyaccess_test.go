package syncer_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/postgres"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

func (b *testBundle) keyAccessAlerts(t *testing.T, userID string) []string {
	t.Helper()
	var keys []string
	require.NoError(t, b.sql.Select(&keys, `SELECT dedup_key FROM tokka.alerts WHERE team_id = $1 AND kind = 'key_access' ORDER BY id`, userID))
	return keys
}

// A key decrypted with no sync outcome after it, or by a syncer instance
// that is not on the allow-list, raises one key_access alert for its owner;
// ordinary syncs raise none.
func TestDecryptionsNoSyncAccountsForAreAlerted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	alice := uuid.NewString()
	synced := b.addConnection(t, alice, tokka.Anthropic, "sk-ant-admin01-keyaccess-ok-"+alice[:8])
	ghosted := b.addConnection(t, alice, tokka.Anthropic, "sk-ant-admin01-keyaccess-ghost-"+alice[:8])

	// An ordinary sync of the first connection by an allowed instance.
	s := b.syncer(t, "prod-1", nil, nil)
	_, err := b.sql.Exec(`UPDATE tokka.connections SET next_sync_at = 'infinity' WHERE id = $1`, ghosted)
	require.NoError(t, err)
	_, err = s.RunOnce(ctx)
	require.NoError(t, err)

	// Something else leases the second one, records a decryption and then
	// never reports an outcome.
	_, err = b.sql.Exec(`UPDATE tokka.connections SET next_sync_at = now() WHERE id = $1`, ghosted)
	require.NoError(t, err)
	ls, err := b.db.LeaseDue(ctx, "ghost", 10, time.Minute)
	require.NoError(t, err)
	require.Len(t, ls, 1)
	require.NoError(t, b.db.RecordKeyUse(ctx, ls[0], tokka.AuditEvent{Action: tokka.ActionKeyDecrypted,
		Outcome: tokka.OutcomeSuccess, Actor: "syncer:ghost-7", Purpose: "scheduled sync"}))

	n, err := b.db.FlagKeyAccessAnomalies(ctx, 0, nil)
	require.NoError(t, err)
	require.Equal(t, 1, n, "only the decryption without an outcome")
	n, err = b.db.FlagKeyAccessAnomalies(ctx, 0, []string{"prod-"})
	require.NoError(t, err)
	require.Equal(t, 1, n, "the unknown instance, once; the orphan is not raised twice")
	n, err = b.db.FlagKeyAccessAnomalies(ctx, 0, []string{"prod-"})
	require.NoError(t, err)
	require.Zero(t, n)
	alerts := b.keyAccessAlerts(t, alice)
	require.Len(t, alerts, 2)
	require.Contains(t, alerts[0], "decrypt-without-outcome:")
	require.Equal(t, "decrypt-by-unknown:"+ghosted+":syncer:ghost-7", alerts[1])

	// A decryption younger than the settle time is still in flight.
	n, err = b.db.FlagKeyAccessAnomalies(ctx, time.Hour, nil)
	require.NoError(t, err)
	require.Zero(t, n)
	var forSynced int
	require.NoError(t, b.sql.Get(&forSynced, `SELECT count(*) FROM tokka.alerts WHERE connection_id = $1`, synced))
	require.Zero(t, forSynced, "an ordinary sync raises nothing")
}

// Many "sync now" requests within an hour (someone testing keys through the
// syncer) raise one key_access alert, not one per request.
func TestSyncRequestSpikeIsAlertedOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	alice := uuid.NewString()
	u := tokka.User{ID: alice, Claims: []byte(`{"sub":"` + alice + `","role":"authenticated"}`)}
	for i := 0; i < postgres.SyncRequestSpike+5; i++ {
		id := b.addConnection(t, alice, tokka.OpenAI, "sk-admin-spike-"+alice[:8]+"-"+uuid.NewString()[:4])
		_, _, err := b.db.RequestSync(ctx, u, id, time.Minute, tokka.AuditEvent{Action: tokka.ActionSyncRequested, Outcome: tokka.OutcomeSuccess, Actor: "api:test"})
		require.NoError(t, err)
	}
	alerts := b.keyAccessAlerts(t, alice)
	require.Len(t, alerts, 1)
	require.Contains(t, alerts[0], "sync-request-spike:")
}
