package httpapi

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// QueryParam is one query parameter a route accepts.
type QueryParam struct {
	Name string
	// List marks a list-valued parameter (openapi.yaml: an array with style
	// form, explode false): it may be one comma-separated value, repeated,
	// or both, and the values are combined in order. Any other parameter
	// may be given at most once.
	List bool
}

var (
	usageFilters = []QueryParam{{Name: "provider"}, {Name: "connection"}, {Name: "model"}, {Name: "project"},
		{Name: "api_key"}, {Name: "service_tier"}}
	usageRange = append(append([]QueryParam{{Name: "from"}, {Name: "to"}, {Name: "group_by", List: true}}, usageFilters...),
		QueryParam{Name: "include_zero"})
	// focusRange is usageRange without group_by (a FOCUS export has a
	// fixed grain), include_zero (a charge of nothing is no charge) and
	// service_tier (costs are not reported per tier).
	focusRange = []QueryParam{{Name: "from"}, {Name: "to"}, {Name: "provider"}, {Name: "connection"}, {Name: "model"},
		{Name: "project"}, {Name: "api_key"}}
	paging = []QueryParam{{Name: "limit"}, {Name: "cursor"}}
)

// routeQueryParams is the one list of the query parameters each route
// accepts ("METHOD route-template"); a route missing here accepts none.
// TestQueryParametersMatchTheSpec (openapi_test.go) keeps it equal to the
// parameters openapi.yaml declares.
var routeQueryParams = withTeam(map[string][]QueryParam{
	"GET /v1/usage":                   append(slices.Clone(usageRange), QueryParam{Name: "limit"}, QueryParam{Name: "cursor"}),
	"GET /v1/usage/summary":           nil,
	"GET /v1/usage/export.csv":        usageRange,
	"GET /v1/usage/export.focus.csv":  focusRange,
	"GET /v1/audit-events":            paging,
	"GET /v1/audit-events/verify":     {{Name: "full"}},
	"GET /v1/alerts":                  append(slices.Clone(paging), QueryParam{Name: "open"}),
	"POST /v1/alerts/:id/acknowledge": nil,
	"GET /v1/connections":             paging,
	"POST /v1/connections":            nil,
	"GET /v1/connections/:id":         nil,
	"PATCH /v1/connections/:id":       nil,
	"DELETE /v1/connections/:id":      nil,
	"POST /v1/connections/:id/sync":   nil,
	"GET /v1/connections/:id/keys":    paging,
	"GET /v1/budgets":                 paging,
	"POST /v1/budgets":                nil,
	"GET /v1/budgets/:id":             nil,
	"PATCH /v1/budgets/:id":           nil,
	"DELETE /v1/budgets/:id":          nil,
	"GET /v1/budgets/:id/deliveries":  paging,
})

// The team routes take the team from the path.
var teamQueryParams = map[string][]QueryParam{
	"GET /v1/teams":                   paging,
	"GET /v1/teams/:team/members":     paging,
	"GET /v1/teams/:team/invitations": paging,
}

func init() {
	for route, params := range teamQueryParams {
		routeQueryParams[route] = params
	}
}

// withTeam adds team_id to every route of m: each of them acts in one team,
// the caller's personal team unless team_id names another (inTeam).
func withTeam(m map[string][]QueryParam) map[string][]QueryParam {
	for route, params := range m {
		m[route] = append(slices.Clone(params), QueryParam{Name: "team_id"})
	}
	return m
}

// QueryParameters returns, per route ("METHOD /path/:param"), the query
// parameters it accepts, for the test that checks them against
// openapi.yaml. Routes that take none are absent. It never fails.
func QueryParameters() map[string][]QueryParam {
	out := make(map[string][]QueryParam, len(routeQueryParams))
	for k, v := range routeQueryParams {
		out[k] = slices.Clone(v)
	}
	return out
}

// safeParamName is a parameter name short and plain enough to repeat in an
// error. Anything else could be a pasted key (a client that put the key in
// the query string) and is never echoed.
var safeParamName = regexp.MustCompile(`^[A-Za-z0-9_.\[\]]{1,32}$`)

// checkQuery refuses, with 400, a query string that is malformed, names a
// parameter the route does not take, or repeats one that takes one value.
// It runs before the rate limiter and the handler, so a refused request
// costs nothing and changes nothing.
func checkQuery(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		raw := c.Request().URL.RawQuery
		if raw == "" {
			return next(c)
		}
		q, err := url.ParseQuery(raw)
		if err != nil {
			return tokka.Errorf(tokka.CodeInvalid, "the query string is malformed")
		}
		method := c.Request().Method
		if method == http.MethodHead {
			method = http.MethodGet // a HEAD takes what its GET takes
		}
		allowed := routeQueryParams[method+" "+c.Path()]
		names := make([]string, 0, len(q))
		for name := range q {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			i := slices.IndexFunc(allowed, func(p QueryParam) bool { return p.Name == name })
			if i < 0 {
				return unknownParam(name, allowed)
			}
			if !allowed[i].List && len(q[name]) > 1 {
				return &tokka.Error{Code: tokka.CodeInvalid, Field: name, Message: name + " may be given only once"}
			}
		}
		return next(c)
	}
}

func unknownParam(name string, allowed []QueryParam) error {
	takes := "this route takes no query parameters"
	if len(allowed) > 0 {
		names := make([]string, len(allowed))
		for i, p := range allowed {
			names[i] = p.Name
		}
		takes = "this route takes " + strings.Join(names, ", ")
	}
	if !safeParamName.MatchString(name) {
		return tokka.Errorf(tokka.CodeInvalid, "unknown query parameter; %s", takes)
	}
	return &tokka.Error{Code: tokka.CodeInvalid, Field: name, Message: fmt.Sprintf("unknown query parameter %q; %s", name, takes)}
}

// listParam returns a list-valued parameter's values: every occurrence,
// each split at commas, in order. An empty element is an error; a single
// empty value is no value.
func listParam(c echo.Context, name string) ([]string, bool) {
	var out []string
	for _, v := range c.QueryParams()[name] {
		if v == "" {
			continue
		}
		for _, part := range strings.Split(v, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				return nil, false
			}
			out = append(out, part)
		}
	}
	return out, true
}
