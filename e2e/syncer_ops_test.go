package e2e

import (
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/fakeprovider"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

type dayModel struct{ day, provider, model string }

type sums struct {
	input, output int64
	cost          decimal.Decimal
}

// expectedUsage computes, from the fake provider's own data functions (not
// through HTTP), what the API must report per day, provider and model for
// these keys ("openai" and/or "anthropic") over w.
func expectedUsage(keys map[string]string, w tokka.Window) map[dayModel]sums {
	want := map[dayModel]sums{}
	add := func(k dayModel, in, out int64, cost decimal.Decimal) {
		v := want[k]
		v.input += in
		v.output += out
		v.cost = v.cost.Add(cost)
		want[k] = v
	}
	for d := w.From; d.Before(w.To); d = d.AddDate(0, 0, 1) {
		day := d.Format(time.DateOnly)
		if key, ok := keys["openai"]; ok {
			for _, r := range fakeprovider.OpenAIDay(key, d) {
				add(dayModel{day, "openai", r.Model}, r.InputTokens, r.OutputTokens, decimal.Zero)
				for _, c := range r.Costs {
					// The cost line "<model>, input" is attributed to its model.
					add(dayModel{day, "openai", strings.SplitN(c.LineItem, ", ", 2)[0]}, 0, 0, c.Amount)
				}
			}
		}
		if key, ok := keys["anthropic"]; ok {
			for _, r := range fakeprovider.AnthropicDay(key, d) {
				add(dayModel{day, "anthropic", r.Model},
					r.UncachedInputTokens+r.CacheReadInputTokens+r.CacheCreation5mTokens+r.CacheCreation1hTokens, r.OutputTokens, decimal.Zero)
				for _, c := range r.Costs {
					add(dayModel{day, "anthropic", c.Model}, 0, 0, c.AmountCents.Div(decimal.NewFromInt(100)))
				}
			}
		}
	}
	return want
}

// requireUsageMatchesFake checks the API's usage by day, provider and model
// over w equals the fake's data for keys exactly (no row missing, none
// extra, none doubled) and returns the total cost.
func (s *stack) requireUsageMatchesFake(t *testing.T, u user, keys map[string]string, w tokka.Window) decimal.Decimal {
	t.Helper()
	want := expectedUsage(keys, w)
	var usage struct {
		Data []struct {
			Day, Provider, Model string
			InputTokens          int64  `json:"input_tokens"`
			OutputTokens         int64  `json:"output_tokens"`
			CostUSD              string `json:"cost_usd"`
		}
	}
	// include_zero: the fake's data has groups whose every figure is zero,
	// which the API leaves out by default; this compares every group.
	q := "/v1/usage?limit=5000&include_zero=true&from=" + w.From.Format(time.DateOnly) + "&to=" + w.To.AddDate(0, 0, -1).Format(time.DateOnly) + "&group_by=day,provider,model"
	require.Equal(t, http.StatusOK, s.call(t, u, http.MethodGet, q, nil, &usage))
	got := map[dayModel]sums{}
	for _, r := range usage.Data {
		got[dayModel{r.Day, r.Provider, r.Model}] = sums{r.InputTokens, r.OutputTokens, decimal.RequireFromString(r.CostUSD)}
	}
	require.Len(t, got, len(want))
	var total decimal.Decimal
	for k, v := range want {
		g, ok := got[k]
		require.True(t, ok, "missing row %v", k)
		require.Equal(t, v.input, g.input, "%v", k)
		require.Equal(t, v.output, g.output, "%v", k)
		require.True(t, v.cost.Equal(g.cost), "%v cost: want %s got %s", k, v.cost, g.cost)
		total = total.Add(v.cost)
	}
	return total
}

// syncerOnce starts `syncer once` with extra environment.
func (s *stack) syncerOnce(t *testing.T, extra ...string) *proc {
	t.Helper()
	return start(t, append(s.syncerEnv(s.encryptionKey), extra...), s.bin+"/syncer", "once")
}

func (s *stack) db(t *testing.T) *sqlx.DB {
	t.Helper()
	db, err := sqlx.Open("postgres", s.dbURL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// waitFor polls cond every 50ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		require.True(t, time.Now().Before(deadline), "timed out waiting for %s", what)
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *stack) addConnections(t *testing.T, u user, keys map[string]string) map[string]string {
	t.Helper()
	ids := map[string]string{}
	for p, k := range keys {
		var c connection
		require.Equal(t, http.StatusCreated, s.call(t, u, http.MethodPost, "/v1/connections",
			map[string]string{"provider": p, "api_key": k}, &c))
		ids[p] = c.ID
	}
	return ids
}

// waitLeasesExpired waits until no connection of userID holds a lease the
// database still counts as live (a dead syncer's, which the next syncer may
// then take over).
func waitLeasesExpired(t *testing.T, db *sqlx.DB, userID string) {
	t.Helper()
	waitFor(t, 30*time.Second, "the dead syncer's leases to expire", func() bool {
		return count(t, db, `SELECT count(*) FROM tokka.connections WHERE team_id = $1 AND lease_expires_at >= now()`, userID) == 0
	})
}

func count(t *testing.T, db *sqlx.DB, query string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, db.Get(&n, query, args...))
	return n
}

// A new connection is picked up within seconds through LISTEN/NOTIFY, even
// when the daemon would otherwise only poll once an hour.
func TestNewConnectionWakesTheDaemon(t *testing.T) {
	t.Parallel()
	s := startStackWith(t, stackOptions{noSyncer: true})
	d := start(t, append(s.syncerEnv(s.encryptionKey), "SYNC_POLL_INTERVAL=1h"), s.bin+"/syncer", "run")
	waitFor(t, 10*time.Second, "the daemon to start", func() bool { return strings.Contains(d.out.String(), "syncer running") })
	time.Sleep(300 * time.Millisecond) // let its immediate first pass (with nothing due) end
	alice := s.newUser(t)
	ids := s.addConnections(t, alice, map[string]string{"openai": "sk-admin-e2eWAKE" + randomHex(8)})
	db := s.db(t)
	waitFor(t, 10*time.Second, "the new connection to be synced", func() bool {
		return count(t, db, `SELECT count(*) FROM tokka.connections WHERE id = $1 AND status = 'active'`, ids["openai"]) == 1
	})
}

// A syncer killed with SIGKILL in the middle of a sync (between provider
// pages, and inside the transaction between deleting a window's rows and
// inserting the new ones) leaves nothing lost or doubled: after another
// syncer takes over the expired lease, every day is exactly right.
func TestSIGKILLedSyncerLosesNothing(t *testing.T) {
	t.Parallel()
	s := startStackWith(t, stackOptions{noSyncer: true, fakeLatency: "150ms"})
	alice := s.newUser(t)
	keys := map[string]string{
		"openai":    "sk-admin-e2eCRASH" + randomHex(8),
		"anthropic": "sk-ant-admin01-e2eCRASH" + randomHex(8),
	}
	ids := s.addConnections(t, alice, keys)
	db := s.db(t)
	lease := []string{"SYNC_LEASE_DURATION=2s"}
	decrypted := func() int {
		return count(t, db, `SELECT count(*) FROM tokka.audit_events WHERE action = 'key.decrypted' AND team_id = $1`, alice.id)
	}

	// 1. Killed between pages of the first backfill.
	p := s.syncerOnce(t, lease...)
	waitFor(t, 20*time.Second, "the first sync to start", func() bool { return decrypted() >= 2 })
	time.Sleep(400 * time.Millisecond) // a few 150ms pages into the backfill
	require.NoError(t, p.cmd.Process.Kill())
	p.wait(t, 10*time.Second)
	require.Zero(t, count(t, db, `SELECT count(*) FROM tokka.connections WHERE team_id = $1 AND status = 'active'`, alice.id))

	waitLeasesExpired(t, db, alice.id)
	require.Equal(t, 0, s.syncerOnce(t, lease...).wait(t, 5*time.Minute))
	w := tokka.DayWindow(time.Now(), 90)
	s.requireUsageMatchesFake(t, alice, keys, w)
	require.Equal(t, 2, count(t, db, `SELECT count(*) FROM tokka.connections WHERE team_id = $1 AND status = 'active'`, alice.id))

	// 2. Killed inside the write transaction, after the old window's usage
	// rows were deleted and before the new ones went in: a test transaction
	// holds a lock that stops the syncer at DELETE FROM cost_daily.
	_, err := db.Exec(`UPDATE tokka.connections SET next_sync_at = now() WHERE team_id = $1`, alice.id)
	require.NoError(t, err)
	lockTx, err := db.Beginx()
	require.NoError(t, err)
	defer lockTx.Rollback() //nolint:errcheck
	_, err = lockTx.Exec(`LOCK TABLE tokka.cost_daily IN SHARE MODE`)
	require.NoError(t, err)
	p = s.syncerOnce(t, lease...)
	waitFor(t, 30*time.Second, "the syncer to block between delete and insert", func() bool {
		return count(t, db, `SELECT count(*) FROM pg_stat_activity
			WHERE wait_event_type = 'Lock' AND query LIKE '%DELETE FROM tokka.cost_daily%'`) > 0
	})
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	p.wait(t, 10*time.Second)
	require.NoError(t, lockTx.Rollback())
	// The killed transaction rolled back: every day is still there.
	s.requireUsageMatchesFake(t, alice, keys, w)

	waitLeasesExpired(t, db, alice.id)
	require.Equal(t, 0, s.syncerOnce(t, lease...).wait(t, 5*time.Minute))
	s.requireUsageMatchesFake(t, alice, keys, w)
	for _, id := range ids {
		// Exactly one successful sync per round: the backfill and the re-sync.
		require.Equal(t, 2, count(t, db, `SELECT count(*) FROM tokka.audit_events WHERE connection_id = $1 AND action = 'sync.succeeded'`, id))
	}
}

// Three syncers started together on the same due set sync each connection
// exactly once: one key.decrypted and one sync.succeeded per connection, and
// the stored figures are exact (nothing doubled).
func TestThreeSyncersSyncEachConnectionOnce(t *testing.T) {
	t.Parallel()
	s := startStackWith(t, stackOptions{noSyncer: true, fakeLatency: "20ms"})
	users := []user{s.newUser(t), s.newUser(t), s.newUser(t)}
	keys := make([]map[string]string, len(users))
	for i, u := range users {
		keys[i] = map[string]string{
			"openai":    "sk-admin-e2eREPLICA" + randomHex(8),
			"anthropic": "sk-ant-admin01-e2eREPLICA" + randomHex(8),
		}
		s.addConnections(t, u, keys[i])
	}
	var procs []*proc
	for i := 0; i < 3; i++ {
		procs = append(procs, s.syncerOnce(t, "SYNC_CONCURRENCY=2", "SYNCER_INSTANCE=replica-"+string(rune('a'+i))))
	}
	for _, p := range procs {
		require.Equal(t, 0, p.wait(t, 5*time.Minute))
	}
	db := s.db(t)
	var perConn []struct {
		Decrypted int `db:"decrypted"`
		Succeeded int `db:"succeeded"`
	}
	require.NoError(t, db.Select(&perConn, `
		SELECT count(*) FILTER (WHERE action = 'key.decrypted') AS decrypted,
		       count(*) FILTER (WHERE action = 'sync.succeeded') AS succeeded
		FROM tokka.audit_events WHERE connection_id IS NOT NULL GROUP BY connection_id`))
	require.Len(t, perConn, 6)
	for _, c := range perConn {
		require.Equal(t, 1, c.Decrypted)
		require.Equal(t, 1, c.Succeeded)
	}
	w := tokka.DayWindow(time.Now(), 90)
	for i, u := range users {
		s.requireUsageMatchesFake(t, u, keys[i], w)
	}
}

// On SIGTERM the daemon stops leasing, lets its syncs finish or give their
// leases back within the grace period, and exits 0; nothing stays leased.
func TestSIGTERMDrainsAndExitsZero(t *testing.T) {
	t.Parallel()
	s := startStackWith(t, stackOptions{noSyncer: true, fakeLatency: "200ms"})
	alice := s.newUser(t)
	keys := map[string]string{
		"openai":    "sk-admin-e2eTERM" + randomHex(8),
		"anthropic": "sk-ant-admin01-e2eTERM" + randomHex(8),
	}
	s.addConnections(t, alice, keys)
	db := s.db(t)
	d := start(t, append(s.syncerEnv(s.encryptionKey), "SYNC_SHUTDOWN_GRACE=2s"), s.bin+"/syncer", "run")
	waitFor(t, 20*time.Second, "a sync to start", func() bool {
		return count(t, db, `SELECT count(*) FROM tokka.audit_events WHERE action = 'key.decrypted' AND team_id = $1`, alice.id) > 0
	})
	require.NoError(t, d.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, d.wait(t, 30*time.Second), d.out.String())
	require.Contains(t, d.out.String(), "stopped")
	require.Zero(t, count(t, db, `SELECT count(*) FROM tokka.connections WHERE lease_owner IS NOT NULL`),
		"every lease was completed or given back")

	// Whatever was interrupted is synced by the next syncer, exactly.
	require.Equal(t, 0, s.syncerOnce(t).wait(t, 5*time.Minute))
	s.requireUsageMatchesFake(t, alice, keys, tokka.DayWindow(time.Now(), 90))
}
