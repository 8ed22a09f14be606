package httpapi_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/httpapi"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// A day-long window keeps a test from straddling a window boundary.
const testWindow = 24 * time.Hour

// replicas starts two api instances on the same database (the package's),
// as two replicas behind a load balancer, reached from one loopback
// address of the test's own.
func replicas(t *testing.T, cfg httpapi.Config) (*testBundle, *testBundle) {
	t.Helper()
	ip := uniqueLoopback()
	return setup(t, configured(cfg), fromIP(ip)), setup(t, configured(cfg), fromIP(ip))
}

func create(t *testing.T, b *testBundle, u user, hdr ...string) (int, http.Header) {
	t.Helper()
	status, h, _ := b.do(t, u, http.MethodPost, "/v1/connections", newConnBody(uniqueKey("sk-admin-ratelimit")), hdr...)
	return status, h
}

func TestUserLimitHoldsAcrossReplicas(t *testing.T) {
	t.Parallel()
	a, b := replicas(t, httpapi.Config{RateLimits: httpapi.RateLimits{PerUser: 3, PerIP: 1000, Window: testWindow}})
	alice := a.newUser(t)
	for i, api := range []*testBundle{a, b, a} {
		status, h := create(t, api, alice)
		require.Equal(t, http.StatusCreated, status, i)
		require.Equal(t, "3", h.Get("RateLimit-Limit"))
		require.Equal(t, strconv.Itoa(2-i), h.Get("RateLimit-Remaining"))
		reset, err := strconv.Atoi(h.Get("RateLimit-Reset"))
		require.NoError(t, err)
		require.Positive(t, reset)
		require.LessOrEqual(t, reset, int(testWindow.Seconds()))
		require.Empty(t, h.Get("Retry-After"))
	}
	for _, api := range []*testBundle{b, a} {
		status, h, body := api.do(t, alice, http.MethodPost, "/v1/connections", newConnBody("sk-admin-ratelimit0123456789abcdef"))
		requireProblem(t, status, h, body, http.StatusTooManyRequests, "over the limit on either replica")
		retry, err := strconv.Atoi(h.Get("Retry-After"))
		require.NoError(t, err)
		require.Positive(t, retry)
		require.Equal(t, h.Get("RateLimit-Reset"), h.Get("Retry-After"))
		require.Equal(t, "0", h.Get("RateLimit-Remaining"))
	}
	// Every mutation counts, whatever its route; reads do not.
	status, _, _ := b.do(t, alice, http.MethodDelete, "/v1/connections/"+uuid.NewString(), nil)
	require.Equal(t, http.StatusTooManyRequests, status)
	status, h, _ := a.do(t, alice, http.MethodGet, "/v1/connections", nil)
	require.Equal(t, http.StatusOK, status)
	require.Empty(t, h.Get("RateLimit-Limit"))
	require.Equal(t, 3, a.countConnections(t, alice.id))

	// Another user has a budget of their own.
	bob := a.newUser(t)
	status, _ = create(t, b, bob)
	require.Equal(t, http.StatusCreated, status)
}

