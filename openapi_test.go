package openapi_test

import (
	"context"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	openapi "github.com/tokka-dev/tokka"
	"github.com/tokka-dev/tokka/pkg/httpapi"
)

func loadSpec(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(openapi.Spec)
	require.NoError(t, err)
	require.NoError(t, doc.Validate(context.Background()))
	return doc
}

var echoParam = regexp.MustCompile(`:([A-Za-z0-9_]+)`)

// TestSpecInventoryMatchesRouter fails when a route of the real router is
// missing from openapi.yaml, or the spec lists an operation the router does
// not serve. The router is built exactly as the api builds it (with CORS on,
// which must not add routes of its own).
func TestSpecInventoryMatchesRouter(t *testing.T) {
	t.Parallel()
	e := httpapi.New(httpapi.Config{CORSAllowedOrigins: []string{"https://app.example.com"}}, nil, nil, nil, zerolog.Nop(), openapi.Spec)
	var routes []string
	for _, r := range e.Routes() {
		routes = append(routes, r.Method+" "+echoParam.ReplaceAllString(r.Path, "{$1}"))
	}
	var ops []string
	for path, item := range loadSpec(t).Paths.Map() {
		for method := range item.Operations() {
			ops = append(ops, method+" "+path)
		}
	}
	sort.Strings(routes)
	sort.Strings(ops)
	require.NotEmpty(t, routes)
	var missing, extra []string
	for _, r := range routes {
		if !slices.Contains(ops, r) {
			missing = append(missing, r)
		}
	}
	for _, o := range ops {
		if !slices.Contains(routes, o) {
			extra = append(extra, o)
		}
	}
	require.Empty(t, missing, "routes the router serves that openapi.yaml does not describe")
	require.Empty(t, extra, "operations in openapi.yaml that the router does not serve")
}

// TestSpecDescribesEveryResponseKind checks the rules every operation
// follows, so a new route cannot be added to the spec half-described: an
// operationId, summary and tag; path parameters declared; bearer auth on
// /v1 (with its 401 and 403) and none elsewhere; every error a problem+json
// document carrying X-Request-Id; a 500 everywhere; every 503 with
// Retry-After; for /v1 mutations, the rate-limit headers on success and a
// 429 with Retry-After; and for /v1 POSTs the Idempotency-Key header with
// its 409 and 422. Every operation declares 406 (Accept is honoured);
// operations with a body declare 400, 413 and 415; every 201 carries
// Location. Every GET has a HEAD with the same statuses, whose responses
// have no body.
func TestSpecDescribesEveryResponseKind(t *testing.T) {
	t.Parallel()
	doc := loadSpec(t)
	require.Contains(t, doc.Components.SecuritySchemes, "bearerAuth")
	require.Len(t, doc.Security, 1)
	require.Contains(t, doc.Security[0], "bearerAuth", "bearer auth is the default for every operation")
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			name := method + " " + path
			require.NotEmpty(t, op.OperationID, name)
			require.NotEmpty(t, op.Summary, name)
			require.NotEmpty(t, op.Tags, name)
			params := append(slices.Clone(item.Parameters), op.Parameters...)
			for _, m := range regexp.MustCompile(`\{([^}]+)\}`).FindAllStringSubmatch(path, -1) {
				p := params.GetByInAndName("path", m[1])
				require.NotNil(t, p, "%s: path parameter %s is not declared", name, m[1])
				require.True(t, p.Required, name)
			}
			v1 := strings.HasPrefix(path, "/v1/")
			if v1 {
				require.Nil(t, op.Security, "%s uses the default bearer auth", name)
				require.NotNil(t, op.Responses.Status(401), "%s: 401", name)
				require.NotNil(t, op.Responses.Status(403), "%s: 403 (anonymous sign-ins)", name)
			} else {
				require.NotNil(t, op.Security, name)
				require.Empty(t, *op.Security, "%s needs no token", name)
			}
			require.NotNil(t, op.Responses.Status(500), "%s: 500", name)
			require.NotNil(t, op.Responses.Status(400), "%s: 400 (every route refuses unknown query parameters)", name)
			require.NotNil(t, op.Responses.Status(406), "%s: 406 (every route honours Accept)", name)
			head := method == http.MethodHead
			if head {
				get := item.GetOperation(http.MethodGet)
				require.NotNil(t, get, "%s answers HEAD only beside GET", name)
				require.ElementsMatch(t, slices.Collect(maps.Keys(get.Responses.Map())), slices.Collect(maps.Keys(op.Responses.Map())),
					"%s has the statuses of its GET", name)
			} else if method == http.MethodGet {
				require.NotNil(t, item.GetOperation(http.MethodHead), "%s: every GET route answers HEAD too", name)
			}
			ok := false
			for code, ref := range op.Responses.Map() {
				resp := ref.Value
				require.NotNil(t, resp.Description, "%s %s", name, code)
				if head {
					require.Empty(t, resp.Content, "%s %s: a HEAD response has no body", name, code)
				}
				if code[0] == '2' {
					ok = true
					if code == "201" {
						loc := resp.Headers["Location"]
						require.NotNil(t, loc, "%s 201 declares Location", name)
						require.True(t, loc.Value.Required, "%s 201 always carries Location", name)
					}
					continue
				}
				require.Contains(t, resp.Headers, "X-Request-Id", "%s %s", name, code)
				if head {
					continue
				}
				require.Len(t, resp.Content, 1, "%s %s", name, code)
				require.NotNil(t, resp.Content.Get("application/problem+json"), "%s %s is a problem document", name, code)
			}
			require.True(t, ok, "%s has a success response", name)
			if unavailable := op.Responses.Status(503); unavailable != nil {
				require.Contains(t, unavailable.Value.Headers, "Retry-After", "%s 503", name)
			}
			if op.RequestBody != nil {
				require.NotNil(t, op.Responses.Status(400), "%s: 400", name)
				require.NotNil(t, op.Responses.Status(413), "%s: 413", name)
				require.NotNil(t, op.Responses.Status(415), "%s: 415 (the body must be application/json)", name)
			}
			if v1 && method != http.MethodGet && method != http.MethodHead {
				tooMany := op.Responses.Status(429)
				require.NotNil(t, tooMany, "%s: 429", name)
				for _, h := range []string{"Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} {
					require.Contains(t, tooMany.Value.Headers, h, "%s 429", name)
				}
				require.NotNil(t, op.Responses.Status(503), "%s: 503 (rate limiter unavailable)", name)
				if method == http.MethodPost {
					require.NotNil(t, params.GetByInAndName("header", "Idempotency-Key"), "%s: Idempotency-Key", name)
					require.NotNil(t, op.Responses.Status(409), "%s: 409 (Idempotency-Key in use)", name)
					require.NotNil(t, op.Responses.Status(422), "%s: 422 (Idempotency-Key reused)", name)
				}
				for code, ref := range op.Responses.Map() {
					if code[0] == '2' {
						for _, h := range []string{"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} {
							require.Contains(t, ref.Value.Headers, h, "%s %s", name, code)
						}
					}
				}
			}
		}
	}
}

