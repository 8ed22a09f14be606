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
func (b *testBundle) send(t *testing.T, method, path, token, body string, hdr ...string) (int, http.Header, []byte) {
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
	b := setup(t, liveSessions())
	alice := b.newUser(t)
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
	status, h, body := b.do(t, alice, http.MethodPost, "/v1/connections", newConnBody(uniqueKey("sk-admin-ended")))
	requireProblem(t, status, h, body, http.StatusUnauthorized, "ended session")
	require.Equal(t, `Bearer error="invalid_token"`, h.Get("WWW-Authenticate"))
}

// TestContentTypeAcceptAndTextAreNegotiatedExactly: a request body is
// application/json by media type, not by prefix (415 otherwise, not 400);
// text that encoding/json would silently turn into U+FFFD (invalid UTF-8,
// lone surrogate escapes) is refused, while a proper surrogate pair is kept;
// and Accept is honoured (406 when it rules out what the route answers in).
func TestContentTypeAcceptAndTextAreNegotiatedExactly(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice := b.newUser(t)
	body := func(label string) string {
		return `{"provider":"openai","label":"` + label + `","api_key":"` + uniqueKey("sk-admin-negotiate") + `"}`
	}
	for _, ct := range []string{"application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8",
		`application/json; charset="utf-8"`} {
		status, _, resp := b.send(t, http.MethodPost, "/v1/connections", alice.token, body("ok"), "Content-Type", ct)
		require.Equal(t, http.StatusCreated, status, "%s: %s", ct, resp)
	}
	for _, ct := range []string{"", "application/jsonx", "application/json-patch+json", "text/plain", "text/json",
		"application/json; charset=latin-1", "application/json; version=2", "application/x-www-form-urlencoded"} {
		var hdr []string
		if ct != "" {
			hdr = []string{"Content-Type", ct}
		}
		status, h, resp := b.send(t, http.MethodPost, "/v1/connections", alice.token, body("refused"), hdr...)
		requireProblem(t, status, h, resp, http.StatusUnsupportedMediaType, ct)
		status, h, resp = b.send(t, http.MethodPost, "/v1/budgets", alice.token, `{"amount_usd":"5"}`, hdr...)
		requireProblem(t, status, h, resp, http.StatusUnsupportedMediaType, ct)
	}
	require.Equal(t, 4, b.countConnections(t, alice.id))

	// Text: what is stored is what was sent, or nothing.
	id := b.connect(t, alice)
	for name, label := range map[string]string{
		"invalid UTF-8":       "org \xff\xfe",
		"overlong encoding":   "org \xc0\xaf",
		"lone high surrogate": `org \ud800`,
		"lone low surrogate":  `org \udc00 x`,
		"reversed pair":       `org \udc00\ud800`,
		"high then letter":    `org \ud83dx`,
		"high at the end":     `\ud83d`,
	} {
		status, h, resp := b.send(t, http.MethodPost, "/v1/connections", alice.token, body(label), "Content-Type", "application/json")
		requireProblem(t, status, h, resp, http.StatusBadRequest, name)
		status, h, resp = b.send(t, http.MethodPatch, "/v1/connections/"+id, alice.token, `{"label":"`+label+`"}`, "Content-Type", "application/json")
		requireProblem(t, status, h, resp, http.StatusBadRequest, name)
		status, h, resp = b.send(t, http.MethodPost, "/v1/budgets", alice.token, `{"amount_usd":"5","name":"`+label+`"}`, "Content-Type", "application/json")
		requireProblem(t, status, h, resp, http.StatusBadRequest, name)
	}
	status, _, resp := b.send(t, http.MethodPatch, "/v1/connections/"+id, alice.token, `{"label":"org \ud83d\ude00 \\ud800"}`, "Content-Type", "application/json")
	require.Equal(t, http.StatusOK, status, string(resp))
	var label string
	require.NoError(t, b.sql.Get(&label, `SELECT label FROM tokka.connections WHERE id = $1`, id))
	require.Equal(t, `org 😀 \ud800`, label, "a pair is one character; an escaped backslash is text")
	require.Equal(t, 5, b.countConnections(t, alice.id))
	var budgets int
	require.NoError(t, b.sql.Get(&budgets, `SELECT count(*) FROM tokka.budgets WHERE team_id = $1`, alice.id))
	require.Zero(t, budgets)

	// Accept.
	for _, tc := range []struct {
		path, accept string
		want         int
	}{
		{"/v1/connections", "", http.StatusOK},
		{"/v1/connections", "*/*", http.StatusOK},
		{"/v1/connections", "application/json", http.StatusOK},
		{"/v1/connections", "application/problem+json", http.StatusOK},
		{"/v1/connections", "application/*", http.StatusOK},
		{"/v1/connections", "text/html, application/xhtml+xml, */*;q=0.8", http.StatusOK},
		{"/v1/connections", "text/csv, application/json;q=0.1", http.StatusOK},
		{"/v1/connections", "text/csv", http.StatusNotAcceptable},
		{"/v1/connections", "text/*", http.StatusNotAcceptable},
		{"/v1/connections", "application/json;q=0, application/problem+json;q=0", http.StatusNotAcceptable},
		{"/v1/connections", "*/*, application/json;q=0, application/problem+json;q=0", http.StatusNotAcceptable},
		{"/v1/me", "image/png", http.StatusNotAcceptable},
		{"/v1/usage/export.csv", "text/csv", http.StatusOK},
		{"/v1/usage/export.csv", "text/*", http.StatusOK},
		{"/v1/usage/export.csv", "*/*", http.StatusOK},
		{"/v1/usage/export.csv", "application/json", http.StatusNotAcceptable},
		{"/openapi.yaml", "application/yaml", http.StatusOK},
		{"/openapi.yaml", "text/csv", http.StatusNotAcceptable},
		{"/healthz", "text/csv", http.StatusNotAcceptable},
		{"/healthz", "application/json", http.StatusOK},
	} {
		var hdr []string
		if tc.accept != "" {
			hdr = []string{"Accept", tc.accept}
		}
		status, h, resp := b.send(t, http.MethodGet, tc.path, alice.token, "", hdr...)
		if tc.want == http.StatusNotAcceptable {
			requireProblem(t, status, h, resp, tc.want, tc.path+" "+tc.accept)
			continue
		}
		require.Equal(t, tc.want, status, "%s %s: %s", tc.path, tc.accept, resp)
	}
}

