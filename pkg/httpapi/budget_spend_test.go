package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/httpapi"
)

// TestInvalidRequestsSpendNoBudget: a mutation refused for its own content
// (malformed or unknown body, wrong media type, a value out of range, an id
// that cannot exist, nothing to change) is refused before the caller's
// mutation budget is counted, so a client that gets its requests wrong
// cannot lock itself out, and a valid request afterwards still has the
// budget it had.
func TestInvalidRequestsSpendNoBudget(t *testing.T) {
	t.Parallel()
	const budget = 3
	b := setup(t, configured(httpapi.Config{RateLimits: httpapi.RateLimits{PerUser: budget}}), fromIP(uniqueLoopback()))
	alice := b.newUser(t)
	id := b.connect(t, alice) // spends one
	const json = "application/json"
	refused := []struct {
		method, path, contentType, body string
		want                            int
	}{
		{http.MethodPost, "/v1/connections", json, `{"provider":"openai"`, http.StatusBadRequest},
		{http.MethodPost, "/v1/connections", json, `{"provider":"openai","api_key":"sk-admin-0123456789abc","user_id":"x"}`, http.StatusBadRequest},
		{http.MethodPost, "/v1/connections", json, `{"provider":"openai","api_key":"sk-admin-0123456789abc","team_id":"x"}`, http.StatusBadRequest},
		{http.MethodPost, "/v1/connections", "text/plain", `{"provider":"openai","api_key":"sk-admin-0123456789abc"}`, http.StatusUnsupportedMediaType},
		{http.MethodPost, "/v1/connections", json, `{"provider":"google","api_key":"sk-admin-0123456789abc"}`, http.StatusBadRequest},
		{http.MethodPost, "/v1/connections", json, `{"provider":"openai","api_key":"sk-ant-admin01-0123456789abc"}`, http.StatusBadRequest},
		{http.MethodPost, "/v1/connections", json, `{"provider":"openai","label":"` + strings.Repeat("x", 101) + `","api_key":"sk-admin-0123456789abc"}`, http.StatusBadRequest},
		{http.MethodPost, "/v1/connections", json, `{"provider":"openai","api_key":"sk-admin-` + strings.Repeat("a", 70<<10) + `"}`, http.StatusRequestEntityTooLarge},
		{http.MethodPatch, "/v1/connections/" + id, json, `{}`, http.StatusBadRequest},
		{http.MethodPatch, "/v1/connections/" + id, json, `{"label":"a\u0007b"}`, http.StatusBadRequest},
		{http.MethodPatch, "/v1/connections/" + id, json, `{"api_key":"sk-admin-with space 0123456789"}`, http.StatusBadRequest},
		{http.MethodDelete, "/v1/connections/not-an-id", "", "", http.StatusNotFound},
		{http.MethodPost, "/v1/connections/not-an-id/sync", "", "", http.StatusNotFound},
		{http.MethodPost, "/v1/alerts/0/acknowledge", "", "", http.StatusNotFound},
		{http.MethodPost, "/v1/budgets", json, `{"amount_usd":500}`, http.StatusBadRequest},
		{http.MethodPost, "/v1/budgets", json, `{"amount_usd":"-5"}`, http.StatusBadRequest},
		{http.MethodPost, "/v1/budgets", json, `{"amount_usd":"5","scope":"team"}`, http.StatusBadRequest},
		{http.MethodPost, "/v1/budgets", json, `{"amount_usd":"5","thresholds":[0]}`, http.StatusBadRequest},
		{http.MethodPatch, "/v1/budgets/00000000-0000-4000-8000-000000000000", json, `{"amount_usd":"x"}`, http.StatusBadRequest},
		{http.MethodDelete, "/v1/budgets/not-an-id", "", "", http.StatusNotFound},
	}
	for round := 0; round < 2; round++ {
		for _, tc := range refused {
			var hdr []string
			if tc.contentType != "" {
				hdr = []string{"Content-Type", tc.contentType}
			}
			status, h, body := b.send(t, tc.method, tc.path, alice.token, tc.body, hdr...)
			requireProblem(t, status, h, body, tc.want, tc.method+" "+tc.path+" "+tc.body)
			require.Empty(t, h.Get("RateLimit-Remaining"), "%s %s was counted", tc.method, tc.path)
		}
	}

	status, h, body := b.do(t, alice, http.MethodPost, "/v1/connections", newConnBody(uniqueKey("sk-admin-afterinvalid")))
	require.Equal(t, http.StatusCreated, status, string(body))
	require.Equal(t, strconv.Itoa(budget-2), h.Get("RateLimit-Remaining"), "only the two valid requests were counted")
}

// TestSyncCooldownIsItsOwnProblem: "sync now" too soon for one connection
// is a 429 whose problem type says so (not the rate limit's), with
// Retry-After for the cool-down and no RateLimit-* headers, which would
// report budget left and invite a retry before Retry-After.
func TestSyncCooldownIsItsOwnProblem(t *testing.T) {
	t.Parallel()
	b := setup(t, fromIP(uniqueLoopback()))
	alice := b.newUser(t)
	id := b.connect(t, alice)
	status, h, body := b.do(t, alice, http.MethodPost, "/v1/connections/"+id+"/sync", nil)
	require.Equal(t, http.StatusAccepted, status, string(body))
	require.NotEmpty(t, h.Get("RateLimit-Remaining"), "a counted mutation reports its budget")

	status, h, body = b.do(t, alice, http.MethodPost, "/v1/connections/"+id+"/sync", nil)
	requireProblem(t, status, h, body, http.StatusTooManyRequests)
	var p httpapi.Problem
	require.NoError(t, json.Unmarshal(body, &p))
	require.Equal(t, httpapi.SyncCooldownType, p.Type)
	require.Equal(t, "https://tokka.dev/problems/sync-cooldown", p.Type)
	retry, err := strconv.Atoi(h.Get("Retry-After"))
	require.NoError(t, err)
	require.Positive(t, retry)
	require.Contains(t, p.Detail, "try again in "+h.Get("Retry-After")+" seconds")
	for _, name := range []string{"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} {
		require.Empty(t, h.Values(name), name)
	}
}
