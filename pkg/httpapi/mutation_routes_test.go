package httpapi_test

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/authtest"
	"github.com/tokka-dev/tokka/pkg/httpapi"
)

var pathParam = regexp.MustCompile(`:[A-Za-z_]+`)

// TestEveryMutatingRouteIsRateLimited walks the router's own route table, so
// a route added later is covered without touching this test: every /v1
// POST, PUT, PATCH and DELETE carries the RateLimit headers and, once the
// caller's budget (counted by the real Postgres function) is spent, answers
// 429 with Retry-After. Requests refused as malformed spend nothing (issue
// 16), so each route gets a well-formed request: wellFormed below has one
// per known route, and a route added later without an entry is sent an
// empty JSON object, which fails here until it is given one. Whatever the
// handler then answers (201, 404 for an id that is not the caller's) does
// not matter; the limit comes first.
func TestEveryMutatingRouteIsRateLimited(t *testing.T) {
	t.Parallel()
	b := setup(t, fromIP(uniqueLoopback()), configured(httpapi.Config{RateLimits: httpapi.RateLimits{PerUser: 1, PerIP: 100000, Window: testWindow}}))

	covered := map[string]bool{}
	for _, r := range b.e.Routes() {
		switch r.Method {
		case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		default:
			continue
		}
		if len(r.Path) < 4 || r.Path[:4] != "/v1/" {
			continue
		}
		route := r.Method + " " + r.Path
		covered[route] = true
		// Well-formed ids that are nobody's: alerts are numbered, the rest
		// are UUIDs.
		id := uuid.NewString()
		if strings.HasPrefix(r.Path, "/v1/alerts/") {
			id = "987654321"
		}
		path := pathParam.ReplaceAllStringFunc(r.Path, func(p string) string {
			if p == ":token" {
				return wellFormedToken // an invitation token nobody was given
			}
			return id
		})
		body, known := wellFormed[route]
		if !known && r.Method != http.MethodDelete {
			body = map[string]any{}
		}
		u := b.newUser(t) // a budget of one mutation, this route's alone

		status, h, resp := b.do(t, u, r.Method, path, body)
		require.NotEqual(t, http.StatusTooManyRequests, status, "%s: the first mutation is within budget: %s", route, resp)
		require.Equal(t, "1", h.Get("RateLimit-Limit"), "%s must carry the RateLimit headers", route)
		require.Equal(t, "0", h.Get("RateLimit-Remaining"), route)
		reset, err := strconv.Atoi(h.Get("RateLimit-Reset"))
		require.NoError(t, err, route)
		require.Positive(t, reset, route)

		status, h, resp = b.do(t, u, r.Method, path, body)
		requireProblem(t, status, h, resp, http.StatusTooManyRequests, route+" once the budget is spent: %s")
		require.Equal(t, "0", h.Get("RateLimit-Remaining"), route)
		require.Equal(t, h.Get("RateLimit-Reset"), h.Get("Retry-After"), route)
	}
	// The walk must see the routes it exists for; a filter that matched
	// nothing would pass vacuously.
	for _, route := range []string{"POST /v1/connections", "PATCH /v1/connections/:id", "DELETE /v1/connections/:id",
		"POST /v1/connections/:id/sync", "POST /v1/alerts/:id/acknowledge", "POST /v1/budgets",
		"PATCH /v1/budgets/:id", "DELETE /v1/budgets/:id", "POST /v1/teams", "POST /v1/teams/:team/invitations",
		"POST /v1/invitations/:token/accept"} {
		require.True(t, covered[route], "%s is not in the router's table", route)
	}
}

// TestOtherHMACAlgsAreRefusedOverHTTP sends HS384 and HS512 tokens signed
// with the project's real secret, with the exact Supabase claims, to a read
// and a mutation: both are 401 problems, while the same claims under HS256
// pass.
func TestOtherHMACAlgsAreRefusedOverHTTP(t *testing.T) {
	t.Parallel()
	b := setup(t)
	claims := authtest.Token{Issuer: issuer}.Claims()
	good, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(jwtSecret))
	require.NoError(t, err)
	status, _, resp := b.do(t, bearer(good), http.MethodGet, "/v1/me", nil)
	require.Equal(t, http.StatusOK, status, "HS256 control: %s", resp)
	for _, m := range []*jwt.SigningMethodHMAC{jwt.SigningMethodHS384, jwt.SigningMethodHS512} {
		tok, err := jwt.NewWithClaims(m, claims).SignedString([]byte(jwtSecret))
		require.NoError(t, err)
		status, h, resp := b.do(t, bearer(tok), http.MethodGet, "/v1/me", nil)
		requireProblem(t, status, h, resp, http.StatusUnauthorized, m.Alg()+" signed with the project secret: %s")
		status, h, resp = b.do(t, bearer(tok), http.MethodPost, "/v1/connections", newConnBody("sk-admin-hmacalg0123456789abcdef"))
		requireProblem(t, status, h, resp, http.StatusUnauthorized, m.Alg()+" signed with the project secret: %s")
	}
	require.Zero(t, b.countConnections(t, claims["sub"].(string)))
}

// wellFormed is a request body that passes each mutating route's own checks
// (nil: no body), so what the rate-limit walk sees is the limit.
var wellFormed = map[string]any{
	"POST /v1/connections": map[string]any{"provider": "openai", "label": "limit walk",
		"api_key": "sk-admin-LIMITWALK0123456789abcdefWXYZ"},
	"PATCH /v1/connections/:id":       map[string]any{"label": "renamed"},
	"DELETE /v1/connections/:id":      nil,
	"POST /v1/connections/:id/sync":   nil,
	"POST /v1/alerts/:id/acknowledge": nil,
	"POST /v1/budgets": map[string]any{"name": "limit walk", "amount_usd": "10", "scope": "all",
		"thresholds": []int{50}},
	"PATCH /v1/budgets/:id":                          map[string]any{"name": "renamed"},
	"DELETE /v1/budgets/:id":                         nil,
	"POST /v1/teams":                                 map[string]any{"name": "limit walk"},
	"PATCH /v1/teams/:team":                          map[string]any{"name": "renamed"},
	"DELETE /v1/teams/:team":                         nil,
	"PATCH /v1/teams/:team/members/:user":            map[string]any{"role": "viewer"},
	"DELETE /v1/teams/:team/members/:user":           nil,
	"POST /v1/teams/:team/invitations":               map[string]any{"email": "walk@example.com", "role": "viewer"},
	"DELETE /v1/teams/:team/invitations/:invitation": nil,
	"POST /v1/invitations/:token/accept":             nil,
}

// wellFormedToken has an invitation token's shape.
const wellFormedToken = "tki_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
