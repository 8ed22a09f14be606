package httpapi_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/httpapi"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

var nov5 = time.Date(2026, 11, 5, 15, 30, 0, 0, time.UTC)

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// spendFixture: OpenAI model "gpt-a" costs $1.00 every day from 2026-10-01 to
// 2026-11-05 with 1000 input tokens; Anthropic "claude-b" costs $0.25 on
// November days only.
func spendFixture(t *testing.T, b *testBundle, u user) (openaiID, anthropicID string) {
	t.Helper()
	openaiID = b.createConnection(t, u, tokka.OpenAI, "sk-admin-summary0123456789abcdef")["id"].(string)
	anthropicID = b.createConnection(t, u, tokka.Anthropic, "sk-ant-admin01-summary0123456789abc")["id"].(string)
	from := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	to := time.Date(2026, 11, 6, 0, 0, 0, 0, time.UTC)
	var ou, au []tokka.UsageRow
	var oc, ac []tokka.CostRow
	for d := from; d.Before(to); d = d.AddDate(0, 0, 1) {
		ou = append(ou, tokka.UsageRow{Day: d, Family: "completions", Model: "gpt-a", ProjectID: "proj_1", ServiceTier: "default", Tokens: tokka.Tokens{InputUncachedTokens: 1000, Requests: 2}})
		oc = append(oc, tokka.CostRow{Day: d, Model: "gpt-a", LineItem: "gpt-a, input", ProjectID: "proj_1", AmountUSD: dec("1.00"), Amount: dec("1.00"), Currency: "usd"})
		if d.Month() == time.November {
			au = append(au, tokka.UsageRow{Day: d, Family: "messages", Model: "claude-b", Tokens: tokka.Tokens{OutputTokens: 10}})
			ac = append(ac, tokka.CostRow{Day: d, Model: "claude-b", LineItem: "Claude B Usage", AmountUSD: dec("0.25"), Amount: dec("25"), Currency: "USD"})
		}
		if d.Day() == 1 && d.Month() == time.November {
			// Hostile model names (a provider can return any string): zero
			// cost, so the figures above are unchanged.
			for _, m := range []string{"=HYPERLINK(\"http://x\")", "@SUM(A1)", "+1", "-1", "a,\"b\""} {
				ac = append(ac, tokka.CostRow{Day: d, Model: m, AmountUSD: dec("0"), Amount: dec("0"), Currency: "USD"})
			}
		}
	}
	w := tokka.Window{From: from, To: to}
	syncRows(t, b, openaiID, w, ou, oc)
	syncRows(t, b, anthropicID, w, au, ac)
	return openaiID, anthropicID
}