// TestIPLimitUsesTrustedProxiesOnly: behind a trusted proxy the client IP is
// the right-most untrusted X-Forwarded-For entry, so addresses a client
// prepends itself change nothing; IPv6 clients are counted per /64.
func TestIPLimitUsesTrustedProxiesOnly(t *testing.T) {
	t.Parallel()
	_, loopback, _ := net.ParseCIDR("127.0.0.0/8")
	a, b := replicas(t, httpapi.Config{TrustedProxies: []*net.IPNet{loopback},
		RateLimits: httpapi.RateLimits{PerUser: 1000, PerIP: 3, Window: testWindow}})
	client := "203.0.113." + strconv.Itoa(1+int(time.Now().UnixNano()%200))
	for i, api := range []*testBundle{a, b, a} {
		status, _ := create(t, api, api.newUser(t), "X-Forwarded-For", client)
		require.Equal(t, http.StatusCreated, status, i)
	}
	// New users, same client: refused, however the client dresses it up.
	for _, xff := range []string{client, "198.51.100.7, " + client, "10.0.0.1, 198.51.100.7, " + client, "garbage, " + client} {
		status, _ := create(t, b, b.newUser(t), "X-Forwarded-For", xff)
		require.Equal(t, http.StatusTooManyRequests, status, xff)
	}
	// Two X-Forwarded-For headers are one list.
	status, _ := create(t, a, a.newUser(t), "X-Forwarded-For", "198.51.100.8", "X-Forwarded-For", client)
	require.Equal(t, http.StatusTooManyRequests, status)

	// Another client behind the same proxy has its own budget, and the audit
	// log records the real client address.
	other := "203.0.113.250"
	u := a.newUser(t)
	status, _ = create(t, a, u, "X-Forwarded-For", "192.0.2.1, "+other)
	require.Equal(t, http.StatusCreated, status)
	var ip string
	require.NoError(t, a.sql.Get(&ip, `SELECT client_ip FROM tokka.audit_events WHERE team_id = $1`, u.id))
	require.Equal(t, other, ip)

	// IPv6: one /64 is one client.
	prefix := "2001:db8:" + strconv.FormatInt(time.Now().UnixNano()%0xffff, 16)
	for i := 1; i <= 3; i++ {
		status, _ := create(t, a, a.newUser(t), "X-Forwarded-For", prefix+"::"+strconv.Itoa(i))
		require.Equal(t, http.StatusCreated, status)
	}
	status, _ = create(t, b, b.newUser(t), "X-Forwarded-For", prefix+"::dead:beef")
	require.Equal(t, http.StatusTooManyRequests, status, "same /64")
	status, _ = create(t, b, b.newUser(t), "X-Forwarded-For", prefix+":1::1")
	require.Equal(t, http.StatusCreated, status, "next /64")
}

// TestForgedForwardedForDoesNotEscapeTheLimit: with no trusted proxy the
// peer address is the client IP, whatever X-Forwarded-For says.
func TestForgedForwardedForDoesNotEscapeTheLimit(t *testing.T) {
	t.Parallel()
	a, b := replicas(t, httpapi.Config{RateLimits: httpapi.RateLimits{PerUser: 1000, PerIP: 3, Window: testWindow}})
	var users []user
	for i := 0; i < 6; i++ {
		api := []*testBundle{a, b}[i%2]
		u := api.newUser(t)
		users = append(users, u)
		status, _ := create(t, api, u, "X-Forwarded-For", "198.51.100."+strconv.Itoa(i+1), "X-Real-Ip", "198.51.100.99")
		if i < 3 {
			require.Equal(t, http.StatusCreated, status, i)
		} else {
			require.Equal(t, http.StatusTooManyRequests, status, "a forged X-Forwarded-For escaped the limit (request %d)", i)
		}
	}
	var ip string
	require.NoError(t, a.sql.Get(&ip, `SELECT client_ip FROM tokka.audit_events WHERE team_id = $1`, users[0].id))
	require.NotContains(t, ip, "198.51.100", "the audit log must record the peer, not a forged header")
	require.True(t, net.ParseIP(ip).IsLoopback(), ip)
}

type failingLimiter struct{}

func (failingLimiter) HitRateLimit(context.Context, tokka.User, string, tokka.RateLimit) (tokka.RateLimitResult, error) {
	return tokka.RateLimitResult{}, errors.New("connection refused")
}

func TestRateLimiterFailsClosed(t *testing.T) {
	t.Parallel()
	b := setup(t, configured(httpapi.Config{RateLimiter: failingLimiter{}}))
	alice := b.newUser(t)
	status, h, body := b.do(t, alice, http.MethodPost, "/v1/connections", newConnBody("sk-admin-failclosed0123456789ab"))
	requireProblem(t, status, h, body, http.StatusServiceUnavailable, "limiter down")
	require.NotContains(t, string(body), "connection refused")
	require.Zero(t, b.countConnections(t, alice.id))
	status, _, _ = b.do(t, alice, http.MethodGet, "/v1/connections", nil)
	require.Equal(t, http.StatusOK, status, "reads do not need the limiter")
}

