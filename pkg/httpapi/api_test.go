package httpapi_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	openapi "github.com/tokka-dev/tokka"
	"github.com/tokka-dev/tokka/pkg/authtest"
	"github.com/tokka-dev/tokka/pkg/httpapi"
	"github.com/tokka-dev/tokka/pkg/seal"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

func (b *testBundle) createConnection(t *testing.T, u user, p tokka.Provider, key string) map[string]any {
	t.Helper()
	status, _, body := b.do(t, u, http.MethodPost, "/v1/connections",
		map[string]string{"provider": string(p), "label": "org " + string(p), "api_key": key})
	require.Equal(t, http.StatusCreated, status, string(body))
	var c map[string]any
	require.NoError(t, json.Unmarshal(body, &c))
	return c
}

var blobShape = regexp.MustCompile(`^v2:[0-9a-f]{16}:[0-9a-f]+:[0-9a-f]+$`)

// requireV2Blob checks a stored value is a well-formed v2 blob and nothing else.
func requireV2Blob(t *testing.T, blob string) {
	t.Helper()
	require.Regexp(t, blobShape, blob)
	parsed, err := seal.ParseBlob(blob)
	require.NoError(t, err)
	require.Equal(t, 2, parsed.Version)
	require.Len(t, parsed.Enc, seal.EncSize)
}

func TestCreateConnectionSealsKeyAndNeverReturnsIt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice := b.newUser(t)
	key := "sk-admin-CANARYcreate0123456789abcdefWXYZ"
	c := b.createConnection(t, alice, tokka.OpenAI, key)
	require.Equal(t, "pending", c["status"])
	require.Equal(t, "sk-admin-…WXYZ", c["key_hint"])
	require.Equal(t, "openai", c["provider"])
	id := c["id"].(string)

	var blob string
	require.NoError(t, b.sql.Get(&blob, `SELECT sealed_key FROM tokka.connections WHERE id = $1`, id))
	requireV2Blob(t, blob)
	require.Equal(t, b.kr.PublicKey().KID(), strings.Split(blob, ":")[1])
	require.NotContains(t, blob, "CANARY")

	// The blob opens only for the row it was sealed for.
	opened, err := b.kr.Open(blob, seal.Binding{TeamID: alice.id, ConnectionID: id, Provider: "openai"})
	require.NoError(t, err)
	require.Equal(t, key, string(opened.Bytes()))
	opened.Wipe()
	_, err = b.kr.Open(blob, seal.Binding{TeamID: uuid.NewString(), ConnectionID: id, Provider: "openai"})
	require.ErrorIs(t, err, seal.ErrCannotOpen)

	// Neither the list, the read, nor the audit log carries key or blob.
	for _, path := range []string{"/v1/connections", "/v1/connections/" + id, "/v1/audit-events"} {
		status, _, body := b.do(t, alice, http.MethodGet, path, nil)
		require.Equal(t, http.StatusOK, status)
		require.NotContains(t, string(body), "CANARY")
		require.NotContains(t, string(body), blob[:40])
	}
	_, _, body := b.do(t, alice, http.MethodGet, "/v1/audit-events", nil)
	var evs struct {
		Events []map[string]any `json:"data"`
	}
	require.NoError(t, json.Unmarshal(body, &evs))
	require.Len(t, evs.Events, 1)
	require.Equal(t, "key.created", evs.Events[0]["action"])
	require.Equal(t, id, evs.Events[0]["connection_id"])
	require.Equal(t, "127.0.0.1", evs.Events[0]["client_ip"])
	require.Contains(t, evs.Events[0]["actor"], "api:")
	require.NotContains(t, b.logs.String(), "CANARY")
}

