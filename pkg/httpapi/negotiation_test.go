package httpapi_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// send is one request exactly as given: no Content-Type or Authorization is
// added (token "" sends none), extra headers are name/value pairs. The
// response still goes through the spec-validating client.
func (b *secBundle) send(t *testing.T, method, path, token, body string, hdr ...string) (int, http.Header, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, b.url+path, rd)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := b.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, out
}

// TestBearerSchemeIsCaseInsensitiveAndEvery401SaysBearer: RFC 9110 §11.1
// makes the scheme name case-insensitive, so "bearer" and "BEARER" work
// like "Bearer" (everything else about the header stays as strict as
// TestJWTAttackSuite's J14 wants it). Every 401 carries WWW-Authenticate:
// Bearer (RFC 6750 §3), with error="invalid_token" when a token was sent.
func TestBearerSchemeIsCaseInsensitiveAndEvery401SaysBearer(t *testing.T) {
	t.Parallel()
	b := newSecAPI(t, secOptions{sessions: true})
	alice := b.user(t)
	for _, scheme := range []string{"Bearer", "bearer", "BEARER", "bEaReR"} {
		status, _, body := b.send(t, http.MethodGet, "/v1/me", "", "", "Authorization", scheme+" "+alice.token)
		require.Equal(t, http.StatusOK, status, "%s: %s", scheme, body)
	}
	status, _, body := b.send(t, http.MethodPost, "/v1/connections", "", `{"provider":"openai","api_key":"`+uniqueKey("sk-admin-scheme")+`"}`,
		"Authorization", "bearer "+alice.token, "Content-Type", "application/json")
	require.Equal(t, http.StatusCreated, status, string(body))

	for _, tc := range []struct {
		name, method, path string
		auth               []string
		want               string
	}{
		{"no header", http.MethodGet, "/v1/me", nil, "Bearer"},
		{"another scheme", http.MethodGet, "/v1/connections", []string{"Basic dXNlcjpwYXNz"}, "Bearer"},
		{"empty", http.MethodGet, "/v1/me", []string{""}, "Bearer"},
		{"garbage token", http.MethodGet, "/v1/me", []string{"Bearer not-a-token"}, `Bearer error="invalid_token"`},
		{"lowercase, garbage token", http.MethodDelete, "/v1/budgets/00000000-0000-4000-8000-000000000000",
			[]string{"bearer x.y.z"}, `Bearer error="invalid_token"`},
		{"two spaces", http.MethodGet, "/v1/me", []string{"Bearer  " + alice.token}, `Bearer error="invalid_token"`},
		{"two headers", http.MethodGet, "/v1/me", []string{"Bearer " + alice.token, "Bearer " + alice.token}, `Bearer error="invalid_token"`},
	} {
		var hdr []string
		for _, v := range tc.auth {
			hdr = append(hdr, "Authorization", v)
		}
		status, h, body := b.send(t, tc.method, tc.path, "", "", hdr...)
		requireProblem(t, status, h, body, http.StatusUnauthorized, tc.name)
		require.Equal(t, []string{tc.want}, h.Values("WWW-Authenticate"), tc.name)
	}

	// A session that has ended is a 401 for a token that was sent.
	b.authSrv.Logout(alice.sid)
	status, h, body := b.do(t, http.MethodPost, "/v1/connections", alice.token, newConnBody(uniqueKey("sk-admin-ended")))
	requireProblem(t, status, h, body, http.StatusUnauthorized, "ended session")
	require.Equal(t, `Bearer error="invalid_token"`, h.Get("WWW-Authenticate"))
}
