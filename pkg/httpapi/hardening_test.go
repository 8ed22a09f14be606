package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/authtest"
	"github.com/tokka-dev/tokka/pkg/egress"
	"github.com/tokka-dev/tokka/pkg/httpapi"
	"github.com/tokka-dev/tokka/pkg/notify/notifytest"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// hookGuard is a webhook guard whose resolver knows one public receiver, so
// budgets with a webhook can be saved without real DNS.
func hookGuard() *egress.Guard {
	res := notifytest.NewResolver()
	res.Set("hooks.example.com", []string{"93.184.216.34"})
	return &egress.Guard{Resolver: res}
}

// owned is one user with one of each object a mutation can touch: a
// connection, a budget and an alert in their personal team, a team they
// own, and an open invitation to someone else's team.
type owned struct {
	u                   user
	conn, budget, alert string
	team, invitation    string
}

func (b *testBundle) own(t *testing.T) owned {
	t.Helper()
	o := owned{u: b.newUser(t)}
	o.conn = b.connect(t, o.u)
	status, _, body := b.do(t, o.u, http.MethodPost, "/v1/budgets", map[string]any{"amount_usd": "100"})
	require.Equal(t, http.StatusCreated, status, string(body))
	var created struct{ ID string }
	require.NoError(t, json.Unmarshal(body, &created))
	o.budget = created.ID
	_, err := b.db.RaiseAlert(context.Background(), tokka.Alert{TeamID: o.u.id, Kind: tokka.AlertKeyRotation,
		DedupKey: "rotate:" + o.conn, Title: "Rotate your key"})
	require.NoError(t, err)
	status, _, body = b.do(t, o.u, http.MethodGet, "/v1/alerts", nil)
	require.Equal(t, http.StatusOK, status)
	var alerts struct {
		Alerts []struct{ ID int64 } `json:"data"`
	}
	require.NoError(t, json.Unmarshal(body, &alerts))
	require.Len(t, alerts.Alerts, 1)
	o.alert = strconv.FormatInt(alerts.Alerts[0].ID, 10)
	o.team = b.createTeam(t, o.u, "Platform")
	inviter := b.newUser(t)
	_, o.invitation = b.invite(t, inviter, b.createTeam(t, inviter, "Finance"), o.u.email, "viewer")
	return o
}

// snapshot is everything of a user's that the api may change (not what a
// syncer working on the shared package database may: status, leases,
// sync results, its own alerts and audit events).
func (b *testBundle) snapshot(t *testing.T, userID string) string {
	t.Helper()
	var s string
	require.NoError(t, b.sql.Get(&s, `SELECT concat_ws(' | ',
		(SELECT jsonb_agg(jsonb_build_array(id, label, key_hint, sealed_key, key_set_at, last_sync_request_at) ORDER BY id)
		   FROM tokka.connections WHERE team_id = $1),
		(SELECT jsonb_agg(to_jsonb(x) ORDER BY id) FROM tokka.budgets x WHERE team_id = $1),
		(SELECT jsonb_agg(jsonb_build_array(id, acknowledged_at) ORDER BY id) FROM tokka.alerts
		  WHERE team_id = $1 AND kind = 'key_rotation'),
		(SELECT count(*) FROM tokka.audit_events WHERE team_id = $1 AND actor LIKE 'api:%'),
		(SELECT jsonb_agg(to_jsonb(x) ORDER BY id) FROM tokka.teams x
		  WHERE id IN (SELECT team_id FROM tokka.team_members WHERE user_id = $1)),
		(SELECT jsonb_agg(to_jsonb(x) ORDER BY team_id, user_id) FROM tokka.team_members x
		  WHERE team_id IN (SELECT team_id FROM tokka.team_members WHERE user_id = $1)),
		(SELECT jsonb_agg(to_jsonb(x) ORDER BY id) FROM tokka.team_invitations x
		  WHERE team_id IN (SELECT team_id FROM tokka.team_members WHERE user_id = $1) OR email = (
		    SELECT email FROM tokka.team_members WHERE user_id = $1 LIMIT 1)))`, userID))
	return s
}

