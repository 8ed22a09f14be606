package syncer_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/fakeprovider"
	"github.com/tokka-dev/tokka/pkg/postgres"
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

// storingGate is the real store, except that CompleteSync (storing a
// sync's results) first reports which connection arrived and waits until
// the test opens the gate.
type storingGate struct {
	*postgres.DB
	arrived chan string
	open    chan struct{}
}

func (g storingGate) CompleteSync(ctx context.Context, l tokka.Lease, r tokka.SyncResult) error {
	g.arrived <- l.ConnectionID
	<-g.open
	return g.DB.CompleteSync(ctx, l, r)
}

// TestStoringResultsFreesTheProviderSlot: a sync gives its slot up once its
// provider calls are over, so with one slot the next connection is read
// from the provider while the first one's results are still being stored;
// and at most Concurrency syncs store at once besides, so a third
// connection waits while two are storing.
func TestStoringResultsFreesTheProviderSlot(t *testing.T) {
	t.Parallel()
	c := newTestClock(time.Now())
	b := setup(t, clockedBy(c))
	user := uuid.NewString()
	keys := map[string]string{}
	for i := range 3 {
		k := "sk-ant-admin01-" + user[:8] + "-gate" + string(rune('a'+i))
		keys[b.addConnection(t, user, tokka.Anthropic, k)] = k
	}
	g := storingGate{DB: b.db, arrived: make(chan string, 3), open: make(chan struct{})}
	done := runOnceInBackground(b.clockedSyncer(syncer.Config{Instance: "gate", Concurrency: 1, BackfillDays: 3}, g))
	// (The deadline only turns a hang into a failure; nothing is timed.)
	arrival := func(what string) string {
		select {
		case id := <-g.arrived:
			return id
		case <-time.After(time.Minute):
			close(g.open)
			t.Fatal(what)
			return ""
		}
	}
	first := arrival("no sync came to store its results")
	second := arrival("the next connection waited for the first one's results to be stored")
	require.NotEqual(t, first, second)
	for id, k := range keys {
		if id == first || id == second {
			continue
		}
		// Two are storing and the one slot is free: the third is not
		// leased (watched for a while, as a wrong dispatcher would lease
		// it at once).
		for range 20 {
			require.Nil(t, b.leaseOwner(t, id), "a third sync started while two were storing")
			require.Zero(t, b.fake.Requests(k))
			time.Sleep(10 * time.Millisecond)
		}
	}
	close(g.open)
	require.Equal(t, syncer.Summary{Synced: 3}, <-done)
	for id := range keys {
		st, _ := b.status(t, id)
		require.Equal(t, "active", st)
	}
}
