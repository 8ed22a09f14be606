package syncer_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/anthropic"
	"github.com/tokka-dev/tokka/pkg/fakeprovider"
	"github.com/tokka-dev/tokka/pkg/openai"
	"github.com/tokka-dev/tokka/pkg/provider"
	"github.com/tokka-dev/tokka/pkg/syncer"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// faultCase is one fake-provider fault mode and what a sync of a connection
// whose key carries it must end with.
type faultCase struct {
	marker   string
	provider tokka.Provider
	status   string // the connection's status after the sync
	reason   string // a part of its last_error ("" when active)
	// requests is how many usage and cost requests the sync makes, given
	// what a normal one makes; the organisation request comes on top.
	requests func(normal int) int
}

// orgRequests is what learning a new key's organisation costs at its first
// sync: one page of OpenAI projects, or Anthropic's organizations/me. The
// fake's fault markers other than the key checks do not apply to it.
const orgRequests = 1

// normalRequests is what one 90-day sync costs in usage and cost requests: 3
// pages per usage family and 1 cost page for OpenAI, 3 + 3 pages for
// Anthropic.
func normalRequests(p tokka.Provider) int {
	if p == tokka.OpenAI {
		return 3*len(openai.Families()) + 1
	}
	return 6
}

// directoryRequests is what reading key's directory costs after a
// successful data sync: OpenAI's projects (one page), each project's keys
// and the admin keys; Anthropic's workspaces and API keys.
func directoryRequests(p tokka.Provider, key string) int {
	if p == tokka.OpenAI {
		return 1 + len(fakeprovider.OpenAIProjects(key)) + 1
	}
	return 2
}

func faultCases() []faultCase {
	twice := func(n int) int { return 2 * n }
	same := func(n int) int { return n }
	exactly := func(k int) func(int) int { return func(int) int { return k } }
	var cases []faultCase
	for _, p := range []tokka.Provider{tokka.OpenAI, tokka.Anthropic} {
		usage := "(usage/completions)"
		maxPages := openai.DefaultMaxPages
		if p == tokka.Anthropic {
			usage, maxPages = "(usage_report/messages)", anthropic.DefaultMaxPages
		}
		cases = append(cases,
			// Transient failures: retried, and the sync succeeds with exact data.
			faultCase{"flaky", p, "active", "", twice},       // 500 then success
			faultCase{"ratelimited", p, "active", "", twice}, // 429 + Retry-After: 1
			faultCase{"throttled", p, "active", "", twice},   // 429 without Retry-After: backoff
			faultCase{"retryms", p, "active", "", twice},     // 429 + retry-after-ms
			faultCase{"overloaded", p, "active", "", twice},  // 529 (Anthropic), 503 (OpenAI)
			// Persistent failures: bounded work, status and a clear reason.
			faultCase{"outage", p, "error", "temporarily unavailable", exactly(1 + provider.DefaultMaxRetries)},
			faultCase{"cooldown", p, "error", "asked to wait 1h0m0s", exactly(1)},
			faultCase{"malformed", p, "error", "not the expected JSON " + usage, exactly(1)},
			faultCase{"negative", p, "error", "negative count " + usage, exactly(1)},
			faultCase{"absurd", p, "error", "implausibly large count " + usage, exactly(1)},
			faultCase{"endless", p, "error", "kept paging past 100 pages " + usage, exactly(maxPages)},
			faultCase{"pageloop", p, "error", "same page cursor twice " + usage, exactly(2)},
			faultCase{"oversize", p, "error", "larger than", exactly(1)},
			// 401 echoing the key, already at the organisation request.
			faultCase{"revoked", p, "invalid", "rejected the key", exactly(0)},
		)
	}
	return append(cases, faultCase{"strings", tokka.OpenAI, "active", "", same}) // amount.value as strings
}

func faultKey(p tokka.Provider, user, marker string) string {
	if p == tokka.OpenAI {
		return "sk-admin-" + user[:8] + "-" + marker + "-FAULTCANARY"
	}
	return "sk-ant-admin01-" + user[:8] + "-" + marker + "-FAULTCANARY"
}