// mutatingRoutes are the router's own /v1 routes for every method but GET
// and HEAD, so a route added later is covered without touching this test.
func mutatingRoutes(t *testing.T, b *testBundle) []string {
	t.Helper()
	var out []string
	for _, r := range b.e.Routes() {
		if strings.HasPrefix(r.Path, "/v1/") && r.Method != http.MethodGet && r.Method != http.MethodHead {
			out = append(out, r.Method+" "+r.Path)
		}
	}
	require.GreaterOrEqual(t, len(out), 8, "the router's mutations: %v", out)
	return out
}

// request fills a route's parameters with o's objects and gives it a body
// that would succeed, so only the session check can stop it.
func (o owned) request(route string) (method, path string, body any) {
	method, path, _ = strings.Cut(route, " ")
	switch {
	case strings.HasPrefix(path, "/v1/connections/"):
		path = strings.Replace(path, ":id", o.conn, 1)
	case strings.HasPrefix(path, "/v1/budgets/"):
		path = strings.Replace(path, ":id", o.budget, 1)
	case strings.HasPrefix(path, "/v1/alerts/"):
		path = strings.Replace(path, ":id", o.alert, 1)
	case strings.HasPrefix(path, "/v1/teams/"):
		path = strings.Replace(path, ":team", o.team, 1)
		path = strings.Replace(path, ":user", o.u.id, 1)
	case strings.HasPrefix(path, "/v1/invitations/"):
		path = strings.Replace(path, ":token", o.invitation, 1)
	}
	path = strings.ReplaceAll(path, ":invitation", uuid.NewString())
	path = strings.ReplaceAll(path, ":id", uuid.NewString())
	switch route {
	case "POST /v1/connections":
		body = newConnBody("sk-admin-livesession0123456789abc")
	case "PATCH /v1/connections/:id":
		body = map[string]any{"label": "renamed by a dead session"}
	case "POST /v1/budgets":
		body = map[string]any{"amount_usd": "1", "channels": map[string]any{"webhook_url": "https://hooks.example.com/exfiltrate"}}
	case "PATCH /v1/budgets/:id":
		body = map[string]any{"channels": map[string]any{"webhook_url": "https://hooks.example.com/exfiltrate"},
			"rotate_webhook_secret": true}
	case "POST /v1/teams", "PATCH /v1/teams/:team":
		body = map[string]any{"name": "made by a dead session"}
	case "PATCH /v1/teams/:team/members/:user":
		body = map[string]any{"role": "owner"}
	case "POST /v1/teams/:team/invitations":
		body = map[string]any{"email": "friend-of-a-dead-session@example.com", "role": "admin"}
	}
	return method, path, body
}

// TestEveryMutationNeedsALiveSession replays the stolen-token finding: with
// a token whose session the Auth server has ended, POST /v1/budgets with a
// webhook answered 201, "sync now" 202 and alerts could be acknowledged.
// Every mutating route of the router now asks the Auth server first: a
// signed-out session gets 401, an Auth server that cannot answer gets 503
// with its own detail and Retry-After, and nothing changes either way.
func TestEveryMutationNeedsALiveSession(t *testing.T) {
	t.Parallel()
	b := setup(t, liveSessions(), fromIP(uniqueLoopback()), configured(httpapi.Config{WebhookGuard: hookGuard()}))
	routes := mutatingRoutes(t, b)

	alice := b.own(t)
	b.authSrv.Logout(alice.u.sid)
	before := b.snapshot(t, alice.u.id)
	for _, route := range routes {
		method, path, body := alice.request(route)
		status, h, resp := b.do(t, alice.u, method, path, body)
		requireProblem(t, status, h, resp, http.StatusUnauthorized, "signed out: "+route)
		require.Contains(t, string(resp), "session has ended", route)
	}
	require.Equal(t, before, b.snapshot(t, alice.u.id), "a signed-out session changed something")

	bob := b.own(t)
	before = b.snapshot(t, bob.u.id)
	b.authSrv.SetDown(true)
	for _, route := range routes {
		method, path, body := bob.request(route)
		status, h, resp := b.do(t, bob.u, method, path, body)
		requireProblem(t, status, h, resp, http.StatusServiceUnavailable, "Auth server down: "+route)
		var p httpapi.Problem
		require.NoError(t, json.Unmarshal(resp, &p))
		require.Contains(t, p.Detail, "cannot confirm your session right now", route)
		retry, err := strconv.Atoi(h.Get("Retry-After"))
		require.NoError(t, err, route)
		require.Positive(t, retry, route)
	}
	require.Equal(t, before, b.snapshot(t, bob.u.id), "a request the Auth server could not confirm changed something")

	// Back up: the same requests go through.
	b.authSrv.SetDown(false)
	for _, route := range routes {
		method, path, body := bob.request(route)
		if method == http.MethodDelete || strings.HasSuffix(path, "/sync") {
			// Keep the objects for the routes that follow; and a sync
			// request would NOTIFY the package database's listeners,
			// which TestSyncNowIsLimitedPerConnectionAndAudited watches.
			continue
		}
		status, _, resp := b.do(t, bob.u, method, path, body)
		require.Less(t, status, 300, "%s with a live session: %s", route, resp)
	}
	require.NotContains(t, b.logs.String(), alice.u.token[len(alice.u.token)-20:], "tokens are never logged")
}

