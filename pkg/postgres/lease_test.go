package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// A lease that ran out while its syncer was stalled (a GC pause, a busy
// machine) is renewed as long as nobody has taken the connection since:
// its owner token still names this very lease, so no other syncer can be
// running it. Once another syncer has taken it over, or it was given
// back, renewing it fails with ErrLeaseLost and the first sync stops.
func TestRenewingAnExpiredLeaseNobodyTookKeepsIt(t *testing.T) {
	t.Parallel()
	b := setup(t, ownDatabase())
	ctx := context.Background()
	id := b.addConnection(t, newUser(), "openai")
	l := leaseAll(t, b.db, "syncer:stalled")[id]
	require.Equal(t, id, l.ConnectionID)
	expire := func() {
		_, err := b.sql.Exec(`UPDATE tokka.connections SET lease_expires_at = now() - interval '1 second' WHERE id = $1`, id)
		require.NoError(t, err)
	}

	expire()
	require.NoError(t, b.db.RenewLease(ctx, l, time.Minute), "nobody took it: still this syncer's")
	var live bool
	require.NoError(t, b.sql.Get(&live, `SELECT lease_expires_at > now() + interval '30 seconds' FROM tokka.connections WHERE id = $1`, id))
	require.True(t, live)

	expire()
	taken := leaseAll(t, b.db, "syncer:other")[id]
	require.True(t, taken.Takeover)
	require.ErrorIs(t, b.db.RenewLease(ctx, l, time.Minute), tokka.ErrLeaseLost, "another syncer owns it now")
	require.NoError(t, b.db.RenewLease(ctx, taken, time.Minute))

	require.NoError(t, b.db.ReleaseLease(ctx, taken))
	require.ErrorIs(t, b.db.RenewLease(ctx, taken, time.Minute), tokka.ErrLeaseLost, "given back")
}