// TestEveryFaultModeEndsCorrectlyBesideHealthyConnections runs one
// connection per fault mode and per provider in the same pass as two
// healthy connections. Transient faults are retried to an exact result;
// persistent ones end in status error (or invalid for a rejected key) with
// a user-facing, key-free reason after bounded work; the healthy
// connections store exactly what the provider serves either way.
func TestEveryFaultModeEndsCorrectlyBesideHealthyConnections(t *testing.T) {
	t.Parallel()
	c := newTestClock(time.Now())
	b := setup(t, clockedBy(c))
	user := uuid.NewString()
	cases := faultCases()
	ids := make([]string, len(cases))
	for i, tc := range cases {
		ids[i] = b.addConnection(t, user, tc.provider, faultKey(tc.provider, user, tc.marker))
	}
	healthy := map[tokka.Provider]string{
		tokka.OpenAI:    "sk-admin-" + user[:8] + "-healthy",
		tokka.Anthropic: "sk-ant-admin01-" + user[:8] + "-healthy",
	}
	healthyIDs := map[tokka.Provider]string{}
	for p, k := range healthy {
		healthyIDs[p] = b.addConnection(t, user, p, k)
	}

	total := len(cases) + len(healthy)
	c.restart()
	// The first retry waits half an hour, not the default minute (and still
	// less than the hour the "cooldown" provider asks for): the database
	// judges due times by its own clock, and on a loaded machine one pass
	// over every fault mode can outlast a minute, which would retry a
	// failed connection inside the same pass and blur the exact request
	// counts below.
	backoff := []time.Duration{30 * time.Minute}
	sum, err := b.clockedSyncer(syncer.Config{Instance: "faults", Concurrency: total, RetryBackoff: backoff}, b.db).RunOnce(context.Background())
	require.NoError(t, err)
	w := tokka.DayWindow(c.now(), 90)
	epoch0 := unrevised

	active := 0
	for i, tc := range cases {
		t.Run(string(tc.provider)+"/"+tc.marker, func(t *testing.T) {
			key := faultKey(tc.provider, user, tc.marker)
			st, reason := b.status(t, ids[i])
			require.Equal(t, tc.status, st, "reason: %s", reason)
			want := orgRequests + tc.requests(normalRequests(tc.provider))
			if tc.status == "active" {
				want += directoryRequests(tc.provider, key)
			}
			require.Equal(t, want, b.fake.Requests(key), "requests")
			audit := b.actions(t, ids[i])
			if tc.status == "active" {
				require.Empty(t, reason)
				require.Equal(t, []string{"key.created:success", "key.decrypted:success", "sync.succeeded:success"}, audit)
				requireStoredEqualsServed(t, servedTotals(tc.provider, key, w, epoch0), b.storedTotals(t, ids[i]), tc.marker)
				return
			}
			require.Contains(t, reason, tc.reason)
			require.Equal(t, []string{"key.created:success", "key.decrypted:success", "sync.failed:failure"}, audit)
			require.Zero(t, b.usageRowCount(t, ids[i]), "a failed sync stores nothing, not a partial picture")
			var costRows int
			require.NoError(t, b.sql.Get(&costRows, `SELECT count(*) FROM tokka.cost_daily WHERE connection_id = $1`, ids[i]))
			require.Zero(t, costRows)
			var next time.Time
			require.NoError(t, b.sql.Get(&next, `SELECT next_sync_at FROM tokka.connections WHERE id = $1`, ids[i]))
			// Not at once: after the first step of the retry backoff, what
			// the provider asked for (cooldown: an hour), or SYNC_INTERVAL
			// for a rejected key.
			wait := backoff[0]
			switch tc.marker {
			case "cooldown":
				wait = time.Hour
			case "revoked":
				wait = 6 * time.Hour
			}
			require.False(t, next.Before(c.now().Add(wait)), "a failed connection is retried after %s, not at once", wait)
			var detail string
			require.NoError(t, b.sql.Get(&detail, `SELECT string_agg(detail, ' ') FROM tokka.audit_events WHERE connection_id = $1`, ids[i]))
			require.Contains(t, detail, tc.reason, "the audit log says why")
		})
		if tc.status == "active" {
			active++
		}
	}
	require.Equal(t, syncer.Summary{Synced: active + len(healthy), Failed: len(cases) - active}, sum)

	for p, id := range healthyIDs {
		st, reason := b.status(t, id)
		require.Equal(t, "active", st, "%s: %s", p, reason)
		require.Equal(t, orgRequests+normalRequests(p)+directoryRequests(p, healthy[p]), b.fake.Requests(healthy[p]),
			"%s healthy connection needed no retries", p)
		requireStoredEqualsServed(t, servedTotals(p, healthy[p], w, epoch0), b.storedTotals(t, id), "healthy "+string(p))
	}

	// No key, nor any 8-character piece of one, in any reason, audit row or
	// log line; the -revoked keys were echoed back in full by the provider.
	var stored string
	require.NoError(t, b.sql.Get(&stored, `SELECT coalesce(string_agg(coalesce(last_error, ''), ' '), '') FROM tokka.connections`))
	var audit string
	require.NoError(t, b.sql.Get(&audit, `SELECT string_agg(detail || ' ' || purpose, ' ') FROM tokka.audit_events`))
	logs := b.logs.String()
	for _, s := range []string{stored, audit, logs} {
		require.NotContains(t, s, "FAULTCANARY")
		require.NotContains(t, s, user[:8])
		require.NotContains(t, s, "sk-admin-")
		require.NotContains(t, s, "sk-ant-admin01-")
	}
}