// TestQueryParametersMatchTheSpec fails when the query parameters a route
// accepts (httpapi.QueryParameters, the list the api enforces) differ from
// those openapi.yaml declares for it, by name or by being a list: a list is
// declared as an array with style form and explode false.
func TestQueryParametersMatchTheSpec(t *testing.T) {
	t.Parallel()
	want := map[string][]string{}
	for route, params := range httpapi.QueryParameters() {
		method, path, _ := strings.Cut(route, " ")
		key := method + " " + echoParam.ReplaceAllString(path, "{$1}")
		for _, p := range params {
			kind := "single"
			if p.List {
				kind = "list"
			}
			want[key] = append(want[key], p.Name+":"+kind)
		}
		sort.Strings(want[key])
	}
	got := map[string][]string{}
	for path, item := range loadSpec(t).Paths.Map() {
		for method, op := range item.Operations() {
			for _, ref := range append(slices.Clone(item.Parameters), op.Parameters...) {
				p := ref.Value
				if p.In != "query" {
					continue
				}
				kind := "single"
				if p.Schema.Value.Type.Is("array") {
					require.Equal(t, "form", p.Style, "%s %s %s", method, path, p.Name)
					require.NotNil(t, p.Explode, "%s %s %s", method, path, p.Name)
					require.False(t, *p.Explode, "%s %s %s", method, path, p.Name)
					kind = "list"
				}
				key := method + " " + path
				if method == http.MethodHead {
					key = http.MethodGet + " " + path + " (HEAD)" // compared with its GET below
				}
				got[key] = append(got[key], p.Name+":"+kind)
			}
		}
	}
	for k := range got {
		sort.Strings(got[k])
	}
	for k, head := range got {
		if get, ok := strings.CutSuffix(k, " (HEAD)"); ok {
			require.Equal(t, got[get], head, "HEAD %s takes what its GET takes", get)
			delete(got, k)
		}
	}
	require.NotEmpty(t, want)
	require.Equal(t, want, got)
}

// TestEveryListHasTheSameShape: every operation that answers with a list
// (a top-level array in its JSON) answers {data, has_more, next_cursor},
// all required, and takes limit (with a documented maximum) and cursor;
// usage keeps its other fields beside them.
func TestEveryListHasTheSameShape(t *testing.T) {
	t.Parallel()
	doc := loadSpec(t)
	lists := 0
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			name := method + " " + path
			ok := op.Responses.Status(200)
			if ok == nil || ok.Value.Content.Get("application/json") == nil {
				continue
			}
			schema := ok.Value.Content.Get("application/json").Schema.Value
			hasArray := false
			for prop, ref := range schema.Properties {
				if ref.Value.Type.Is("array") && prop != "group_by" && prop != "by_provider" && prop != "top_models" &&
					prop != "top_projects" && prop != "top_api_keys" && prop != "directory_unavailable" &&
					prop != "thresholds" && prop != "forecast_thresholds" {
					hasArray = true
				}
			}
			if !hasArray {
				continue
			}
			lists++
			for _, prop := range []string{"data", "has_more", "next_cursor"} {
				require.Contains(t, schema.Required, prop, "%s: %s", name, prop)
			}
			require.True(t, schema.Properties["data"].Value.Type.Is("array"), name)
			require.True(t, schema.Properties["has_more"].Value.Type.Is("boolean"), name)
			require.True(t, schema.Properties["next_cursor"].Value.Type.Is("string"), name)
			require.True(t, schema.Properties["next_cursor"].Value.Nullable, name)
			params := append(slices.Clone(item.Parameters), op.Parameters...)
			limit := params.GetByInAndName("query", "limit")
			require.NotNil(t, limit, "%s: limit", name)
			require.NotNil(t, limit.Schema.Value.Max, "%s: limit has a documented maximum", name)
			require.NotNil(t, params.GetByInAndName("query", "cursor"), "%s: cursor", name)
		}
	}
	require.GreaterOrEqual(t, lists, 6, "connections, budgets, alerts, audit events, deliveries, usage")
}