func TestCreateConnectionRejectsBadInput(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice := b.newUser(t)
	const canary = "sk-admin-CANARYbadinput0123456789"
	cases := []struct {
		name   string
		body   string
		status int
		field  string
	}{
		{"unknown provider", `{"provider":"mistral","api_key":"` + canary + `"}`, 400, "provider"},
		{"anthropic key for openai", `{"provider":"openai","api_key":"sk-ant-admin01-CANARYxxxxxxxxxxxxxxxxxxx"}`, 400, "api_key"},
		{"openai key for anthropic", `{"provider":"anthropic","api_key":"` + canary + `"}`, 400, "api_key"},
		{"project key", `{"provider":"openai","api_key":"sk-proj-CANARYxxxxxxxxxxxxxxxxxxxx"}`, 400, "api_key"},
		{"missing key", `{"provider":"openai"}`, 400, "api_key"},
		{"key with space", `{"provider":"openai","api_key":"sk-admin-CANARY xxxxxxxxxxxxxxx"}`, 400, "api_key"},
		{"key not a string", `{"provider":"openai","api_key":12345678901234567890}`, 400, "api_key"},
		{"mass assignment user_id", `{"provider":"openai","api_key":"` + canary + `","user_id":"` + uuid.NewString() + `"}`, 400, "user_id"},
		{"mass assignment team_id", `{"provider":"openai","api_key":"` + canary + `","team_id":"` + uuid.NewString() + `"}`, 400, "team_id"},
		{"mass assignment status", `{"provider":"openai","api_key":"` + canary + `","status":"active"}`, 400, "status"},
		{"mass assignment sealed_key", `{"provider":"openai","api_key":"` + canary + `","sealed_key":"v2:00"}`, 400, "sealed_key"},
		{"not json", `provider=openai`, 400, ""},
		{"trailing data", `{"provider":"openai","api_key":"` + canary + `"} {}`, 400, ""},
		{"empty body", ``, 400, ""},
		{"array", `[]`, 400, ""},
		{"label too long", `{"provider":"openai","label":"` + strings.Repeat("x", 101) + `","api_key":"` + canary + `"}`, 400, "label"},
		{"control char label", `{"provider":"openai","label":"a\u0000b","api_key":"` + canary + `"}`, 400, "label"},
		{"huge body", `{"provider":"openai","label":"` + strings.Repeat("x", 70000) + `","api_key":"` + canary + `"}`, 413, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, h, body := b.do(t, alice, http.MethodPost, "/v1/connections", tc.body)
			require.Equal(t, tc.status, status, string(body))
			require.Equal(t, "application/problem+json", h.Get("Content-Type"))
			require.NotContains(t, string(body), "CANARY")
			var p httpapi.Problem
			require.NoError(t, json.Unmarshal(body, &p))
			require.Equal(t, tc.status, p.Status)
			require.NotEmpty(t, p.Detail)
			require.Equal(t, tc.field, p.Field)
		})
	}
	var n int
	require.NoError(t, b.sql.Get(&n, `SELECT count(*) FROM tokka.connections WHERE team_id = $1`, alice.id))
	require.Zero(t, n, "no rejected request may store anything")
	require.NotContains(t, b.logs.String(), "CANARY")
}

