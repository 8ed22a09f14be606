package syncer_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/provider"
	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/syncer"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// switchedClient fails every call while down is set, as a provider that
// cannot be reached does (asking to wait retryAfter, when set).
type switchedClient struct {
	provider.Client
	name       tokka.Provider
	down       *atomic.Bool
	retryAfter *atomic.Int64 // nanoseconds
}

func (s switchedClient) err() error {
	return &provider.Error{Provider: s.name, Kind: provider.KindUnavailable,
		Reason: "the provider is temporarily unavailable", RetryAfter: time.Duration(s.retryAfter.Load())}
}

func (s switchedClient) Usage(ctx context.Context, key *secret.Key, w tokka.Window) ([]tokka.UsageRow, error) {
	if s.down.Load() {
		return nil, s.err()
	}
	return s.Client.Usage(ctx, key, w)
}

func (s switchedClient) Costs(ctx context.Context, key *secret.Key, w tokka.Window) ([]tokka.CostRow, error) {
	if s.down.Load() {
		return nil, s.err()
	}
	return s.Client.Costs(ctx, key, w)
}

// TestRetryBackoffGrowsWithConsecutiveFailures: a connection whose
// provider cannot be reached is tried again after each step of the backoff
// in turn (then the last step, again and again), a success starts the
// count afresh, and a provider that asks for a longer wait gets it. Each
// sync is made due by hand and the schedule read from next_sync_at, so
// nothing sleeps.
func TestRetryBackoffGrowsWithConsecutiveFailures(t *testing.T) {
	t.Parallel()
	c := newTestClock(time.Now())
	b := setup(t, clockedBy(c))
	var down atomic.Bool
	var retryAfter atomic.Int64
	down.Store(true)
	b.clients[tokka.OpenAI] = switchedClient{Client: b.clients[tokka.OpenAI], name: tokka.OpenAI, down: &down, retryAfter: &retryAfter}
	user := uuid.NewString()
	id := b.addConnection(t, user, tokka.OpenAI, "sk-admin-"+user[:8]+"-backoff")
	cfg := syncer.Config{Instance: "backoff", BackfillDays: 3,
		RetryBackoff: []time.Duration{time.Minute, 2 * time.Minute, 5 * time.Minute}}
	syncNow := func(want syncer.Summary) time.Duration {
		t.Helper()
		b.syncDueNow(t, id)
		sum, err := b.clockedSyncer(cfg, b.db).RunOnce(context.Background())
		require.NoError(t, err)
		require.Equal(t, want, sum)
		var next time.Time
		require.NoError(t, b.sql.Get(&next, `SELECT next_sync_at FROM tokka.connections WHERE id = $1`, id))
		return next.Sub(c.now())
	}
	// Each wait is its step plus at most 5% jitter.
	requireStep := func(step, got time.Duration, msg string) {
		t.Helper()
		require.GreaterOrEqual(t, got, step, msg)
		require.LessOrEqual(t, got, step+step/20, msg)
	}
	for i, step := range []time.Duration{time.Minute, 2 * time.Minute, 5 * time.Minute, 5 * time.Minute, 5 * time.Minute} {
		requireStep(step, syncNow(syncer.Summary{Failed: 1}), "failure "+string(rune('1'+i)))
		st, reason := b.status(t, id)
		require.Equal(t, "error", st)
		require.Contains(t, reason, "temporarily unavailable")
	}

	down.Store(false)
	requireStep(6*time.Hour, syncNow(syncer.Summary{Synced: 1}), "a success: the next sync after SYNC_INTERVAL")
	down.Store(true)
	requireStep(time.Minute, syncNow(syncer.Summary{Failed: 1}), "the first failure after a success")
	retryAfter.Store(int64(time.Hour))
	requireStep(time.Hour, syncNow(syncer.Summary{Failed: 1}), "the provider asked to wait an hour")
}
