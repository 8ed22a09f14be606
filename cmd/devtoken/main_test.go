package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/authtest"
	"github.com/tokka-dev/tokka/pkg/incident"
	"github.com/tokka-dev/tokka/pkg/secret"
)

const testSecret = "devtoken-test-secret-devtoken-test-secret-0123"

func envOf(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }

// mint runs devtoken and returns the token it printed and its verified
// claims.
func mint(t *testing.T, env map[string]string, args ...string) (string, jwt.MapClaims) {
	t.Helper()
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), args, envOf(env), &out))
	tok := strings.TrimSpace(out.String())
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(tok, claims, func(*jwt.Token) (any, error) { return []byte(testSecret), nil },
		jwt.WithValidMethods([]string{"HS256"}))
	require.NoError(t, err)
	return tok, claims
}

// TestServiceRoleKeyIsShapedLikeSupabases is the incident runbook's step 6
// as written: a self-hosted operator mints the service key with `devtoken
// -role service_role`. Real GoTrue refuses a service token that carries a
// sub (it looks that user up first: 403 user_not_found), so the key must
// carry exactly what Supabase's own service keys carry — role, iss, iat,
// exp — and the Auth server's admin API must then answer.
func TestServiceRoleKeyIsShapedLikeSupabases(t *testing.T) {
	t.Parallel()
	tok, claims := mint(t, map[string]string{"SUPABASE_JWT_SECRET": testSecret}, "-role", "service_role")
	names := make([]string, 0, len(claims))
	for k := range claims {
		names = append(names, k)
	}
	slices.Sort(names)
	require.Equal(t, []string{"exp", "iat", "iss", "role"}, names)
	require.Equal(t, "service_role", claims["role"])
	require.Equal(t, "supabase", claims["iss"], "Supabase's own service keys say iss supabase")

	_, claims = mint(t, map[string]string{"SUPABASE_JWT_SECRET": testSecret, "SUPABASE_JWT_ISSUER": "http://localhost:9999"},
		"-role", "service_role", "-ttl", "24h")
	require.Equal(t, "http://localhost:9999", claims["iss"], "SUPABASE_JWT_ISSUER wins when set")
	exp, err := claims.GetExpirationTime()
	require.NoError(t, err)
	require.WithinDuration(t, time.Now().Add(24*time.Hour), exp.Time, time.Minute)

	// The key opens the (fake) Auth server's admin API, which answers like
	// GoTrue; a service token with a sub, which devtoken used to mint, is
	// refused there exactly as the real server refused it.
	auth := authtest.NewAuthServer([]byte(testSecret))
	srv := httptest.NewServer(auth)
	t.Cleanup(srv.Close)
	userID := uuid.NewString()
	auth.AddUser(userID, "ada@example.com")
	email := func(key string) (string, error) {
		d, err := incident.NewAuthDirectory(incident.AuthConfig{URL: srv.URL, ServiceRoleKey: secret.FromString(key)})
		require.NoError(t, err)
		return d.Email(context.Background(), userID)
	}
	addr, err := email(tok)
	require.NoError(t, err)
	require.Equal(t, "ada@example.com", addr)

	withSub, err := authtest.Token{Role: "service_role"}.HS256([]byte(testSecret))
	require.NoError(t, err)
	req := httptest.NewRequest(http.MethodGet, "/admin/users/"+userID, nil)
	req.Header.Set("Authorization", "Bearer "+withSub)
	rec := httptest.NewRecorder()
	auth.ServeHTTP(rec, req)
	require.Equal(t, http.StatusForbidden, rec.Code)
	require.JSONEq(t, `{"code":403,"error_code":"user_not_found","msg":"User from sub claim in JWT does not exist"}`, rec.Body.String())
	_, err = incident.NewAuthDirectory(incident.AuthConfig{URL: srv.URL, ServiceRoleKey: secret.FromString(withSub)})
	require.ErrorContains(t, err, "carries a sub claim", "syncer incident notify refuses such a key before any lookup")
}

func TestUserTokenAndFlagMistakes(t *testing.T) {
	t.Parallel()
	env := map[string]string{"SUPABASE_JWT_SECRET": testSecret}
	id := uuid.NewString()
	_, claims := mint(t, env, "-sub", id, "-email", "dev@example.com")
	require.Equal(t, id, claims["sub"])
	require.Equal(t, "authenticated", claims["role"])
	require.NotEmpty(t, claims["session_id"])
	_, hasIss := claims["iss"]
	require.False(t, hasIss, "a user token has iss only when SUPABASE_JWT_ISSUER is set, as GoTrue does")

	for _, args := range [][]string{
		{"-role", "service_role", "-sub", id},
		{"-role", "service_role", "-email", "dev@example.com"},
	} {
		err := run(context.Background(), args, envOf(env), &bytes.Buffer{})
		require.ErrorContains(t, err, "service_role", "%v", args)
	}
	err := run(context.Background(), nil, envOf(nil), &bytes.Buffer{})
	require.ErrorContains(t, err, "SUPABASE_JWT_SECRET is required")
}
