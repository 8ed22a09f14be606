package syncer_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/fakeprovider"
	"github.com/tokka-dev/tokka/pkg/provider"
	"github.com/tokka-dev/tokka/pkg/syncer"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// runDaemon runs s.Run polling every pollEvery (an hour: only wake-ups
// start work), and stops it when the test ends.
func runDaemon(t *testing.T, s *syncer.Syncer, pollEvery time.Duration) chan<- struct{} {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	wake := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, pollEvery, wake) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return wake
}

// notify wakes the daemon the way the api's NOTIFY does (a full channel
// means a wake-up is already pending).
func notify(wake chan<- struct{}) {
	select {
	case wake <- struct{}{}:
	default:
	}
}

// TestNewConnectionsSyncWhileASlowOneIsInFlight: with one connection's
// backfill stuck at a slow provider, new connections added meanwhile are
// leased and synced at once in the free slots (the daemon does not wait for
// the slow sync before looking for more work, nor drop the wake-ups that
// arrive meanwhile), while the slow one is still leased and in flight.
func TestNewConnectionsSyncWhileASlowOneIsInFlight(t *testing.T) {
	t.Parallel()
	c := newTestClock(time.Now())
	b := setup(t, clockedBy(c), fakeWith(fakeprovider.Options{SlowDelay: time.Hour}), httpWith(provider.HTTPClient{Timeout: 2 * time.Hour}))
	user := uuid.NewString()
	slowKey := "sk-ant-admin01-" + user[:8] + "-slow"
	slowID := b.addConnection(t, user, tokka.Anthropic, slowKey)
	s := b.clockedSyncer(syncer.Config{Instance: "dispatch", Concurrency: 4, BackfillDays: 3,
		ShutdownGrace: time.Millisecond}, b.db)
	wake := runDaemon(t, s, time.Hour)
	notify(wake)
	require.Eventually(t, func() bool { return b.fake.Requests(slowKey) == 1 }, time.Minute, 10*time.Millisecond,
		"the slow backfill is waiting at the provider")

	var ids []string
	for i := range 7 {
		ids = append(ids, b.addConnection(t, user, tokka.Anthropic, "sk-ant-admin01-"+user[:8]+"-new"+string(rune('a'+i))))
		notify(wake)
	}
	// (The deadline only turns a hang into a failure; nothing is timed.)
	require.Eventually(t, func() bool {
		for _, id := range ids {
			if st, _ := b.status(t, id); st != "active" {
				return false
			}
		}
		return true
	}, time.Minute, 10*time.Millisecond, "new connections wait behind the slow sync")

	st, _ := b.status(t, slowID)
	require.Equal(t, "pending", st, "the slow backfill is still in flight")
	var owner *string
	require.NoError(t, b.sql.Get(&owner, `SELECT lease_owner FROM tokka.connections WHERE id = $1`, slowID))
	require.NotNil(t, owner, "and still leased")
	require.Equal(t, 1, b.fake.Requests(slowKey))
	w := tokka.DayWindow(c.now(), 3)
	for i, id := range ids {
		key := "sk-ant-admin01-" + user[:8] + "-new" + string(rune('a'+i))
		b.requireStoresWhatIsServed(t, id, tokka.Anthropic, key, w)
	}
}
