package syncer_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/fakeprovider"
	"github.com/tokka-dev/tokka/pkg/pgtest"
	"github.com/tokka-dev/tokka/pkg/postgres"
	"github.com/tokka-dev/tokka/pkg/syncer"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// gatedStore holds the first CompleteSync until the test opens the gate
// (so the test can take the database away at that moment) and counts the
// attempts to store results and to record failures.
type gatedStore struct {
	*postgres.DB
	once      sync.Once
	arrived   chan struct{} // closed when the first CompleteSync is reached
	gate      chan struct{} // the first CompleteSync waits for it
	completes atomic.Int32  // CompleteSync attempts
	fails     atomic.Int32  // FailSync attempts
}

func newGatedStore(db *postgres.DB) *gatedStore {
	return &gatedStore{DB: db, arrived: make(chan struct{}), gate: make(chan struct{})}
}

func (g *gatedStore) CompleteSync(ctx context.Context, l tokka.Lease, r tokka.SyncResult) error {
	g.once.Do(func() {
		close(g.arrived)
		<-g.gate
	})
	g.completes.Add(1)
	return g.DB.CompleteSync(ctx, l, r)
}

func (g *gatedStore) FailSync(ctx context.Context, l tokka.Lease, status tokka.ConnectionStatus, reason string, next time.Time, ev tokka.AuditEvent) error {
	g.fails.Add(1)
	return g.DB.FailSync(ctx, l, status, reason, next, ev)
}

// leaseOwner is a connection's lease_owner, nil when nobody holds it.
func (b *testBundle) leaseOwner(t *testing.T, id string) *string {
	t.Helper()
	var owner *string
	require.NoError(t, b.sql.Get(&owner, `SELECT lease_owner FROM tokka.connections WHERE id = $1`, id))
	return owner
}

// runOnceInBackground runs s.RunOnce and returns its result channel.
func runOnceInBackground(s *syncer.Syncer) <-chan syncer.Summary {
	out := make(chan syncer.Summary, 1)
	go func() {
		sum, _ := s.RunOnce(context.Background())
		out <- sum
	}()
	return out
}

// TestShortOutageDuringTheFinalWriteIsRetriedWithinTheLease: the database
// goes away just as a sync that has fetched its data writes it; the write
// is retried while the lease holds, and when the database is back the sync
// completes: active, exact totals, no lease left.
func TestShortOutageDuringTheFinalWriteIsRetriedWithinTheLease(t *testing.T) {
	t.Parallel()
	pg := pgtest.StartServer(t)
	c := newTestClock(time.Now())
	b := setup(t, clockedBy(c), onDatabase(pg.URL()))
	user := uuid.NewString()
	key := "sk-ant-admin01-" + user[:8] + "-shortoutage"
	id := b.addConnection(t, user, tokka.Anthropic, key)
	store := newGatedStore(b.db)
	done := runOnceInBackground(b.clockedSyncer(syncer.Config{Instance: "short", BackfillDays: 7}, store))

	<-store.arrived
	pg.Stop()
	close(store.gate)
	require.Eventually(t, func() bool { return store.completes.Load() >= 2 }, time.Minute, 10*time.Millisecond,
		"the write is tried again while the lease is held")
	pg.Start()
	require.Equal(t, syncer.Summary{Synced: 1}, <-done)

	st, reason := b.status(t, id)
	require.Equal(t, "active", st, reason)
	require.Nil(t, b.leaseOwner(t, id))
	require.Equal(t, []string{"key.created:success", "key.decrypted:success", "sync.succeeded:success"}, b.actions(t, id))
	w := tokka.DayWindow(c.now(), 7)
	b.requireStoresWhatIsServed(t, id, tokka.Anthropic, key, w)
}

// TestOutageLongerThanTheLeaseRecordsTheFailure: the database stays away
// for longer than the lease while a sync writes its results. The syncer
// stops retrying the write when the lease runs out, then records the
// failure once the database is back: the lease released (nothing stranded
// for a takeover to find), status error with a reason, a sync.failed event,
// nothing half-written; and the next sync stores exact totals.
func TestOutageLongerThanTheLeaseRecordsTheFailure(t *testing.T) {
	t.Parallel()
	pg := pgtest.StartServer(t)
	c := newTestClock(time.Now())
	b := setup(t, clockedBy(c), onDatabase(pg.URL()))
	user := uuid.NewString()
	key := "sk-admin-" + user[:8] + "-longoutage"
	id := b.addConnection(t, user, tokka.OpenAI, key)
	store := newGatedStore(b.db)
	cfg := syncer.Config{Instance: "long", BackfillDays: 7, LeaseFor: 2 * time.Second}
	done := runOnceInBackground(b.clockedSyncer(cfg, store))

	<-store.arrived
	pg.Stop()
	close(store.gate)
	require.Eventually(t, func() bool { return store.fails.Load() >= 1 }, time.Minute, 10*time.Millisecond,
		"once the lease has run out, the syncer turns to recording the failure")
	pg.Start()
	require.Equal(t, syncer.Summary{Failed: 1}, <-done)

	st, reason := b.status(t, id)
	require.Equal(t, "error", st)
	require.Contains(t, reason, "could not be stored")
	require.Nil(t, b.leaseOwner(t, id), "no lease is left for a takeover to find")
	require.Equal(t, []string{"key.created:success", "key.decrypted:success", "sync.failed:failure"}, b.actions(t, id))
	require.Zero(t, b.usageRowCount(t, id))

	b.syncDueNow(t, id)
	sum, err := b.clockedSyncer(cfg, b.db).RunOnce(context.Background())
	require.NoError(t, err)
	require.Equal(t, syncer.Summary{Synced: 1}, sum)
	st, reason = b.status(t, id)
	require.Equal(t, "active", st, reason)
	require.Nil(t, b.leaseOwner(t, id))
	w := tokka.DayWindow(c.now(), 7)
	b.requireStoresWhatIsServed(t, id, tokka.OpenAI, key, w)
}