// TestSlowConnectionDelaysOnlyItself: a provider that never answers in time
// costs its connection its own retries (1 + DefaultMaxRetries attempts of
// one timeout each) and ends in status error, while the connections synced
// beside it finish first, with exact data. A one-week backfill keeps the
// healthy syncs far shorter than the slow one's four timeouts even on a
// loaded machine.
func TestSlowConnectionDelaysOnlyItself(t *testing.T) {
	t.Parallel()
	c := newTestClock(time.Now())
	const timeout = time.Second
	b := setup(t, clockedBy(c), fakeWith(fakeprovider.Options{SlowDelay: time.Minute}), httpWith(provider.HTTPClient{Timeout: timeout}))
	user := uuid.NewString()
	slowKey := "sk-admin-" + user[:8] + "-slow-SLOWCANARY"
	slowID := b.addConnection(t, user, tokka.OpenAI, slowKey)
	healthy := map[tokka.Provider]string{
		tokka.OpenAI:    "sk-admin-" + user[:8] + "-neighbour",
		tokka.Anthropic: "sk-ant-admin01-" + user[:8] + "-neighbour",
	}
	ids := map[tokka.Provider]string{}
	for p, k := range healthy {
		ids[p] = b.addConnection(t, user, p, k)
	}

	start := time.Now()
	sum, err := b.clockedSyncer(syncer.Config{Instance: "slow", Concurrency: 3, BackfillDays: 7}, b.db).RunOnce(context.Background())
	require.NoError(t, err)
	elapsed := time.Since(start)
	require.Equal(t, syncer.Summary{Synced: 2, Failed: 1}, sum)

	st, reason := b.status(t, slowID)
	require.Equal(t, "error", st)
	require.Contains(t, reason, "did not answer within 1s")
	require.NotContains(t, reason, "SLOWCANARY")
	// The organisation request is slow too: it is the one that times out.
	require.Equal(t, 1+provider.DefaultMaxRetries, b.fake.Requests(slowKey), "one attempt plus its retries, each cut at the timeout")
	require.GreaterOrEqual(t, elapsed, time.Duration(1+provider.DefaultMaxRetries)*timeout)
	require.Less(t, elapsed, 30*time.Second, "the fake's one-minute delay was never waited out")

	var failedAt time.Time
	require.NoError(t, b.sql.Get(&failedAt, `SELECT updated_at FROM tokka.connections WHERE id = $1`, slowID))
	w := tokka.DayWindow(c.now(), 7)
	for p, id := range ids {
		st, reason := b.status(t, id)
		require.Equal(t, "active", st, "%s: %s", p, reason)
		var syncedAt time.Time
		require.NoError(t, b.sql.Get(&syncedAt, `SELECT last_synced_at FROM tokka.connections WHERE id = $1`, id))
		require.True(t, syncedAt.Before(failedAt), "%s finished while the slow connection was still retrying", p)
		b.requireStoresWhatIsServed(t, id, p, healthy[p], w)
	}
	require.False(t, strings.Contains(b.logs.String(), "SLOWCANARY"))
}

