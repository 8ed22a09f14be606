package httpapi_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/httpapi"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

type usagePage struct {
	GroupBy    []string          `json:"group_by"`
	Filters    map[string]string `json:"filters"`
	Data       []map[string]any  `json:"data"`
	Totals     map[string]any    `json:"totals"`
	NextCursor *string           `json:"next_cursor"`
}

func (b *testBundle) usage(t *testing.T, u user, q string) usagePage {
	t.Helper()
	status, _, body := b.do(t, u, http.MethodGet, "/v1/usage?"+q, nil)
	require.Equal(t, http.StatusOK, status, "%s: %s", q, body)
	var p usagePage
	require.NoError(t, json.Unmarshal(body, &p))
	return p
}

func (b *testBundle) problem(t *testing.T, u user, method, path string, body any) (int, httpapi.Problem) {
	t.Helper()
	status, h, raw := b.do(t, u, method, path, body)
	require.Equal(t, "application/problem+json", h.Get("Content-Type"), "%s %s: %s", method, path, raw)
	var p httpapi.Problem
	require.NoError(t, json.Unmarshal(raw, &p))
	return status, p
}

// An id written in upper case is the same id: filters, path parameters and
// budgets' connection_id all take it and answer with the canonical
// lower-case form, never an empty result.
func TestUppercaseIdsAreTheSameIds(t *testing.T) {
	t.Parallel()
	b := setup(t, at(nov5))
	alice := b.newUser(t)
	openaiID, _ := spendFixture(t, b, alice)
	upper := strings.ToUpper(openaiID)

	const q = "from=2026-10-01&to=2026-11-05&group_by=connection"
	lower := b.usage(t, alice, q+"&connection="+openaiID)
	require.True(t, dec("36").Equal(dec(lower.Totals["cost_usd"].(string))))
	got := b.usage(t, alice, q+"&connection="+upper)
	require.Equal(t, lower.Data, got.Data)
	require.Equal(t, lower.Totals, got.Totals)
	require.Equal(t, openaiID, got.Filters["connection"], "the filter is echoed in canonical form")
	status, _, body := b.do(t, alice, http.MethodGet, "/v1/usage/export.csv?"+q+"&connection="+upper, nil)
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, string(body), openaiID)

	status, _, body = b.do(t, alice, http.MethodGet, "/v1/connections/"+upper, nil)
	require.Equal(t, http.StatusOK, status, string(body))
	require.Contains(t, string(body), `"id":"`+openaiID+`"`)
	status, _, body = b.do(t, alice, http.MethodPatch, "/v1/connections/"+upper, map[string]string{"label": "renamed"})
	require.Equal(t, http.StatusOK, status, string(body))

	status, _, body = b.do(t, alice, http.MethodPost, "/v1/budgets",
		map[string]any{"amount_usd": "100", "scope": "connection", "connection_id": upper})
	require.Equal(t, http.StatusCreated, status, string(body))
	var bud struct {
		ID           string `json:"id"`
		ConnectionID string `json:"connection_id"`
		Status       struct {
			SpendUSD string `json:"spend_usd"`
		} `json:"status"`
	}
	require.NoError(t, json.Unmarshal(body, &bud))
	require.Equal(t, openaiID, bud.ConnectionID)
	require.True(t, dec("5").Equal(dec(bud.Status.SpendUSD)), bud.Status.SpendUSD)
	status, _, _ = b.do(t, alice, http.MethodGet, "/v1/budgets/"+strings.ToUpper(bud.ID), nil)
	require.Equal(t, http.StatusOK, status)
}