// TestDaemonSurvivesADatabaseStopDuringSyncs stops the database while the
// daemon has syncs in flight (the provider is slow enough that they are)
// and starts it again: every connection ends active with exact totals, no
// lease is left, and the log says the database was unavailable a bounded
// number of times, not once per attempt.
func TestDaemonSurvivesADatabaseStopDuringSyncs(t *testing.T) {
	t.Parallel()
	pg := pgtest.StartServer(t)
	c := newTestClock(time.Now())
	b := setup(t, clockedBy(c), onDatabase(pg.URL()), fakeWith(fakeprovider.Options{Latency: 20 * time.Millisecond}))
	user := uuid.NewString()
	keys := map[string]string{}
	for i := range 6 {
		p := tokka.OpenAI
		k := "sk-admin-" + user[:8] + "-daemon" + string(rune('a'+i))
		if i%2 == 1 {
			p, k = tokka.Anthropic, "sk-ant-admin01-"+user[:8]+"-daemon"+string(rune('a'+i))
		}
		keys[b.addConnection(t, user, p, k)] = k
	}
	s := b.clockedSyncer(syncer.Config{Instance: "daemon", Concurrency: 3, BackfillDays: 30,
		FailureLogEvery: time.Hour}, b.db)
	// A short poll, as in production (5s): a lease attempt that met the
	// stopped database is simply made again.
	wake := runDaemon(t, s, 100*time.Millisecond)
	notify(wake)
	inFlight := func() bool {
		var n int
		require.NoError(t, b.sql.Get(&n, `SELECT count(*) FROM tokka.connections WHERE lease_owner IS NOT NULL`))
		return n > 0
	}
	require.Eventually(t, inFlight, time.Minute, 5*time.Millisecond)
	seen := len(strings.Split(b.logs.String(), "\n"))
	pg.Stop()
	require.Eventually(t, func() bool { return strings.Contains(b.logs.String(), "database unavailable") },
		time.Minute, 10*time.Millisecond, "the daemon meets the stopped database")
	pg.Start()
	for id := range keys {
		require.Eventually(t, func() bool {
			st, _ := b.status(t, id)
			if st == "error" {
				// Failed during the stop: due again after its backoff; ask now.
				b.syncDueNow(t, id)
			}
			return st == "active"
		}, 2*time.Minute, 20*time.Millisecond)
	}
	require.Eventually(t, func() bool { return !inFlight() }, time.Minute, 10*time.Millisecond)
	for id, k := range keys {
		p := tokka.OpenAI
		if strings.HasPrefix(k, "sk-ant") {
			p = tokka.Anthropic
		}
		b.requireStoresWhatIsServed(t, id, p, k, tokka.DayWindow(c.now(), 30))
	}
	var failures []string
	for _, l := range strings.Split(b.logs.String(), "\n")[seen:] {
		if strings.Contains(l, `"level":"error"`) || strings.Contains(l, `"level":"warn"`) {
			failures = append(failures, l)
		}
	}
	// At most one line per kind of failure (FailureLogEvery is an hour) and
	// a final word per sync cut short, however many attempts were made.
	require.LessOrEqual(t, len(failures), 16, "bounded, not one line per attempt:\n%s", strings.Join(failures, "\n"))
}

// orgDownStore answers every attempt to record a first sync's organisation
// as an unavailable database would.
type orgDownStore struct {
	*postgres.DB
	records atomic.Int32
}

func (o *orgDownStore) RecordOrganization(context.Context, tokka.Lease, tokka.Organization, tokka.AuditEvent) (string, error) {
	o.records.Add(1)
	return "", tokka.ErrUnavailable
}

// TestOutageWhileRecordingTheOrganisationReleasesTheLease: a first sync
// whose organisation cannot be recorded (the database is away at that
// moment) retries briefly, then records the failure and gives the lease
// back, like a failed final write: nothing is stored, and no lease is left
// to expire.
func TestOutageWhileRecordingTheOrganisationReleasesTheLease(t *testing.T) {
	t.Parallel()
	c := newTestClock(time.Now())
	b := setup(t, clockedBy(c))
	user := uuid.NewString()
	id := b.addConnection(t, user, tokka.Anthropic, "sk-ant-admin01-"+user[:8]+"-orgdown")
	store := &orgDownStore{DB: b.db}
	sum, err := b.clockedSyncer(syncer.Config{Instance: "orgdown", BackfillDays: 7}, store).RunOnce(context.Background())
	require.NoError(t, err)
	require.Equal(t, syncer.Summary{Failed: 1}, sum)
	require.Greater(t, store.records.Load(), int32(1), "a blip is retried")
	st, reason := b.status(t, id)
	require.Equal(t, "error", st)
	require.Contains(t, reason, "could not be stored")
	require.Nil(t, b.leaseOwner(t, id), "the lease is given back, not left to expire")
	require.Equal(t, []string{"key.created:success", "key.decrypted:success", "sync.failed:failure"}, b.actions(t, id))
	require.Zero(t, b.usageRowCount(t, id))
}