// TestEveryUnavailableAnswerKeepsItsDetail: a 503 from a dependency keeps
// the caller-safe detail that says which (not the generic internal-error
// text) and carries Retry-After.
func TestEveryUnavailableAnswerKeepsItsDetail(t *testing.T) {
	t.Parallel()
	b := setup(t, configured(httpapi.Config{RateLimiter: failingLimiter{}}))
	alice := b.newUser(t)
	for _, tc := range []struct {
		method, path string
		body         any
	}{
		{http.MethodPost, "/v1/connections", newConnBody("sk-admin-unavailable0123456789")},
		{http.MethodGet, "/v1/audit-events/verify", nil},
	} {
		status, h, body := b.do(t, alice, tc.method, tc.path, tc.body)
		requireProblem(t, status, h, body, http.StatusServiceUnavailable, tc.path)
		var p httpapi.Problem
		require.NoError(t, json.Unmarshal(body, &p))
		require.Equal(t, "rate limiter unavailable", p.Detail, tc.path)
		require.NotEmpty(t, h.Get("Retry-After"), tc.path)
		require.NotContains(t, string(body), "connection refused")
	}
}

// TestExpensiveReadsAreRateLimitedPerUser: verification, the CSV export and
// long usage ranges spend a per-user budget of their own through
// tokka.rate_limit_hit, and a full re-check of the audit chain a stricter
// one; requests refused as invalid spend nothing.
func TestExpensiveReadsAreRateLimitedPerUser(t *testing.T) {
	t.Parallel()
	b := setup(t, fromIP(uniqueLoopback()), configured(httpapi.Config{RateLimits: httpapi.RateLimits{ExpensiveReadsPerMinute: 3, AuditFullPerHour: 1}}))
	alice, bob, carol := b.newUser(t), b.newUser(t), b.newUser(t)
	today := time.Now().UTC()
	long := "/v1/usage?from=" + today.AddDate(0, 0, -150).Format(time.DateOnly)
	short := "/v1/usage?from=" + today.AddDate(0, 0, -30).Format(time.DateOnly)

	for i, path := range []string{"/v1/audit-events/verify", "/v1/usage/export.csv", long} {
		status, h, body := b.do(t, alice, http.MethodGet, path, nil)
		require.Equal(t, http.StatusOK, status, "%s: %s", path, body)
		require.Equal(t, "3", h.Get("RateLimit-Limit"), path)
		require.Equal(t, strconv.Itoa(2-i), h.Get("RateLimit-Remaining"), path)
		require.NotEmpty(t, h.Get("RateLimit-Reset"), path)
	}
	for _, path := range []string{"/v1/audit-events/verify", "/v1/usage/export.csv", long} {
		status, h, body := b.do(t, alice, http.MethodGet, path, nil)
		requireProblem(t, status, h, body, http.StatusTooManyRequests, path)
		require.Equal(t, h.Get("RateLimit-Reset"), h.Get("Retry-After"), path)
		require.Equal(t, "0", h.Get("RateLimit-Remaining"), path)
	}
	// Cheap reads are not counted.
	for _, path := range []string{short, "/v1/usage/summary", "/v1/connections", "/v1/audit-events"} {
		status, h, body := b.do(t, alice, http.MethodGet, path, nil)
		require.Equal(t, http.StatusOK, status, "%s: %s", path, body)
		require.Empty(t, h.Get("RateLimit-Limit"), path)
	}
	// Per user: bob, from the same address, has his own budget.
	status, _, _ := b.do(t, bob, http.MethodGet, "/v1/audit-events/verify", nil)
	require.Equal(t, http.StatusOK, status)

	// Invalid requests are refused before they spend anything.
	for _, path := range []string{"/v1/usage/export.csv?from=someday", "/v1/usage/export.csv?group_by=nope",
		long + "&limit=0", "/v1/audit-events/verify?full=maybe"} {
		for i := 0; i < 4; i++ {
			status, h, body := b.do(t, carol, http.MethodGet, path, nil)
			requireProblem(t, status, h, body, http.StatusBadRequest, path)
		}
	}
	status, h, body := b.do(t, carol, http.MethodGet, "/v1/usage/export.csv", nil)
	require.Equal(t, http.StatusOK, status, string(body))
	require.Equal(t, "2", h.Get("RateLimit-Remaining"), "the invalid requests spent nothing")

	// A full re-check has a stricter budget of its own.
	status, h, body = b.do(t, carol, http.MethodGet, "/v1/audit-events/verify?full=true", nil)
	require.Equal(t, http.StatusOK, status, string(body))
	require.Equal(t, "1", h.Get("RateLimit-Limit"))
	status, h, body = b.do(t, carol, http.MethodGet, "/v1/audit-events/verify?full=true", nil)
	requireProblem(t, status, h, body, http.StatusTooManyRequests, "second full re-check")
	retry, err := strconv.Atoi(h.Get("Retry-After"))
	require.NoError(t, err)
	require.Positive(t, retry)
	require.LessOrEqual(t, retry, 3600, "the full re-check budget is per hour")
	status, _, _ = b.do(t, carol, http.MethodGet, "/v1/audit-events/verify?full=false", nil)
	require.Equal(t, http.StatusOK, status, "an incremental check still has budget")
}