// TestSlowConnectionHoldsOnlyItsOwnSlot: with more due connections than
// slots, syncer once leases the next connection as soon as any slot frees,
// so every healthy connection is synced while one slow connection is still
// in flight (a batch-at-a-time syncer would make them wait for it). The
// slow provider never answers during the test; the pass is then stopped.
func TestSlowConnectionHoldsOnlyItsOwnSlot(t *testing.T) {
	t.Parallel()
	c := newTestClock(time.Now())
	b := setup(t, clockedBy(c), fakeWith(fakeprovider.Options{SlowDelay: time.Hour}), httpWith(provider.HTTPClient{Timeout: 2 * time.Hour}))
	user := uuid.NewString()
	slowKey := "sk-ant-admin01-" + user[:8] + "-slow"
	slowID := b.addConnection(t, user, tokka.Anthropic, slowKey)
	var healthy []string
	for i := 0; i < 6; i++ {
		healthy = append(healthy, b.addConnection(t, user, tokka.Anthropic, "sk-ant-admin01-"+user[:8]+"-pool"+string(rune('a'+i))))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		sum syncer.Summary
		err error
	}
	done := make(chan result, 1)
	go func() {
		sum, err := b.clockedSyncer(syncer.Config{Instance: "pool", Concurrency: 2, BackfillDays: 3,
			ShutdownGrace: time.Millisecond}, b.db).RunOnce(ctx)
		done <- result{sum, err}
	}()
	// (The deadline only turns a hang into a failure; nothing is timed.)
	require.Eventually(t, func() bool {
		for _, id := range healthy {
			if st, _ := b.status(t, id); st != "active" {
				return false
			}
		}
		return true
	}, time.Minute, 10*time.Millisecond, "a healthy connection waited for the slow one's slot")
	st, _ := b.status(t, slowID)
	require.Equal(t, "pending", st, "the slow one is still in flight")
	require.Equal(t, 1, b.fake.Requests(slowKey))
	cancel()
	r := <-done
	require.NoError(t, r.err)
	require.Equal(t, syncer.Summary{Synced: 6, Skipped: 1}, r.sum, "the slow sync was stopped and gave its lease back")
	var owner *string
	require.NoError(t, b.sql.Get(&owner, `SELECT lease_owner FROM tokka.connections WHERE id = $1`, slowID))
	require.Nil(t, owner)
}

// TestSyncLongerThanALeaseKeepsIt: a sync that outlasts its lease renews it,
// so it completes (instead of losing the lease and starting over forever).
func TestSyncLongerThanALeaseKeepsIt(t *testing.T) {
	t.Parallel()
	c := newTestClock(time.Now())
	b := setup(t, clockedBy(c), fakeWith(fakeprovider.Options{Latency: 500 * time.Millisecond}))
	user := uuid.NewString()
	id := b.addConnection(t, user, tokka.Anthropic, "sk-ant-admin01-"+user[:8]+"-longsync")
	// Six pages of 500ms each against a 2s lease: renewed every 500ms, and
	// a lease that runs out in a stall of the busy test machine is renewed
	// still as nobody else took it; the 2s only keep a stall between the
	// last renewal and storing the results from losing it.
	sum, err := b.clockedSyncer(syncer.Config{Instance: "long", LeaseFor: 2 * time.Second, BackfillDays: 90}, b.db).RunOnce(context.Background())
	require.NoError(t, err)
	require.Equal(t, syncer.Summary{Synced: 1}, sum)
	st, _ := b.status(t, id)
	require.Equal(t, "active", st)
}