func TestUsageSummaryAndForecast(t *testing.T) {
	t.Parallel()
	b := setup(t, at(nov5))
	alice := b.newUser(t)
	spendFixture(t, b, alice)
	status, _, body := b.do(t, alice, http.MethodGet, "/v1/usage/summary", nil)
	require.Equal(t, http.StatusOK, status, string(body))
	var s struct {
		Month, Today string
		AsOf         *time.Time `json:"as_of"`
		Overall      map[string]any
		ByProvider   []map[string]any `json:"by_provider"`
		TopModels    []map[string]any `json:"top_models"`
		TopProjects  []map[string]any `json:"top_projects"`
	}
	require.NoError(t, json.Unmarshal(body, &s))
	require.Equal(t, "2026-11", s.Month)
	require.NotNil(t, s.AsOf)
	require.Len(t, s.ByProvider, 2)
	// OpenAI: $1/day. MTD = Nov 1–5 = 5; previous month = 31; same period
	// last month = Oct 1–5 = 5; run rate = last 7 complete days (Oct 29–Nov 4)
	// / 7 = 1; projection = spent to yesterday (4) + 1 × 26 days left
	// (Nov 5–30) = 30.
	o := s.ByProvider[1]
	require.Equal(t, "openai", o["provider"])
	for k, want := range map[string]string{"month_to_date_usd": "5", "previous_month_usd": "31",
		"same_period_last_month_usd": "5", "daily_run_rate_usd": "1", "projected_month_end_usd": "30"} {
		require.True(t, dec(want).Equal(dec(o[k].(string))), "%s: %v", k, o[k])
	}
	// Anthropic started on November 1: $0.25/day; the run rate counts only
	// the 4 complete days since (1 / 4 = 0.25), projection = 1 + 26 × 0.25.
	a := s.ByProvider[0]
	rate := dec("0.25")
	require.True(t, dec("1.25").Equal(dec(a["month_to_date_usd"].(string))))
	require.True(t, dec("0").Equal(dec(a["previous_month_usd"].(string))))
	require.True(t, dec("1").Add(rate.Mul(dec("26"))).Equal(dec(a["projected_month_end_usd"].(string))))
	require.True(t, dec("6.25").Equal(dec(s.Overall["month_to_date_usd"].(string))))
	require.Equal(t, "gpt-a", s.TopModels[0]["name"])
	require.True(t, dec("5").Equal(dec(s.TopModels[0]["cost_usd"].(string))))
	require.Equal(t, "proj_1", s.TopProjects[0]["name"])
	require.Equal(t, "openai", s.TopProjects[0]["provider"])

	// Another user sees an empty summary.
	status, _, body = b.do(t, b.newUser(t), http.MethodGet, "/v1/usage/summary", nil)
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, string(body), `"by_provider":[]`)
	require.Contains(t, string(body), `"as_of":null`)
	require.Contains(t, string(body), `"top_models":[],"top_projects":[],"top_api_keys":[]`)

	// A connection that has synced but has no cost this month: the sync
	// time is there though nothing ranks.
	bob := b.newUser(t)
	bobConn := b.createConnection(t, bob, tokka.OpenAI, "sk-admin-summaryempty0123456789ab")["id"].(string)
	syncRows(t, b, bobConn, tokka.Window{From: nov5.AddDate(0, 0, -3), To: nov5}, nil, nil)
	status, _, body = b.do(t, bob, http.MethodGet, "/v1/usage/summary", nil)
	require.Equal(t, http.StatusOK, status)
	require.NoError(t, json.Unmarshal(body, &s))
	require.NotNil(t, s.AsOf, string(body))
	require.Empty(t, s.TopModels)
	require.Empty(t, s.TopProjects)
}