// TestAbsurdDatesAreABadRequest: from=0000-01-01 reached Postgres (which
// has no year 0) and answered 500. Dates outside 2000-01-01..2100-12-31 are
// a 400 naming the parameter, on /v1/usage and the export.
func TestAbsurdDatesAreABadRequest(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice := b.newUser(t)
	for _, q := range []struct{ query, field string }{
		{"from=0000-01-01", "from"},
		{"from=0000-01-01&to=0000-01-02", "to"},
		{"from=0001-01-01&to=2000-01-02", "from"},
		{"from=1999-12-31", "from"},
		{"to=9999-12-31", "to"},
		{"from=2100-12-01&to=2101-01-01", "to"},
		{"to=0000-01-01", "to"},
	} {
		for _, path := range []string{"/v1/usage", "/v1/usage/export.csv"} {
			status, h, body := b.do(t, alice, http.MethodGet, path+"?"+q.query, nil)
			requireProblem(t, status, h, body, http.StatusBadRequest, path+"?"+q.query)
			var p httpapi.Problem
			require.NoError(t, json.Unmarshal(body, &p))
			require.Equal(t, q.field, p.Field, q.query)
			require.Contains(t, p.Detail, "2000-01-01", q.query)
		}
	}
	for _, q := range []string{"from=2000-01-01&to=2000-12-31", "from=2100-01-01&to=2100-12-31", "to=2000-01-05"} {
		status, _, body := b.do(t, alice, http.MethodGet, "/v1/usage?"+q, nil)
		require.Equal(t, http.StatusOK, status, "%s: %s", q, body)
	}
}