func TestTokensAreVerified(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := time.Now()
	sign := func(tok authtest.Token, secret string) string {
		s, err := tok.HS256([]byte(secret))
		require.NoError(t, err)
		return s
	}
	good := sign(authtest.Token{Issuer: issuer}, jwtSecret)
	parts := strings.Split(good, ".")
	cases := map[string]string{
		"missing":       "",
		"wrong secret":  sign(authtest.Token{Issuer: issuer}, "another-secret-another-secret-another-secret"),
		"expired":       sign(authtest.Token{Issuer: issuer, IssuedAt: now.Add(-3 * time.Hour), TTL: time.Hour}, jwtSecret),
		"issued later":  sign(authtest.Token{Issuer: issuer, IssuedAt: now.Add(time.Hour)}, jwtSecret),
		"wrong aud":     sign(authtest.Token{Issuer: issuer, Audience: "anon"}, jwtSecret),
		"anon role":     sign(authtest.Token{Issuer: issuer, Role: "anon"}, jwtSecret),
		"service role":  sign(authtest.Token{Issuer: issuer, Role: "service_role"}, jwtSecret),
		"sub not uuid":  sign(authtest.Token{Issuer: issuer, Subject: "admin"}, jwtSecret),
		"alg none":      "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + parts[1] + ".",
		"no signature":  parts[0] + "." + parts[1] + ".",
		"garbage":       "not-a-token",
		"tampered body": parts[0] + "." + tamper(t, parts[1]) + "." + parts[2],
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			status, h, body := b.do(t, user{token: tok}, http.MethodGet, "/v1/me", nil)
			require.Equal(t, http.StatusUnauthorized, status, string(body))
			require.Equal(t, "application/problem+json", h.Get("Content-Type"))
		})
	}
	// Only the Bearer scheme is accepted.
	req, _ := http.NewRequest(http.MethodGet, b.url+"/v1/me", nil)
	req.Header.Set("Authorization", "Basic "+good)
	resp, err := b.client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	status, _, body := b.do(t, user{token: good}, http.MethodGet, "/v1/me", nil)
	require.Equal(t, http.StatusOK, status, string(body))
	require.NotContains(t, b.logs.String(), parts[2], "tokens must never be logged")
}

func TestOtherUsersSeeNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice, bob := b.newUser(t), b.newUser(t)
	c := b.createConnection(t, alice, tokka.Anthropic, "sk-ant-admin01-aliceKEY0123456789abcdef")
	id := c["id"].(string)
	syncFixture(t, b, id)

	_, _, missing := b.do(t, bob, http.MethodGet, "/v1/connections/"+uuid.NewString(), nil)
	for _, m := range []string{http.MethodGet, http.MethodDelete} {
		status, _, body := b.do(t, bob, m, "/v1/connections/"+id, nil)
		require.Equal(t, http.StatusNotFound, status)
		require.Equal(t, stripRequestID(missing), stripRequestID(body), "another user's id must look exactly like a missing one")
	}
	status, _, body := b.do(t, bob, http.MethodGet, "/v1/connections", nil)
	require.Equal(t, http.StatusOK, status)
	require.JSONEq(t, `{"data":[],"has_more":false,"next_cursor":null}`, string(body))
	// The range holds the fixture's days (2026-11-01 and -02), so Alice's
	// answer has rows and Bob's empty one means something.
	const usageOfFixture = "/v1/usage?from=2026-11-01&to=2026-11-30&group_by=connection"
	status, _, body = b.do(t, alice, http.MethodGet, usageOfFixture, nil)
	require.Equal(t, http.StatusOK, status, string(body))
	require.Contains(t, string(body), `"connection_id":"`+id+`"`, "the owner sees the fixture in this range")
	status, _, body = b.do(t, bob, http.MethodGet, usageOfFixture, nil)
	require.Equal(t, http.StatusOK, status, string(body))
	require.Contains(t, string(body), `"data":[]`)
	require.NotContains(t, string(body), id)
	status, _, body = b.do(t, alice, http.MethodGet, "/v1/audit-events", nil)
	require.Equal(t, http.StatusOK, status, string(body))
	require.NotContains(t, string(body), `"data":[]`, "the owner has audit events")
	status, _, body = b.do(t, bob, http.MethodGet, "/v1/audit-events", nil)
	require.Equal(t, http.StatusOK, status, string(body))
	require.Contains(t, string(body), `"data":[]`)

	// The same, straight in SQL as role authenticated with Bob's claims.
	asUser := func(u user, query string, args ...any) (int, error) {
		tx, err := b.sql.Beginx()
		require.NoError(t, err)
		defer tx.Rollback() //nolint:errcheck
		claims := `{"sub":"` + u.id + `","role":"authenticated","aud":"authenticated"}`
		_, err = tx.Exec(`SELECT set_config('request.jwt.claims', $1, true), set_config('role', 'authenticated', true)`, claims)
		require.NoError(t, err)
		var n int
		err = tx.Get(&n, query, args...)
		return n, err
	}
	for _, table := range []string{"connections", "usage_daily", "cost_daily", "audit_events"} {
		col := "connection_id"
		if table == "connections" {
			col = "id"
		}
		n, err := asUser(bob, `SELECT count(*) FROM tokka.`+table+` WHERE `+col+` = $1`, id)
		require.NoError(t, err)
		require.Zero(t, n, table)
		n, err = asUser(alice, `SELECT count(*) FROM tokka.`+table+` WHERE `+col+` = $1`, id)
		require.NoError(t, err)
		require.NotZero(t, n, table)
	}
	// Not even the owner may read the sealed key through role authenticated.
	for _, u := range []user{alice, bob} {
		_, err := asUser(u, `SELECT count(sealed_key) FROM tokka.connections`)
		require.ErrorContains(t, err, "permission denied")
	}
}

