package httpapi_test

import (
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/httpapi"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite testdata/usage_golden from the current responses")

// TestUsageResponsesAreByteStable pins the exact bytes of the dashboard
// responses (usage in every shape the dashboards ask for, pages with their
// totals, the summary, the CSV export) for a fixture with usage-only and
// cost-only groups, several dimensions per model, HTML and non-ASCII text and
// numerics of different scales. The queries and encoders behind them are
// tuned for speed; clients compare figures and cache bodies, so a faster
// path must give the same bytes, not just the same numbers.
func TestUsageResponsesAreByteStable(t *testing.T) {
	t.Parallel()
	// The second OpenAI connection below is made again until its id sorts
	// after the first's, two changes a try: a budget of changes no run
	// can spend, so the retries never meet a 429.
	b := setup(t, at(nov5), configured(httpapi.Config{RateLimits: httpapi.RateLimits{PerUser: 10000}}))
	alice := b.newUser(t)
	openaiID, anthropicID := spendFixture(t, b, alice)
	// More of what real data has: a model seen under two service tiers and
	// two API keys, tokens without cost and cost without tokens, odd text.
	var ou []tokka.UsageRow
	var oc []tokka.CostRow
	from := time.Date(2026, 9, 20, 0, 0, 0, 0, time.UTC)
	to := time.Date(2026, 11, 6, 0, 0, 0, 0, time.UTC)
	for d := from; d.Before(to); d = d.AddDate(0, 0, 1) {
		n := int64(d.Day())
		ou = append(ou,
			tokka.UsageRow{Day: d, Family: "completions", Model: "gpt-a", ProjectID: "proj_1", APIKeyID: "key_1", ServiceTier: "default", Tokens: tokka.Tokens{InputUncachedTokens: 1000 + n, CacheReadTokens: 3 * n, OutputTokens: 7 * n, Requests: 2}},
			tokka.UsageRow{Day: d, Family: "completions", Model: "gpt-a", ProjectID: "proj_2", APIKeyID: "key_2", ServiceTier: "flex", Tokens: tokka.Tokens{InputUncachedTokens: 10 * n, CacheWrite5mTokens: n, Requests: 1}},
			tokka.UsageRow{Day: d, Family: "embeddings", Model: "emb <b>&\"é\"", ProjectID: "proj_<2>", Tokens: tokka.Tokens{InputUncachedTokens: 5 * n, Requests: 1}})
		oc = append(oc,
			tokka.CostRow{Day: d, Model: "gpt-a", LineItem: "gpt-a, input", ProjectID: "proj_1", AmountUSD: dec("0.1234567"),
				Amount: dec("0.1234567"), Currency: "usd"},
			tokka.CostRow{Day: d, Model: "gpt-a", LineItem: "gpt-a, output", ProjectID: "proj_2", AmountUSD: dec("2"),
				Amount: dec("2"), Currency: "usd"},
			tokka.CostRow{Day: d, LineItem: "web search", ProjectID: "proj_1", AmountUSD: dec("0.010"), Amount: dec("0.010"),
				Currency: "usd"})
	}
	// Rows grouped by connection come in the order of its id, a random
	// UUID: the second OpenAI connection is made again until its id sorts
	// after the first's, so the pinned order holds on every run.
	var openai2 string
	for {
		openai2 = b.createConnection(t, alice, tokka.OpenAI, "sk-admin-golden0123456789abcdefgh")["id"].(string)
		if openai2 > openaiID {
			break
		}
		status, _, body := b.do(t, alice, http.MethodDelete, "/v1/connections/"+openai2, nil)
		require.Equal(t, http.StatusNoContent, status, string(body))
	}
	syncRows(t, b, openai2, tokka.Window{From: from, To: to}, ou, oc)

	normalise := func(body []byte) string {
		s := strings.NewReplacer(openaiID, "CONN-OPENAI", anthropicID, "CONN-ANTHROPIC", openai2, "CONN-OPENAI-2").
			Replace(string(body))
		return regexp.MustCompile(`"as_of":"[^"]*"`).ReplaceAllString(s, `"as_of":"AS-OF"`)
	}
	get := func(path string) string {
		t.Helper()
		status, _, body := b.do(t, alice, http.MethodGet, path, nil)
		require.Equal(t, http.StatusOK, status, string(body))
		return normalise(body)
	}
	cases := []struct{ name, path string }{
		{"day_model", "/v1/usage?from=2026-10-07&to=2026-11-05&group_by=day,model"},
		{"month_year", "/v1/usage?from=2025-11-06&to=2026-11-05&group_by=month"},
		{"month_whole", "/v1/usage?from=2026-09-01&to=2026-10-31&group_by=month,provider"},
		{"week", "/v1/usage?from=2026-09-01&to=2026-11-05&group_by=week"},
		{"every_dimension", "/v1/usage?from=2026-09-01&to=2026-11-05&group_by=provider,connection,model,project,api_key,service_tier"},
		{"no_grouping", "/v1/usage?from=2026-09-01&to=2026-11-05"},
		{"empty", "/v1/usage?from=2025-01-01&to=2025-01-31&group_by=day"},
		{"tier_filter", "/v1/usage?from=2026-09-01&to=2026-11-05&service_tier=flex&group_by=model"},
		{"model_filter", "/v1/usage?from=2026-09-01&to=2026-11-05&model=gpt-a&group_by=connection,project"},
		{"connection_filter", "/v1/usage?from=2025-11-06&to=2026-11-05&connection=" + openai2 + "&group_by=month,model"},
		{"summary", "/v1/usage/summary"},
		{"export", "/v1/usage/export.csv?from=2026-10-07&to=2026-11-05&group_by=day,model,service_tier"},
	}
	got := map[string]string{}
	for _, c := range cases {
		got[c.name] = get(c.path)
	}
	// Pages: totals for the whole query on every page, by a second query.
	path := "/v1/usage?from=2026-09-01&to=2026-11-05&group_by=model,project&limit=2"
	var pages []string
	for cursor := ""; ; {
		status, _, body := b.do(t, alice, http.MethodGet, path+cursor, nil)
		require.Equal(t, http.StatusOK, status, string(body))
		pages = append(pages, normalise(body))
		m := regexp.MustCompile(`"next_cursor":"([^"]+)"`).FindSubmatch(body)
		if m == nil {
			break
		}
		cursor = "&cursor=" + string(m[1])
	}
	got["pages"] = strings.Join(pages, "")

	dir := filepath.Join("testdata", "usage_golden")
	for name, body := range got {
		file := filepath.Join(dir, name+".txt")
		if *updateGolden {
			require.NoError(t, os.MkdirAll(dir, 0o755))
			require.NoError(t, os.WriteFile(file, []byte(body), 0o644))
			continue
		}
		want, err := os.ReadFile(file)
		require.NoError(t, err, "run with -update-golden once to record")
		require.Equal(t, string(want), body, name)
	}
}