func TestUsageFiltersPagesTotalsAndProvisional(t *testing.T) {
	t.Parallel()
	b := setup(t, at(nov5))
	alice := b.newUser(t)
	openaiID, _ := spendFixture(t, b, alice)
	type page struct {
		Data       []map[string]any
		Totals     map[string]any
		NextCursor *string `json:"next_cursor"`
	}
	get := func(q string) page {
		status, _, body := b.do(t, alice, http.MethodGet, "/v1/usage?"+q, nil)
		require.Equal(t, http.StatusOK, status, string(body))
		var p page
		require.NoError(t, json.Unmarshal(body, &p))
		return p
	}
	// By month: October is OpenAI only (31 × $1), November both.
	p := get("from=2026-10-01&to=2026-11-05&group_by=month")
	require.Len(t, p.Data, 2)
	require.Equal(t, "2026-10", p.Data[0]["month"], "months are YYYY-MM, as everywhere")
	require.Equal(t, "2026-11", p.Data[1]["month"])
	require.True(t, dec("31").Equal(dec(p.Data[0]["cost_usd"].(string))))
	require.Equal(t, false, p.Data[0]["provisional"])
	require.Equal(t, true, p.Data[1]["provisional"], "November includes the last 3 days")
	require.True(t, dec("37.25").Equal(dec(p.Totals["cost_usd"].(string))))

	// Filters narrow both tokens and cost.
	p = get("from=2026-10-01&to=2026-11-05&connection=" + openaiID + "&group_by=provider")
	require.Len(t, p.Data, 1)
	require.Equal(t, "openai", p.Data[0]["provider"])
	require.EqualValues(t, 36000, p.Data[0]["input_tokens"])
	p = get("from=2026-10-01&to=2026-11-05&model=claude-b")
	require.True(t, dec("1.25").Equal(dec(p.Totals["cost_usd"].(string))))
	p = get("from=2026-10-01&to=2026-11-05&service_tier=default&group_by=service_tier")
	require.Len(t, p.Data, 1)
	require.EqualValues(t, 72, p.Data[0]["requests"])

	// Paging by day: 36 days, 10 per page, totals always for the whole query.
	var days []string
	cursor := ""
	for i := 0; i < 10; i++ {
		p = get("from=2026-10-01&to=2026-11-05&group_by=day&limit=10" + cursor)
		for _, r := range p.Data {
			days = append(days, r["day"].(string))
		}
		require.True(t, dec("37.25").Equal(dec(p.Totals["cost_usd"].(string))))
		if p.NextCursor == nil {
			break
		}
		cursor = "&cursor=" + *p.NextCursor
	}
	require.Len(t, days, 36)
	require.Equal(t, "2026-10-01", days[0])
	require.Equal(t, "2026-11-05", days[35])

	for _, q := range []string{"limit=0", "limit=5001", "cursor=bogus", "connection=not-a-uuid", "group_by=hour"} {
		status, _, _ := b.do(t, alice, http.MethodGet, "/v1/usage?"+q, nil)
		require.Equal(t, http.StatusBadRequest, status, q)
	}
}

func TestUsageCSVMatchesJSONAndDefusesFormulas(t *testing.T) {
	t.Parallel()
	b := setup(t, at(nov5))
	alice := b.newUser(t)
	spendFixture(t, b, alice)
	q := "from=2026-10-30&to=2026-11-05&group_by=day,provider,model"
	status, h, body := b.do(t, alice, http.MethodGet, "/v1/usage/export.csv?"+q, nil)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "text/csv; charset=utf-8", h.Get("Content-Type"))
	records, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	require.NoError(t, err)
	require.Equal(t, []string{"day", "provider", "model", "input_tokens", "input_uncached_tokens", "cache_read_tokens",
		"cache_write_5m_tokens", "cache_write_1h_tokens", "output_tokens", "requests", "cost_usd", "provisional"}, records[0])

	status, _, body = b.do(t, alice, http.MethodGet, "/v1/usage?"+q, nil)
	require.Equal(t, http.StatusOK, status)
	var p struct{ Data []map[string]any }
	require.NoError(t, json.Unmarshal(body, &p))
	require.Len(t, records, len(p.Data)+1)
	for i, r := range p.Data {
		rec := records[i+1]
		require.Equal(t, r["day"], rec[0])
		model := r["model"].(string)
		if strings.ContainsAny(model[:1], "=+-@") {
			model = "'" + model
		}
		require.Equal(t, model, rec[2])
		require.Equal(t, fmt.Sprint(r["input_tokens"]), rec[3])
		require.True(t, dec(r["cost_usd"].(string)).Equal(dec(rec[10])))
	}

	// A text cell a spreadsheet would execute is neutralised; quoting
	// follows RFC 4180. (These fixture rows are all zero: include_zero
	// keeps them.)
	status, _, body = b.do(t, alice, http.MethodGet, "/v1/usage/export.csv?from=2026-11-01&to=2026-11-01&group_by=model&provider=anthropic&include_zero=true", nil)
	require.Equal(t, http.StatusOK, status)
	records, err = csv.NewReader(bytes.NewReader(body)).ReadAll()
	require.NoError(t, err)
	var models []string
	for _, r := range records[1:] {
		models = append(models, r[0])
	}
	require.ElementsMatch(t, []string{"'+1", "'-1", "'=HYPERLINK(\"http://x\")", "'@SUM(A1)", "a,\"b\"", "claude-b"}, models)
	require.Contains(t, string(body), `"a,""b"""`)

	status, _, _ = b.do(t, alice, http.MethodGet, "/v1/usage/export.csv?group_by=nope", nil)
	require.Equal(t, http.StatusBadRequest, status)
}