// tamper rewrites a token payload's sub to another user, keeping the
// original signature.
func tamper(t *testing.T, payload string) string {
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	require.NoError(t, err)
	var claims map[string]any
	require.NoError(t, json.Unmarshal(raw, &claims))
	claims["sub"] = uuid.NewString()
	raw, err = json.Marshal(claims)
	require.NoError(t, err)
	return base64.RawURLEncoding.EncodeToString(raw)
}

var ridField = regexp.MustCompile(`"request_id":"[^"]*"`)

func stripRequestID(b []byte) string { return ridField.ReplaceAllString(string(b), "") }

// syncFixture writes a small, known set of usage and cost rows for a
// connection through the syncer's own storage path.
func syncFixture(t *testing.T, b *testBundle, connID string) {
	t.Helper()
	day := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	syncRows(t, b, connID, tokka.Window{From: day, To: day.AddDate(0, 0, 2)},
		[]tokka.UsageRow{
			{Day: day, Family: "messages", Model: "m1", Tokens: tokka.Tokens{InputUncachedTokens: 100, CacheReadTokens: 10, CacheWrite5mTokens: 1, OutputTokens: 50, Requests: 0}},
			{Day: day, Family: "messages", Model: "m2", Tokens: tokka.Tokens{InputUncachedTokens: 7, OutputTokens: 3}},
			{Day: day.AddDate(0, 0, 1), Family: "messages", Model: "m1", Tokens: tokka.Tokens{InputUncachedTokens: 5, OutputTokens: 5}},
		},
		[]tokka.CostRow{
			{Day: day, Model: "m1", AmountUSD: decimal.RequireFromString("0.0000001"), Amount: decimal.RequireFromString("0.00001"), Currency: "USD"},
			{Day: day, Model: "m2", AmountUSD: decimal.RequireFromString("1.2378912"), Amount: decimal.RequireFromString("123.78912"), Currency: "USD"},
			{Day: day.AddDate(0, 0, 1), Model: "m1", AmountUSD: decimal.RequireFromString("0.5"), Amount: decimal.RequireFromString("50"), Currency: "USD"},
		})
}

// syncRows stores rows for a connection's window as a syncer would: lease,
// then CompleteSync (which replaces the window).
func syncRows(t *testing.T, b *testBundle, connID string, w tokka.Window, usage []tokka.UsageRow, costs []tokka.CostRow) {
	t.Helper()
	syncResult(t, b, connID, tokka.SyncResult{Window: w, Usage: usage, Costs: costs})
}

