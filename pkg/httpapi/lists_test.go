package httpapi_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// listPage is the one shape of every list response.
type listPage struct {
	Data       []map[string]any `json:"data"`
	HasMore    *bool            `json:"has_more"`
	NextCursor *string          `json:"next_cursor"`
}

// walk reads every page of a list, limit items at a time, checking the
// shape on each, and returns the items in order and the cursors it saw.
// between, when set, runs after the first page.
func (b *testBundle) walk(t *testing.T, u user, path string, limit int, between func()) ([]map[string]any, []string) {
	t.Helper()
	var items []map[string]any
	var cursors []string
	route, query, _ := strings.Cut(path, "?")
	q, err := url.ParseQuery(query)
	require.NoError(t, err)
	q.Set("limit", strconv.Itoa(limit))
	for pages := 0; ; pages++ {
		require.Less(t, pages, 100, path)
		status, _, body := b.do(t, u, http.MethodGet, route+"?"+q.Encode(), nil)
		require.Equal(t, http.StatusOK, status, "%s: %s", path, body)
		var p listPage
		require.NoError(t, json.Unmarshal(body, &p))
		require.NotNil(t, p.Data, "%s: data", path)
		require.NotNil(t, p.HasMore, "%s: has_more", path)
		require.LessOrEqual(t, len(p.Data), limit)
		items = append(items, p.Data...)
		if !*p.HasMore {
			require.Nil(t, p.NextCursor, "%s: the last page has no next_cursor", path)
			return items, cursors
		}
		require.Len(t, p.Data, limit, path)
		require.NotNil(t, p.NextCursor, path)
		cursors = append(cursors, *p.NextCursor)
		q.Set("cursor", *p.NextCursor)
		if pages == 0 && between != nil {
			between()
		}
	}
}

// TestEveryListHasOneShape: connections, budgets, alerts, audit events, a
// budget's deliveries and usage rows all answer {data, has_more,
// next_cursor}, take limit (up to a documented maximum) and cursor, and
// page through every item exactly once in their documented order, even
// when items are added between two pages. Cursors are opaque (no id to do
// arithmetic on), belong to their own list, and a forged one is a 400.
func TestEveryListHasOneShape(t *testing.T) {
	t.Parallel()
	b := setup(t, fromIP(uniqueLoopback()))
	alice := b.newUser(t)
	var conns []string
	for range 5 {
		conns = append(conns, b.connect(t, alice))
	}
	var budgets []string
	for range 5 {
		status, _, body := b.do(t, alice, http.MethodPost, "/v1/budgets", map[string]string{"amount_usd": "5"})
		require.Equal(t, http.StatusCreated, status, string(body))
		var bud struct{ ID string }
		require.NoError(t, json.Unmarshal(body, &bud))
		budgets = append(budgets, bud.ID)
	}
	for i := range 5 {
		var alert int64
		require.NoError(t, b.sql.Get(&alert, `INSERT INTO tokka.alerts (team_id, kind, dedup_key, title)
			VALUES ($1, 'budget_threshold', $2, 't') RETURNING id`, alice.id, "k"+strconv.Itoa(i)))
		_, err := b.sql.Exec(`INSERT INTO tokka.budget_deliveries (team_id, budget_id, alert_id, channel) VALUES ($1, $2, $3, 'webhook')`,
			alice.id, budgets[0], alert)
		require.NoError(t, err)
	}
	ids := func(items []map[string]any) []string {
		out := make([]string, len(items))
		for i, it := range items {
			switch v := it["id"].(type) {
			case string:
				out[i] = v
			case float64:
				out[i] = strconv.FormatInt(int64(v), 10)
			}
		}
		return out
	}

	// Oldest first, with one added after the first page: it comes last.
	var added string
	got, cursors := b.walk(t, alice, "/v1/connections", 2, func() { added = b.connect(t, alice) })
	require.Equal(t, append(conns, added), ids(got))
	got, _ = b.walk(t, alice, "/v1/budgets", 2, nil)
	require.Equal(t, budgets, ids(got))
	// Newest first.
	got, _ = b.walk(t, alice, "/v1/alerts", 2, nil)
	require.Len(t, got, 5)
	got, _ = b.walk(t, alice, "/v1/budgets/"+budgets[0]+"/deliveries", 2, nil)
	require.Len(t, got, 5)
	for i := 1; i < len(got); i++ {
		require.Greater(t, got[i-1]["id"], got[i]["id"])
	}
	events, auditCursors := b.walk(t, alice, "/v1/audit-events", 4, nil)
	require.Len(t, events, 6, "six key.created events")
	usage, _ := b.walk(t, alice, "/v1/usage?group_by=connection", 1, nil)
	require.Empty(t, usage, "no usage yet is an empty page, not a missing list")
	status, _, body := b.do(t, alice, http.MethodGet, "/v1/budgets/"+budgets[1]+"/deliveries", nil)
	require.Equal(t, http.StatusOK, status)
	require.JSONEq(t, `{"data":[],"has_more":false,"next_cursor":null}`, string(body))

	// Cursors are not ids, belong to their list, and cannot be forged.
	for _, c := range append(cursors, auditCursors...) {
		_, err := strconv.ParseInt(c, 10, 64)
		require.Error(t, err, "cursor %q is a plain number", c)
	}
	bob := b.newUser(t)
	for _, tc := range []struct{ path, cursor string }{
		{"/v1/budgets", cursors[0]},
		{"/v1/alerts", cursors[0]},
		{"/v1/audit-events", cursors[0]},
		{"/v1/connections", auditCursors[0]},
		{"/v1/budgets/" + budgets[1] + "/deliveries", auditCursors[0]},
		{"/v1/usage", cursors[0]},
		{"/v1/connections", "2147483648"},
		{"/v1/alerts", "2147483648"},
		{"/v1/connections", "eyJ2IjoxLCJxIjoiY29ubmVjdGlvbnMiLCJrIjpbIngiLCJ5Il19"}, // {"v":1,"q":"connections","k":["x","y"]}
		{"/v1/audit-events", "eyJ2IjoxLCJxIjoiYXVkaXQtZXZlbnRzIiwiayI6WyItMSJdfQ"},  // {"v":1,"q":"audit-events","k":["-1"]}
	} {
		status, h, body := b.do(t, alice, http.MethodGet, tc.path+"?cursor="+url.QueryEscape(tc.cursor), nil)
		requireProblem(t, status, h, body, http.StatusBadRequest, tc.path)
		require.Contains(t, string(body), `"field":"cursor"`, tc.path)
	}
	for _, path := range []string{"/v1/connections", "/v1/budgets", "/v1/alerts", "/v1/audit-events", "/v1/budgets/" + budgets[0] + "/deliveries"} {
		for _, limit := range []string{"0", "201", "x"} {
			status, h, body := b.do(t, alice, http.MethodGet, path+"?limit="+limit, nil)
			requireProblem(t, status, h, body, http.StatusBadRequest, path+" limit "+limit)
		}
		status, _, body := b.do(t, alice, http.MethodGet, path+"?limit=200", nil)
		require.Equal(t, http.StatusOK, status, "%s: %s", path, body)
	}
	// Another user's budget has no deliveries to list: it is not there.
	status, h, body := b.do(t, bob, http.MethodGet, "/v1/budgets/"+budgets[0]+"/deliveries", nil)
	requireProblem(t, status, h, body, http.StatusNotFound)
}