// TestUnknownFieldNamesAreNeverEchoed: a key pasted where a field name
// belongs came back in the problem's detail and field. Now an unknown name
// is never repeated (only Tokka's own field names are, which cannot be
// anyone's secret), whatever the route and however deep the name sits.
func TestUnknownFieldNamesAreNeverEchoed(t *testing.T) {
	t.Parallel()
	b := setup(t, configured(httpapi.Config{WebhookGuard: hookGuard()}))
	o := b.own(t)
	const canary = "sk-admin-CANARYfieldname0123456789abcdef"
	for _, tc := range []struct{ method, path, body string }{
		{http.MethodPost, "/v1/connections", `{"provider":"openai","` + canary + `":"x"}`},
		{http.MethodPost, "/v1/connections", `{"provider":"openai","api_key":"sk-admin-x","` + canary + `":1,"` + canary + `":2}`},
		{http.MethodPost, "/v1/connections", `{"` + strings.ToUpper(canary) + `":1,"` + canary + `":2}`},
		{http.MethodPatch, "/v1/connections/" + o.conn, `{"` + canary + `":"x"}`},
		{http.MethodPost, "/v1/budgets", `{"amount_usd":"5","` + canary + `":true}`},
		{http.MethodPost, "/v1/budgets", `{"amount_usd":"5","channels":{"email":false,"` + canary + `":"x"}}`},
		{http.MethodPatch, "/v1/budgets/" + o.budget, `{"` + canary + `":null}`},
		{http.MethodPost, "/v1/connections", `{"provider":"openai","api_key":"sk-admin-x","label":{"` + canary + `":1,"` + canary + `":2}}`},
	} {
		status, h, body := b.do(t, o.u, tc.method, tc.path, tc.body)
		requireProblem(t, status, h, body, http.StatusBadRequest, tc.body)
		require.NotContains(t, string(body), "CANARY", tc.body)
		require.NotContains(t, strings.ToUpper(string(body)), "CANARY", tc.body)
		for name, vals := range h {
			require.NotContains(t, strings.ToUpper(name+strings.Join(vals, " ")), "CANARY", tc.body)
		}
	}
	require.NotContains(t, strings.ToUpper(b.logs.String()), "CANARY")
}

// TestBudgetEmailGoesOnlyToAConfirmedAddress: with an Auth server, the
// email channel is refused unless the Auth server reports the address
// confirmed (one GetUser call, shared with the live-session check); without
// one, the token's user_metadata.email_verified decides.
func TestBudgetEmailGoesOnlyToAConfirmedAddress(t *testing.T) {
	t.Parallel()
	withEmail := map[string]any{"amount_usd": "10", "channels": map[string]any{"email": true}}

	b := setup(t, liveSessions())
	alice := b.newUser(t)
	b.authSrv.Unconfirm(alice.id)
	calls := b.authSrv.Requests()
	status, h, body := b.do(t, alice, http.MethodPost, "/v1/budgets", withEmail)
	requireProblem(t, status, h, body, http.StatusBadRequest, "unconfirmed address")
	var p httpapi.Problem
	require.NoError(t, json.Unmarshal(body, &p))
	require.Equal(t, "channels.email", p.Field)
	require.Contains(t, p.Detail, "not confirmed")
	require.EqualValues(t, calls+1, b.authSrv.Requests(), "one GetUser call per request")
	var n int
	require.NoError(t, b.sql.Get(&n, `SELECT count(*) FROM tokka.budgets WHERE team_id = $1`, alice.id))
	require.Zero(t, n)
	status, _, body = b.do(t, alice, http.MethodPost, "/v1/budgets", map[string]any{"amount_usd": "10"})
	require.Equal(t, http.StatusCreated, status, "other channels are fine: %s", body)
	var created struct{ ID string }
	require.NoError(t, json.Unmarshal(body, &created))
	status, h, body = b.do(t, alice, http.MethodPatch, "/v1/budgets/"+created.ID,
		map[string]any{"channels": map[string]any{"email": true}})
	requireProblem(t, status, h, body, http.StatusBadRequest, "unconfirmed address on PATCH")

	bob := b.newUser(t)
	calls = b.authSrv.Requests()
	status, _, body = b.do(t, bob, http.MethodPost, "/v1/budgets", withEmail)
	require.Equal(t, http.StatusCreated, status, string(body))
	require.EqualValues(t, calls+1, b.authSrv.Requests(), "one GetUser call per request")
	var budget struct {
		Channels struct {
			EmailTo *string `json:"email_to"`
		} `json:"channels"`
	}
	require.NoError(t, json.Unmarshal(body, &budget))
	require.NotNil(t, budget.Channels.EmailTo)
	require.Equal(t, bob.id[:8]+"@example.com", *budget.Channels.EmailTo)

	// No Auth server: the token's own claim decides.
	local := setup(t)
	carol := local.newUser(t)
	unverified := user{id: uuid.NewString()}
	tok, err := authtest.Token{Subject: unverified.id, Email: "dave@example.com", Issuer: issuer, EmailUnverified: true}.HS256([]byte(jwtSecret))
	require.NoError(t, err)
	unverified.token = tok
	status, h, body = local.do(t, unverified, http.MethodPost, "/v1/budgets", withEmail)
	requireProblem(t, status, h, body, http.StatusBadRequest, "email_verified false")
	status, _, body = local.do(t, carol, http.MethodPost, "/v1/budgets", withEmail)
	require.Equal(t, http.StatusCreated, status, string(body))
}