// Lists in the query string may be written as one comma-separated value, as
// repeated parameters, or both; a parameter that takes one value is refused
// when given twice, and a parameter the route does not know is refused by
// name (unless the name could be a pasted key).
func TestQueryParametersAreDeclaredPerRoute(t *testing.T) {
	t.Parallel()
	b := setup(t, at(nov5))
	alice := b.newUser(t)
	spendFixture(t, b, alice)
	const r = "from=2026-11-01&to=2026-11-02"

	comma := b.usage(t, alice, r+"&group_by=day,model")
	repeated := b.usage(t, alice, r+"&group_by=day&group_by=model")
	require.Equal(t, []string{"day", "model"}, repeated.GroupBy)
	require.Equal(t, comma.Data, repeated.Data)
	both := b.usage(t, alice, r+"&group_by=day,model&group_by=provider")
	require.Equal(t, []string{"day", "model", "provider"}, both.GroupBy)
	require.NotEmpty(t, both.Data[0]["provider"])

	refused := []struct {
		path, field, detail string
	}{
		{"/v1/usage?" + r + "&provider=openai&provider=anthropic", "provider", "provider"},
		{"/v1/usage?" + r + "&from=2026-11-01", "from", "from"},
		{"/v1/usage?" + r + "&groupBy=day", "groupBy", "groupBy"},
		{"/v1/usage?" + r + "&limit=5&limit=6", "limit", "limit"},
		{"/v1/usage/export.csv?" + r + "&limit=5", "limit", "limit"},
		{"/v1/usage/summary?month=2026-11", "month", "month"},
		{"/v1/connections?limit=500", "limit", "limit"},
		{"/v1/connections?cursor=abc", "cursor", "cursor"},
		{"/v1/budgets?limit=5&limit=6", "limit", "limit"},
		{"/v1/me?x=1", "x", "x"},
		{"/v1/alerts?open=true&open=false", "open", "open"},
		{"/v1/audit-events?cursor=1&cursor=2", "cursor", "cursor"},
		{"/v1/audit-events/verify?since=1", "since", "since"},
		{"/v1/audit-events/verify?full=true&full=false", "full", "full"},
	}
	for _, tc := range refused {
		status, p := b.problem(t, alice, http.MethodGet, tc.path, nil)
		require.Equal(t, http.StatusBadRequest, status, tc.path)
		require.Equal(t, tc.field, p.Field, tc.path)
		require.Contains(t, p.Detail, tc.detail, tc.path)
	}
	for _, malformed := range []string{"from=%zz", "from=2026-11-01;to=2026-11-02"} {
		status, p := b.problem(t, alice, http.MethodGet, "/v1/usage?"+malformed, nil)
		require.Equal(t, http.StatusBadRequest, status, malformed)
		require.Contains(t, p.Detail, "malformed")
	}
	status, p := b.problem(t, alice, http.MethodPost, "/v1/connections?dry_run=1",
		map[string]string{"provider": "openai", "api_key": "sk-admin-queryparam0123456789"})
	require.Equal(t, http.StatusBadRequest, status)
	require.Equal(t, "dry_run", p.Field)
	var n int
	require.NoError(t, b.sql.Get(&n, `SELECT count(*) FROM tokka.connections WHERE team_id = $1`, alice.id))
	require.Equal(t, 2, n, "a refused request changes nothing")

	// A name that could be a key is never repeated back.
	const canary = "sk-admin-CANARYqueryNAME0123456789"
	for _, name := range []string{canary, strings.Repeat("a", 33), "a b", "ünï"} {
		status, h, raw := b.do(t, alice, http.MethodGet, "/v1/usage?"+r+"&"+url.QueryEscape(name)+"=1", nil)
		require.Equal(t, http.StatusBadRequest, status, name)
		require.Equal(t, "application/problem+json", h.Get("Content-Type"))
		require.NotContains(t, string(raw), "CANARY")
		require.NotContains(t, string(raw), name)
		require.Contains(t, string(raw), "unknown query parameter")
	}
	require.NotContains(t, b.logs.String(), "CANARY")
}

// A usage cursor belongs to its query: reused with other parameters it is
// refused, forged it is refused, and it keeps its place while the syncer
// replaces the days being paged through (keyset, not offset).
func TestUsageCursorIsBoundToItsQueryAndSurvivesRewrites(t *testing.T) {
	t.Parallel()
	b := setup(t, at(nov5))
	alice := b.newUser(t)
	openaiID, _ := spendFixture(t, b, alice)
	const q = "from=2026-11-01&to=2026-11-05&group_by=model,day&provider=openai&limit=2"
	first := b.usage(t, alice, q)
	require.Len(t, first.Data, 2)
	require.NotNil(t, first.NextCursor)
	cursor := "&cursor=" + url.QueryEscape(*first.NextCursor)

	for _, other := range []string{
		"from=2026-11-01&to=2026-11-04&group_by=model,day&provider=openai&limit=2",
		"from=2026-11-01&to=2026-11-05&group_by=day,model&provider=openai&limit=2",
		"from=2026-11-01&to=2026-11-05&group_by=model,day&provider=anthropic&limit=2",
		"from=2026-11-01&to=2026-11-05&group_by=model,day&limit=2",
	} {
		status, p := b.problem(t, alice, http.MethodGet, "/v1/usage?"+other+cursor, nil)
		require.Equal(t, http.StatusBadRequest, status, other)
		require.Equal(t, "cursor", p.Field)
	}
	for _, forged := range []string{"bogus", "o:2", "eyJ9", strings.Repeat("A", 600)} {
		status, p := b.problem(t, alice, http.MethodGet, "/v1/usage?"+q+"&cursor="+url.QueryEscape(forged), nil)
		require.Equal(t, http.StatusBadRequest, status, forged)
		require.Equal(t, "cursor", p.Field)
	}

	// The syncer restates the recent days meanwhile: a model that sorts
	// before the page boundary appears. Paging on must neither repeat nor
	// skip a row that existed when paging started.
	from := time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC)
	to := time.Date(2026, 11, 6, 0, 0, 0, 0, time.UTC)
	var usage []tokka.UsageRow
	var costs []tokka.CostRow
	for d := from; d.Before(to); d = d.AddDate(0, 0, 1) {
		for _, m := range []string{"gpt-a", "aaa-new"} {
			usage = append(usage, tokka.UsageRow{Day: d, Family: "completions", Model: m, ProjectID: "proj_1", Tokens: tokka.Tokens{InputUncachedTokens: 1000}})
			costs = append(costs, tokka.CostRow{Day: d, Model: m, ProjectID: "proj_1", AmountUSD: dec("1.00"), Amount: dec("1.00"), Currency: "usd"})
		}
	}
	syncRows(t, b, openaiID, tokka.Window{From: from, To: to}, usage, costs)

	seen := map[string]int{}
	for _, r := range first.Data {
		seen[r["model"].(string)+" "+r["day"].(string)]++
	}
	next := first.NextCursor
	for i := 0; next != nil && i < 20; i++ {
		p := b.usage(t, alice, q+"&cursor="+url.QueryEscape(*next))
		for _, r := range p.Data {
			seen[r["model"].(string)+" "+r["day"].(string)]++
		}
		next = p.NextCursor
	}
	require.Nil(t, next)
	for d := 1; d <= 5; d++ {
		k := "gpt-a 2026-11-0" + strconv.Itoa(d)
		require.Equal(t, 1, seen[k], k)
	}
	for k, n := range seen {
		require.Equal(t, 1, n, "%s seen %d times", k, n)
	}
}