// syncResult stores r as one sync of connID (with its own next time and
// sync.succeeded event).
func syncResult(t *testing.T, b *testBundle, connID string, r tokka.SyncResult) {
	t.Helper()
	ctx := context.Background()
	r.Next = time.Now().Add(time.Hour)
	r.Event = tokka.AuditEvent{Action: tokka.ActionSyncSucceeded, Outcome: tokka.OutcomeSuccess, Actor: "syncer:fixture"}
	_, err := b.sql.Exec(`UPDATE tokka.connections SET next_sync_at = now() - interval '1 second' WHERE id = $1`, connID)
	require.NoError(t, err)
	// Other tests of this package lease from the same database at the same
	// time and may hold this connection for a moment, so keep asking until
	// it is ours (or a generous deadline passes).
	var leased bool
	for deadline := time.Now().Add(30 * time.Second); !leased && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		ls, err := b.db.LeaseDue(ctx, "fixture-"+connID, 100, time.Minute)
		require.NoError(t, err)
		for _, l := range ls {
			if l.ConnectionID == connID {
				leased = true
				require.NoError(t, b.db.CompleteSync(ctx, l, r))
			} else {
				require.NoError(t, b.db.ReleaseLease(ctx, l))
			}
		}
	}
	require.True(t, leased, "fixture connection was never due")
}

func TestUsageGroupsAndSumsExactly(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice := b.newUser(t)
	id := b.createConnection(t, alice, tokka.Anthropic, "sk-ant-admin01-usageKEY0123456789abcdef")["id"].(string)
	syncFixture(t, b, id)

	type row struct {
		Day         string `json:"day"`
		Model       string `json:"model"`
		Provider    string `json:"provider"`
		InputTokens int64  `json:"input_tokens"`
		Output      int64  `json:"output_tokens"`
		CostUSD     string `json:"cost_usd"`
	}
	get := func(q string) []row {
		status, _, body := b.do(t, alice, http.MethodGet, "/v1/usage?"+q, nil)
		require.Equal(t, http.StatusOK, status, string(body))
		var r struct{ Data []row }
		require.NoError(t, json.Unmarshal(body, &r))
		return r.Data
	}
	total := get("from=2026-11-01&to=2026-11-02")
	require.Len(t, total, 1)
	require.Equal(t, int64(100+10+1+7+5), total[0].InputTokens)
	require.Equal(t, int64(58), total[0].Output)
	require.Equal(t, "1.7378913", total[0].CostUSD)

	byDayModel := get("from=2026-11-01&to=2026-11-02&group_by=day,model,provider")
	require.Equal(t, []row{
		{Day: "2026-11-01", Model: "m1", Provider: "anthropic", InputTokens: 111, Output: 50, CostUSD: "0.0000001"},
		{Day: "2026-11-01", Model: "m2", Provider: "anthropic", InputTokens: 7, Output: 3, CostUSD: "1.2378912"},
		{Day: "2026-11-02", Model: "m1", Provider: "anthropic", InputTokens: 5, Output: 5, CostUSD: "0.5"},
	}, byDayModel)

	require.Len(t, get("from=2026-11-02&to=2026-11-02&group_by=model"), 1)
	require.Empty(t, get("from=2026-11-01&to=2026-11-02&group_by=day&provider=openai"))

	for _, q := range []string{"from=2026-13-01", "from=2026-11-05&to=2026-11-01", "from=2020-01-01&to=2026-01-01",
		"group_by=day,secret", "provider=mistral", "group_by=day%3BDROP%20TABLE"} {
		status, h, _ := b.do(t, alice, http.MethodGet, "/v1/usage?"+q, nil)
		require.Equal(t, http.StatusBadRequest, status, q)
		require.Equal(t, "application/problem+json", h.Get("Content-Type"))
	}
}