// TestHeadAnswersEveryGetRoute: every route that answers GET answers HEAD
// (uptime monitors use it), /healthz and /readyz included: the same status
// and headers as the GET, and no body. Another method's route still
// refuses HEAD with 405.
func TestHeadAnswersEveryGetRoute(t *testing.T) {
	t.Parallel()
	b := setup(t, fromIP(uniqueLoopback()))
	alice := b.newUser(t)
	conn := b.connect(t, alice)
	status, _, body := b.do(t, alice, http.MethodPost, "/v1/budgets", map[string]string{"amount_usd": "5"})
	require.Equal(t, http.StatusCreated, status, string(body))
	budget := strings.Split(strings.Split(string(body), `"id":"`)[1], `"`)[0]
	ids := map[string]string{"/v1/connections/:id": conn, "/v1/budgets/:id": budget, "/v1/budgets/:id/deliveries": budget}

	gets := 0
	for _, r := range b.e.Routes() {
		if r.Method != http.MethodGet {
			continue
		}
		gets++
		path := strings.Replace(r.Path, ":id", ids[r.Path], 1)
		for _, tc := range []struct {
			name, path, token string
		}{
			{"ok", path, alice.token},
			{"no token", path, ""},
			{"bad query", path + "?nope=1", alice.token},
		} {
			gs, gh, gb := b.send(t, http.MethodGet, tc.path, tc.token, "")
			hs, hh, hb := b.send(t, http.MethodHead, tc.path, tc.token, "")
			name := tc.name + " " + tc.path
			require.Equal(t, gs, hs, name)
			require.Empty(t, hb, name)
			require.NotEmpty(t, gb, name)
			for _, h := range []string{"Content-Type", "Content-Disposition", "Cache-Control", "WWW-Authenticate",
				"Content-Security-Policy", "X-Frame-Options", "Strict-Transport-Security", "X-Content-Type-Options", "RateLimit-Limit"} {
				require.Equal(t, gh.Values(h), hh.Values(h), "%s: %s", name, h)
			}
			// The exports do not read their rows for a HEAD, so they cannot
			// know their length (RFC 9110 lets a HEAD leave it out).
			export := r.Path == "/v1/usage/export.csv" || r.Path == "/v1/usage/export.focus.csv"
			if gh.Get("Content-Length") != "" && !(export && gs == http.StatusOK) {
				require.Equal(t, gh.Get("Content-Length"), hh.Get("Content-Length"), name)
			}
			require.NotEmpty(t, hh.Get("X-Request-Id"), name)
		}
	}
	require.GreaterOrEqual(t, gets, 15)
	routes := map[string]bool{}
	for _, r := range b.e.Routes() {
		routes[r.Method+" "+r.Path] = true
	}
	for _, r := range b.e.Routes() {
		if r.Method == http.MethodGet {
			require.True(t, routes["HEAD "+r.Path], "HEAD %s is routed", r.Path)
		}
	}

	status, h, body := b.send(t, http.MethodHead, "/v1/connections/"+conn+"/sync", alice.token, "")
	require.Equal(t, http.StatusMethodNotAllowed, status)
	require.Empty(t, body)
	require.Equal(t, "application/problem+json", h.Get("Content-Type"))
}