// Month groupings read whole months from the rollups; a re-sync that
// restates part of a month must move them exactly like the daily rows.
func TestMonthlyRollupsFollowRestatements(t *testing.T) {
	t.Parallel()
	b := setup(t, at(nov5))
	alice := b.newUser(t)
	openaiID, _ := spendFixture(t, b, alice)
	from := time.Date(2026, 10, 25, 0, 0, 0, 0, time.UTC)
	to := time.Date(2026, 11, 6, 0, 0, 0, 0, time.UTC)
	var usage []tokka.UsageRow
	var costs []tokka.CostRow
	for d := from; d.Before(to); d = d.AddDate(0, 0, 1) {
		usage = append(usage, tokka.UsageRow{Day: d, Family: "completions", Model: "gpt-a", ProjectID: "proj_1", Tokens: tokka.Tokens{InputUncachedTokens: 7}})
		costs = append(costs, tokka.CostRow{Day: d, Model: "gpt-a", ProjectID: "proj_1", AmountUSD: dec("2"), Amount: dec("2"), Currency: "usd"})
	}
	syncRows(t, b, openaiID, tokka.Window{From: from, To: to}, usage, costs)

	sum := func(q string) (decimal.Decimal, float64) {
		status, _, body := b.do(t, alice, http.MethodGet, "/v1/usage?"+q, nil)
		require.Equal(t, http.StatusOK, status, string(body))
		var p struct{ Data []map[string]any }
		require.NoError(t, json.Unmarshal(body, &p))
		var c decimal.Decimal
		var in float64
		for _, r := range p.Data {
			c = c.Add(dec(r["cost_usd"].(string)))
			in += r["input_tokens"].(float64)
		}
		return c, in
	}
	// October: 24 days at $1 and 1000 tokens, then 7 restated days at $2
	// and 7 tokens.
	byMonth, tokMonth := sum("from=2026-10-01&to=2026-10-31&group_by=month,provider&provider=openai")
	byDay, tokDay := sum("from=2026-10-01&to=2026-10-31&group_by=day&provider=openai")
	require.True(t, dec("38").Equal(byMonth), byMonth.String())
	require.True(t, byDay.Equal(byMonth))
	require.Equal(t, float64(24*1000+7*7), tokMonth)
	require.Equal(t, tokDay, tokMonth)
	// A range with partial edge months mixes rollups and daily rows.
	mixed, _ := sum("from=2026-09-15&to=2026-11-03&group_by=month&provider=openai")
	require.True(t, dec("38").Add(dec("6")).Equal(mixed), mixed.String())
}

// TestProvisionalDaysFollowTheResyncWindow: the days marked provisional are
// the days the syncer re-reads (SYNC_RESYNC_DAYS, passed in by cmd/api), not
// a number of the api's own. With 6 days on November 5, October 31 is still
// open to restatement, so October's row is provisional.
func TestProvisionalDaysFollowTheResyncWindow(t *testing.T) {
	t.Parallel()
	b := setup(t, at(nov5), configured(httpapi.Config{ProvisionalDays: 6}))
	alice := b.newUser(t)
	spendFixture(t, b, alice)
	status, _, body := b.do(t, alice, http.MethodGet, "/v1/usage?from=2026-10-01&to=2026-11-05&group_by=month", nil)
	require.Equal(t, http.StatusOK, status, string(body))
	var p struct{ Data []map[string]any }
	require.NoError(t, json.Unmarshal(body, &p))
	require.Len(t, p.Data, 2)
	require.Equal(t, true, p.Data[0]["provisional"], "October 31 is within the last 6 days")
	require.Equal(t, true, p.Data[1]["provisional"])
}