func TestDeleteConnectionDestroysKeyAndUsage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice := b.newUser(t)
	id := b.createConnection(t, alice, tokka.Anthropic, "sk-ant-admin01-deleteKEY0123456789abcd")["id"].(string)
	syncFixture(t, b, id)
	status, _, _ := b.do(t, alice, http.MethodDelete, "/v1/connections/"+id, nil)
	require.Equal(t, http.StatusNoContent, status)
	status, _, _ = b.do(t, alice, http.MethodGet, "/v1/connections/"+id, nil)
	require.Equal(t, http.StatusNotFound, status)
	status, _, _ = b.do(t, alice, http.MethodDelete, "/v1/connections/"+id, nil)
	require.Equal(t, http.StatusNotFound, status)
	for _, table := range []string{"connections", "usage_daily", "cost_daily"} {
		col := "connection_id"
		if table == "connections" {
			col = "id"
		}
		var n int
		require.NoError(t, b.sql.Get(&n, `SELECT count(*) FROM tokka.`+table+` WHERE `+col+` = $1`, id))
		require.Zero(t, n, table)
	}
	var actions []string
	require.NoError(t, b.sql.Select(&actions, `SELECT action FROM tokka.audit_events WHERE connection_id = $1 ORDER BY id`, id))
	require.Equal(t, []string{"key.created", "sync.succeeded", "key.deleted"}, actions)
}

func TestAuditEventsPaginateNewestFirst(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice := b.newUser(t)
	for i := 0; i < 5; i++ {
		b.createConnection(t, alice, tokka.OpenAI, "sk-admin-pagination0123456789abcdef"+string(rune('a'+i)))
	}
	var seen []float64
	cursor := ""
	for pages := 0; pages < 10; pages++ {
		status, _, body := b.do(t, alice, http.MethodGet, "/v1/audit-events?limit=2"+cursor, nil)
		require.Equal(t, http.StatusOK, status)
		var page struct {
			Events []struct {
				ID float64 `json:"id"`
			} `json:"data"`
			NextCursor *string `json:"next_cursor"`
		}
		require.NoError(t, json.Unmarshal(body, &page))
		for _, e := range page.Events {
			seen = append(seen, e.ID)
		}
		if page.NextCursor == nil {
			break
		}
		cursor = "&cursor=" + *page.NextCursor
	}
	require.Len(t, seen, 5)
	for i := 1; i < len(seen); i++ {
		require.Less(t, seen[i], seen[i-1])
	}
	for _, q := range []string{"limit=0", "limit=201", "limit=x", "cursor=-1", "cursor=abc"} {
		status, _, _ := b.do(t, alice, http.MethodGet, "/v1/audit-events?"+q, nil)
		require.Equal(t, http.StatusBadRequest, status, q)
	}
}

func TestEveryResponseCarriesSecurityHeaders(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice := b.newUser(t)
	cases := []struct {
		method, path string
		u            user
		status       int
	}{
		{http.MethodGet, "/healthz", user{}, 200},
		{http.MethodGet, "/readyz", user{}, 200},
		{http.MethodGet, "/openapi.yaml", user{}, 200},
		{http.MethodGet, "/v1/me", alice, 200},
		{http.MethodGet, "/v1/me", user{}, 401},
		{http.MethodGet, "/v1/connections/" + uuid.NewString(), alice, 404},
		{http.MethodGet, "/nope", user{}, 404},
		{http.MethodPut, "/v1/connections", alice, 405},
	}
	for _, tc := range cases {
		status, h, body := b.do(t, tc.u, tc.method, tc.path, nil)
		require.Equal(t, tc.status, status, tc.path+" "+string(body))
		require.Equal(t, "default-src 'none'; frame-ancestors 'none'", h.Get("Content-Security-Policy"), tc.path)
		require.Equal(t, "DENY", h.Get("X-Frame-Options"), tc.path)
		require.Contains(t, h.Get("Strict-Transport-Security"), "includeSubDomains", tc.path)
		require.Equal(t, "no-referrer", h.Get("Referrer-Policy"), tc.path)
		require.Equal(t, "nosniff", h.Get("X-Content-Type-Options"), tc.path)
		require.NotEmpty(t, h.Get("X-Request-Id"), tc.path)
		if strings.HasPrefix(tc.path, "/v1/") {
			require.Equal(t, "no-store", h.Get("Cache-Control"), tc.path)
		}
	}
	status, _, body := b.do(t, user{}, http.MethodGet, "/openapi.yaml", nil)
	require.Equal(t, 200, status)
	require.Equal(t, openapi.Spec, body)
}
