package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/authtest"
	"github.com/tokka-dev/tokka/pkg/httpapi"
	"github.com/tokka-dev/tokka/pkg/logtest"
	"github.com/tokka-dev/tokka/pkg/pgtest"
)

// startServe runs serve with env on a free port and returns its address and
// its log output; the server stops when the test ends.
func startServe(t *testing.T, set map[string]string) (string, *logtest.Buffer) {
	t.Helper()
	env := baseEnv(t)
	env["DATABASE_URL"], env["API_ADDR"] = pgtest.URL(t), "127.0.0.1:0"
	// No test here is about shutdown: stop at once when it ends instead of
	// serving on for the default five seconds meant for load balancers.
	env["SHUTDOWN_READINESS_DELAY"] = "0"
	for k, v := range set {
		env[k] = v
	}
	cfg, err := loadConfig(envFrom(env), true)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan string, 1), make(chan error, 1)
	logs := &logtest.Buffer{}
	go func() { done <- serve(ctx, cfg, logs, ready) }()
	select {
	case addr := <-ready:
		t.Cleanup(func() {
			cancel()
			require.NoError(t, <-done)
		})
		return addr, logs
	case err := <-done:
		cancel()
		t.Fatalf("serve: %v\n%s", err, logs.String())
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("api did not start")
	}
	return "", nil
}

func getMe(t *testing.T, addr, token string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/v1/me", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

func TestConfigIssuerAnonymousAndReadBudgets(t *testing.T) {
	t.Parallel()
	load := func(set map[string]string) (Config, error) {
		env := baseEnv(t)
		for k, v := range set {
			env[k] = v
		}
		return loadConfig(envFrom(env), true)
	}
	c, err := load(map[string]string{"SUPABASE_URL": "https://ref.supabase.co/", "SUPABASE_ANON_KEY": "sb_publishable_x"})
	require.NoError(t, err)
	require.Equal(t, "https://ref.supabase.co/auth/v1", c.JWTIssuer, "SUPABASE_URL implies its Auth issuer")
	c, err = load(map[string]string{"SUPABASE_URL": "https://ref.supabase.co", "SUPABASE_ANON_KEY": "sb_publishable_x",
		"SUPABASE_JWT_ISSUER": "https://auth.example.com/auth/v1"})
	require.NoError(t, err)
	require.Equal(t, "https://auth.example.com/auth/v1", c.JWTIssuer, "SUPABASE_JWT_ISSUER says otherwise")
	c, err = load(map[string]string{"SUPABASE_AUTH_URL": "http://127.0.0.1:9999"})
	require.NoError(t, err)
	require.Empty(t, c.JWTIssuer, "a self-hosted Auth server's iss is whatever GOTRUE_JWT_ISSUER says")

	require.False(t, c.AllowAnonymousUsers, "anonymous sign-ins are refused by default")
	require.Equal(t, httpapi.DefaultExpensiveReadsPerMinute, c.RateLimits.ExpensiveReadsPerMinute, "the default is httpapi's")
	require.Equal(t, httpapi.DefaultAuditFullPerHour, c.RateLimits.AuditFullPerHour, "the default is httpapi's")
	c, err = load(map[string]string{"ALLOW_ANONYMOUS_USERS": "true", "RATE_LIMIT_EXPENSIVE_READS_PER_MINUTE": "12",
		"RATE_LIMIT_AUDIT_FULL_PER_HOUR": "2"})
	require.NoError(t, err)
	require.True(t, c.AllowAnonymousUsers)
	require.Equal(t, 12, c.RateLimits.ExpensiveReadsPerMinute)
	require.Equal(t, 2, c.RateLimits.AuditFullPerHour)

	for name, tc := range map[string]struct{ set map[string]string }{
		"ALLOW_ANONYMOUS_USERS":                 {map[string]string{"ALLOW_ANONYMOUS_USERS": "yes"}},
		"RATE_LIMIT_EXPENSIVE_READS_PER_MINUTE": {map[string]string{"RATE_LIMIT_EXPENSIVE_READS_PER_MINUTE": "0"}},
		"RATE_LIMIT_AUDIT_FULL_PER_HOUR":        {map[string]string{"RATE_LIMIT_AUDIT_FULL_PER_HOUR": "six"}},
	} {
		_, err := load(tc.set)
		require.Error(t, err, name)
		require.True(t, strings.HasPrefix(err.Error(), name), "%s: %v", name, err)
		require.NotContains(t, err.Error(), "\n", name)
	}
}

// TestServeChecksTheProjectsIssuer: with SUPABASE_URL and no
// SUPABASE_JWT_ISSUER, a token signed with the project's key but carrying
// another issuer (or none) is refused, and at debug level the api says why
// without logging the token or the issuer it carried.
func TestServeChecksTheProjectsIssuer(t *testing.T) {
	t.Parallel()
	es, err := authtest.NewES256Key("es-iss")
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("/auth/v1/.well-known/jwks.json", authtest.NewKeySet(es))
	gateway := httptest.NewServer(mux)
	t.Cleanup(gateway.Close)
	addr, logs := startServe(t, map[string]string{"SUPABASE_URL": gateway.URL, "SUPABASE_ANON_KEY": "anon-key",
		"LOG_LEVEL": "debug"})

	sign := func(issuer string) string {
		tok, err := authtest.Token{Subject: uuid.NewString(), Issuer: issuer}.Sign(es)
		require.NoError(t, err)
		return tok
	}
	require.Equal(t, http.StatusOK, getMe(t, addr, sign(gateway.URL+"/auth/v1")))
	const otherIssuer = "https://other-project.supabase.co/auth/v1"
	require.Equal(t, http.StatusOK, getMe(t, addr, hsToken(t, testSecret, gateway.URL+"/auth/v1")))
	refused := []string{sign(otherIssuer), sign(""), hsToken(t, testSecret, otherIssuer)}
	for _, tok := range refused {
		require.Equal(t, http.StatusUnauthorized, getMe(t, addr, tok))
	}
	out := logs.String()
	require.Equal(t, len(refused), strings.Count(out, "wrong or missing issuer"), out)
	require.NotContains(t, out, otherIssuer, "claim values are never logged")
	for _, tok := range refused {
		for _, part := range strings.Split(tok, ".") {
			require.NotContains(t, out, part, "tokens are never logged")
		}
	}
	require.NotContains(t, out, "no issuer check")
}

// TestServeWarnsOnceWithoutAnIssuerCheck: with neither SUPABASE_URL nor
// SUPABASE_JWT_ISSUER nothing checks iss, and the api says so once at
// startup.
func TestServeWarnsOnceWithoutAnIssuerCheck(t *testing.T) {
	t.Parallel()
	addr, logs := startServe(t, nil)
	require.Equal(t, http.StatusOK, getMe(t, addr, hsToken(t, testSecret, "")))
	require.Equal(t, 1, strings.Count(logs.String(), "no issuer check"), logs.String())
	line := logs.String()[:strings.Index(logs.String(), "no issuer check")]
	require.Contains(t, line[strings.LastIndex(line, "{"):], `"level":"warn"`)

	_, logs = startServe(t, map[string]string{"SUPABASE_JWT_ISSUER": "https://ref.supabase.co/auth/v1"})
	require.NotContains(t, logs.String(), "no issuer check")
}

// hsToken mints a user's HS256 token with secret and issuer (none if empty).
func hsToken(t *testing.T, secret, issuer string) string {
	t.Helper()
	tok, err := authtest.Token{Subject: uuid.NewString(), Issuer: issuer}.HS256([]byte(secret))
	require.NoError(t, err)
	return tok
}