// TestRateLimitStateIsPrivate checks the table and function in SQL as role
// authenticated: no direct access at all, the function counts only the
// caller's own user bucket (from the transaction's claims), validates its
// arguments, and is a SECURITY DEFINER with a fixed search_path.
func TestRateLimitStateIsPrivate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice, bob := b.newUser(t), b.newUser(t)
	asUser := func(u user, query string, args ...any) ([]map[string]any, error) {
		tx, err := b.sql.Beginx()
		require.NoError(t, err)
		defer tx.Rollback() //nolint:errcheck
		_, err = tx.Exec(`SELECT set_config('request.jwt.claims', $1, true), set_config('role', 'authenticated', true)`,
			`{"sub":"`+u.id+`","role":"authenticated"}`)
		require.NoError(t, err)
		rows, err := tx.Queryx(query, args...)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var out []map[string]any
		for rows.Next() {
			m := map[string]any{}
			require.NoError(t, rows.MapScan(m))
			out = append(out, m)
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
		return out, tx.Commit()
	}
	requireDenied := func(err error, what string) {
		t.Helper()
		var pqErr *pq.Error
		require.ErrorAs(t, err, &pqErr, what)
		require.Equal(t, "42501", string(pqErr.Code), what)
	}
	for _, q := range []string{
		`SELECT * FROM tokka.rate_limits`,
		`INSERT INTO tokka.rate_limits (bucket_key, window_start, hit_count) VALUES ('mutations:user:` + alice.id + `', now(), 0)`,
		`UPDATE tokka.rate_limits SET hit_count = 0`,
		`DELETE FROM tokka.rate_limits`,
		`TRUNCATE tokka.rate_limits`,
	} {
		_, err := asUser(bob, q)
		requireDenied(err, q)
	}

	rows, err := asUser(bob, `SELECT bucket, hits, max_hits, reset_seconds FROM tokka.rate_limit_hit('mutations', '192.0.2.10', 5, 7, 60)`)
	require.NoError(t, err)
	require.Len(t, rows, 2)
	require.Equal(t, "user", rows[0]["bucket"])
	require.EqualValues(t, 1, rows[0]["hits"])
	require.EqualValues(t, 5, rows[0]["max_hits"])
	require.Equal(t, "ip", rows[1]["bucket"])
	require.EqualValues(t, 7, rows[1]["max_hits"])
	var n int
	require.NoError(t, b.sql.Get(&n, `SELECT count(*) FROM tokka.rate_limits WHERE bucket_key = $1`, "mutations:user:"+bob.id))
	require.Equal(t, 1, n, "the user bucket is the claims' sub")
	require.NoError(t, b.sql.Get(&n, `SELECT count(*) FROM tokka.rate_limits WHERE bucket_key = $1`, "mutations:user:"+alice.id))
	require.Zero(t, n)

	for _, q := range []string{
		`SELECT * FROM tokka.rate_limit_hit('Bad Scope', NULL, 1, 1, 60)`,
		`SELECT * FROM tokka.rate_limit_hit('mutations', NULL, 0, 1, 60)`,
		`SELECT * FROM tokka.rate_limit_hit('mutations', NULL, 1, 1, 0)`,
		`SELECT * FROM tokka.rate_limit_hit('mutations', 'not an ip', 1, 1, 60)`,
	} {
		_, err := asUser(bob, q)
		require.Error(t, err, q)
	}

	var secdef bool
	var config []string
	require.NoError(t, b.sql.QueryRow(`SELECT prosecdef, proconfig FROM pg_proc WHERE oid = 'tokka.rate_limit_hit'::regproc`).
		Scan(&secdef, pq.Array(&config)))
	require.True(t, secdef)
	require.Contains(t, config, "search_path=pg_catalog, pg_temp")
	var public bool
	require.NoError(t, b.sql.Get(&public, `SELECT has_function_privilege('tokka_syncer', 'tokka.rate_limit_hit(text, inet, integer, integer, integer)', 'EXECUTE')`))
	require.False(t, public, "only role authenticated may call it")
}