// TestAnonymousUsersAreForbidden: a valid token of a Supabase anonymous
// sign-in gets 403 on every route unless ALLOW_ANONYMOUS_USERS is set.
func TestAnonymousUsersAreForbidden(t *testing.T) {
	t.Parallel()
	anon := func() string {
		tok, err := authtest.Token{Issuer: issuer, Anonymous: true}.HS256([]byte(jwtSecret))
		require.NoError(t, err)
		return tok
	}
	b := setup(t)
	tok := anon()
	status, h, body := b.do(t, bearer(tok), http.MethodGet, "/v1/me", nil)
	requireProblem(t, status, h, body, http.StatusForbidden, "anonymous read")
	require.Contains(t, string(body), "anonymous")
	status, h, body = b.do(t, bearer(tok), http.MethodPost, "/v1/connections", newConnBody("sk-admin-anonymous0123456789abc"))
	requireProblem(t, status, h, body, http.StatusForbidden, "anonymous write")

	open := setup(t, anonymousAllowed())
	status, _, body = open.do(t, bearer(anon()), http.MethodGet, "/v1/me", nil)
	require.Equal(t, http.StatusOK, status, string(body))
}

// TestTheAPIAndTheDatabaseSeeTheSameCaller replays the claim-confusion
// finding through the router: a correctly signed payload with "sub":A and
// "SUB":B made /v1/me answer B while RLS saw A. It is refused, as is a
// payload naming sub twice.
func TestTheAPIAndTheDatabaseSeeTheSameCaller(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a, victim := uuid.NewString(), uuid.NewString()
	raw, err := json.Marshal(authtest.Token{Subject: a, Issuer: issuer, Email: "a@example.com"}.Claims())
	require.NoError(t, err)
	payload := string(raw)
	for name, p := range map[string]string{
		"sub and SUB": strings.Replace(payload, `"sub":"`+a+`"`, `"sub":"`+a+`","SUB":"`+victim+`"`, 1),
		"sub twice":   strings.Replace(payload, `"sub":"`+a+`"`, `"sub":"`+a+`","sub":"`+victim+`"`, 1),
	} {
		tok := authtest.HS256Raw(p, []byte(jwtSecret))
		for _, target := range []struct{ method, path string }{{http.MethodGet, "/v1/me"}, {http.MethodGet, "/v1/connections"}} {
			status, h, body := b.do(t, bearer(tok), target.method, target.path, nil)
			requireProblem(t, status, h, body, http.StatusUnauthorized, name+" "+target.path)
			require.NotContains(t, string(body), victim)
		}
	}
	status, _, body := b.do(t, bearer(authtest.HS256Raw(payload, []byte(jwtSecret))), http.MethodGet, "/v1/me", nil)
	require.Equal(t, http.StatusOK, status, "control: %s", body)
}