// Cursors of the id-paged lists hold ids as they are: beyond 2^31 paging
// works, and a cursor that does not hold a positive 64-bit id, or is not a
// cursor at all, is a 400.
func TestIDCursorsPastInt32AndForgedOnes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice := b.newUser(t)
	// Advancing the identity sequences only makes later ids larger for
	// every test in the package, which none depends on.
	for _, table := range []string{"audit_events", "alerts"} {
		_, err := b.sql.Exec(`SELECT setval(pg_get_serial_sequence('tokka.` + table + `', 'id'),
			greatest(3000000000, (SELECT last_value FROM pg_sequences WHERE schemaname = 'tokka'
			  AND sequencename = pg_get_serial_sequence('tokka.` + table + `', 'id')::regclass::text)))`)
		require.NoError(t, err)
	}
	for i := 0; i < 3; i++ {
		b.createConnection(t, alice, tokka.OpenAI, "sk-admin-bigcursor0123456789abc"+strconv.Itoa(i))
		_, err := b.db.RaiseAlert(context.Background(), tokka.Alert{TeamID: alice.id, Kind: tokka.AlertSpendAnomaly,
			DedupKey: "big:" + strconv.Itoa(i), Title: "big"})
		require.NoError(t, err)
	}
	for _, list := range []struct{ path, name string }{{"/v1/audit-events", "audit-events"}, {"/v1/alerts", "alerts"}} {
		var ids []int64
		path := list.path + "?limit=1"
		for i := 0; i < 10; i++ {
			status, _, body := b.do(t, alice, http.MethodGet, path, nil)
			require.Equal(t, http.StatusOK, status, "%s: %s", path, body)
			var page map[string]json.RawMessage
			require.NoError(t, json.Unmarshal(body, &page))
			var items []struct{ ID int64 }
			require.NoError(t, json.Unmarshal(page["data"], &items))
			for _, it := range items {
				ids = append(ids, it.ID)
			}
			var next *string
			require.NoError(t, json.Unmarshal(page["next_cursor"], &next))
			if next == nil {
				break
			}
			path = list.path + "?limit=1&cursor=" + *next
		}
		require.Len(t, ids, 3, list.path)
		for i, id := range ids {
			require.Greater(t, id, int64(1)<<31, list.path)
			if i > 0 {
				require.Less(t, id, ids[i-1], "newest first")
			}
		}
		holding := func(id string) string {
			return base64.RawURLEncoding.EncodeToString([]byte(`{"v":1,"q":"` + list.name + `","k":["` + id + `"]}`))
		}
		status, _, body := b.do(t, alice, http.MethodGet, list.path+"?cursor="+holding("2147483648"), nil)
		require.Equal(t, http.StatusOK, status, string(body))
		status, _, _ = b.do(t, alice, http.MethodGet, list.path+"?cursor="+holding("9223372036854775807"), nil)
		require.Equal(t, http.StatusOK, status)
		for _, forged := range []string{"abc", "-1", "0", "1.5", "+5", "9223372036854775808", "99999999999999999999", "0x10", " 7"} {
			for _, cursor := range []string{forged, holding(forged)} {
				status, p := b.problem(t, alice, http.MethodGet, list.path+"?cursor="+url.QueryEscape(cursor), nil)
				require.Equal(t, http.StatusBadRequest, status, "%s cursor %q", list.path, cursor)
				require.Equal(t, "cursor", p.Field)
			}
		}
	}
}
