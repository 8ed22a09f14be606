package anthropic_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/anthropic"
	"github.com/tokka-dev/tokka/pkg/provider"
	"github.com/tokka-dev/tokka/pkg/providertest"
	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

const goldenKey = "sk-ant-admin01-GoldenKeyDoNotLeak-4242"

// goldenWindow is the window of the reference's examples: 2026-01-01 and -02.
var goldenWindow = providertest.GoldenWindow

// testBundle is an anthropic.Client under test and the server behind it.
type testBundle struct {
	*providertest.Bundle
	client *anthropic.Client
}

// setup starts what opts choose (the fake provider unless given a handler)
// behind an anthropic.Client that never really sleeps.
func setup(t *testing.T, opts ...providertest.Option) *testBundle {
	t.Helper()
	b := providertest.Setup(t, opts...)
	return &testBundle{Bundle: b, client: anthropic.New(b.URL, b.HTTP)}
}

// golden serves testdata/<file> with status for every request.
func golden(t *testing.T, status int, file string) providertest.Option {
	t.Helper()
	return providertest.Handle(providertest.Golden(t, "request-id", status, file))
}

// jsonBody serves a literal body.
func jsonBody(body string) providertest.Option {
	return providertest.Handle(providertest.Body("request-id", body))
}

func key() *secret.Key { return secret.FromString(goldenKey) }

func requireKind(t *testing.T, err error, kind provider.Kind) *provider.Error {
	t.Helper()
	return providertest.RequireKind(t, err, tokka.Anthropic, kind)
}

func TestUsageGolden(t *testing.T) {
	t.Parallel()
	b := setup(t, golden(t, http.StatusOK, "messages.json"))
	rows, err := b.client.Usage(context.Background(), key(), goldenWindow)
	require.NoError(t, err)
	require.Equal(t, []tokka.UsageRow{{
		Day:       time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		Family:    "messages",
		Model:     "claude-sonnet-4-5",
		ProjectID: "wrkspc_demo01",
		Tokens: tokka.Tokens{
			InputUncachedTokens: 5000,
			CacheReadTokens:     8000,
			CacheWrite5mTokens:  1200,
			CacheWrite1hTokens:  0,
			OutputTokens:        900,
			Requests:            0, // Anthropic reports no request count
		},
		WebSearches: 3,
	}}, rows)
	require.Equal(t, int64(14200), rows[0].InputTokens())

	reqs := b.Requests()
	require.Len(t, reqs, 1)
	r := reqs[0]
	require.Equal(t, "/v1/organizations/usage_report/messages", r.URL.Path)
	require.Equal(t, goldenKey, r.Header.Get("x-api-key"))
	require.Equal(t, "2023-06-01", r.Header.Get("anthropic-version"))
	require.Empty(t, r.Header.Get("Authorization"))
	require.Equal(t, "tokka-syncer/0.1", r.Header.Get("User-Agent"))
	q := r.URL.Query()
	require.Equal(t, "2026-01-01T00:00:00Z", q.Get("starting_at"))
	require.Equal(t, "2026-01-03T00:00:00Z", q.Get("ending_at"))
	require.Equal(t, "1d", q.Get("bucket_width"))
	require.Equal(t, "31", q.Get("limit"))
	require.Equal(t, []string{"model", "workspace_id", "api_key_id", "service_tier", "context_window"}, q["group_by[]"])
}

func TestCostsGolden(t *testing.T) {
	t.Parallel()
	b := setup(t, golden(t, http.StatusOK, "cost_report.json"))
	rows, err := b.client.Costs(context.Background(), key(), tokka.Window{From: goldenWindow.From, To: goldenWindow.From.AddDate(0, 0, 1)})
	require.NoError(t, err)

	day := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	type flat struct {
		Day                                                  time.Time
		LineItem, Model, TokenType, CostType, ProjectID, Cur string
		Cents, USD                                           string
	}
	var got []flat
	total := decimal.Zero
	for _, r := range rows {
		got = append(got, flat{r.Day, r.LineItem, r.Model, r.TokenType, r.CostType, r.ProjectID, r.Currency, r.Amount.String(), r.AmountUSD.String()})
		total = total.Add(r.AmountUSD)
	}
	require.Equal(t, []flat{
		{day, "Claude Sonnet 4.5 Usage - Input Tokens", "claude-sonnet-4-5", "uncached_input_tokens", "tokens", "", "USD", "150.5", "1.505"},
		{day, "Web Search Usage", "", "", "web_search", "", "USD", "3", "0.03"},
	}, got)
	// 150.5 + 3 cents = 153.5 cents = $1.535.
	require.True(t, total.Equal(decimal.RequireFromString("1.535")), "total %s", total)

	r := b.Requests()[0]
	require.Equal(t, "/v1/organizations/cost_report", r.URL.Path)
	q := r.URL.Query()
	require.Equal(t, []string{"workspace_id", "description"}, q["group_by[]"])
	require.Equal(t, "31", q.Get("limit"))
	require.Equal(t, "2026-01-01T00:00:00Z", q.Get("starting_at"))
	require.Equal(t, "2026-01-02T00:00:00Z", q.Get("ending_at"))
}

func TestGolden401IsKeyFreeAuthError(t *testing.T) {
	t.Parallel()
	b := setup(t, golden(t, http.StatusUnauthorized, "error_401.json"))
	_, err := b.client.Costs(context.Background(), key(), goldenWindow)
	pe := requireKind(t, err, provider.KindAuth)
	require.Equal(t, http.StatusUnauthorized, pe.Status)
	require.Equal(t, "req_golden", pe.RequestID)
	require.NotContains(t, err.Error(), "invalid x-api-key", "the provider's error text must not surface")
	require.NotContains(t, err.Error(), "sk-ant")
	require.Len(t, b.Requests(), 1, "401 is never retried")
}

func TestCentsAreExact(t *testing.T) {
	t.Parallel()
	cases := []struct {
		amount    string
		cents     string // "" means KindBadResponse
		usd       string
		currency  string
		wantError bool
	}{
		{amount: `"123.78912"`, cents: "123.78912", usd: "1.2378912", currency: "USD"},
		{amount: `"0.000000000000000001"`, cents: "0.000000000000000001", usd: "0.00000000000000000001", currency: "USD"},
		{amount: `"98765432109.87654321012345"`, cents: "98765432109.87654321012345", usd: "987654321.0987654321012345", currency: "USD"},
		{amount: `"0.50"`, cents: "0.5", usd: "0.005", currency: "USD"},
		{amount: `"1e-7"`, cents: "0.0000001", usd: "0.000000001", currency: "USD"},
		{amount: `"1e13"`, currency: "USD", wantError: true},
		{amount: `"1e-31"`, currency: "USD", wantError: true},
		{amount: `""`, currency: "USD", wantError: true},
		{amount: `42.5`, cents: "42.5", usd: "0.425", currency: "usd"}, // a bare number is tolerated
		{amount: `"-12"`, cents: "-12", usd: "-0.12", currency: "USD"},
		{amount: `"lots"`, currency: "USD", wantError: true},
		{amount: `null`, currency: "USD", wantError: true},
		{amount: `"1.00"`, currency: "EUR", wantError: true},
		{amount: `"1.00"`, currency: "", wantError: true},
	}
	for _, tc := range cases {
		t.Run(tc.amount+tc.currency, func(t *testing.T) {
			t.Parallel()
			b := setup(t, jsonBody(`{"has_more":false,"next_page":null,"data":[{"starting_at":"2026-01-02T00:00:00Z","ending_at":"2026-01-03T00:00:00Z","results":[
				{"amount":`+tc.amount+`,"currency":"`+tc.currency+`","cost_type":"tokens","description":"X","model":"m","token_type":"output_tokens","workspace_id":"wrkspc_1","future_field":[1,2]}]}]}`))
			rows, err := b.client.Costs(context.Background(), key(), goldenWindow)
			if tc.wantError {
				pe := requireKind(t, err, provider.KindBadResponse)
				require.Equal(t, "req_inline", pe.RequestID)
				return
			}
			require.NoError(t, err)
			require.Len(t, rows, 1)
			require.Equal(t, tc.cents, rows[0].Amount.String())
			require.Equal(t, tc.usd, rows[0].AmountUSD.String())
			require.Equal(t, tc.currency, rows[0].Currency)
			require.Equal(t, "wrkspc_1", rows[0].ProjectID)
		})
	}
}

func TestUsageRejectsNegativeCounts(t *testing.T) {
	t.Parallel()
	for name, result := range map[string]string{
		"uncached": `{"uncached_input_tokens":-1}`,
		"read":     `{"cache_read_input_tokens":-1}`,
		"5m":       `{"cache_creation":{"ephemeral_5m_input_tokens":-1}}`,
		"1h":       `{"cache_creation":{"ephemeral_1h_input_tokens":-1}}`,
		"output":   `{"output_tokens":-1}`,
		"search":   `{"server_tool_use":{"web_search_requests":-1}}`,
		"absurd":   `{"cache_read_input_tokens":1000000000000001}`,
		"float":    `{"output_tokens":2.5}`,
		"garbage":  `"nope"`,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, jsonBody(`{"has_more":false,"next_page":null,"data":[{"starting_at":"2026-01-01T00:00:00Z","results":[`+result+`]}]}`))
			_, err := b.client.Usage(context.Background(), key(), goldenWindow)
			requireKind(t, err, provider.KindBadResponse)
		})
	}
}

func TestUsageReadsAllDimensions(t *testing.T) {
	t.Parallel()
	b := setup(t, jsonBody(`{"has_more":false,"next_page":null,"data":[{"starting_at":"2026-01-02T00:00:00Z","ending_at":"2026-01-03T00:00:00Z","results":[
		{"uncached_input_tokens":1,"cache_read_input_tokens":2,"cache_creation":{"ephemeral_5m_input_tokens":3,"ephemeral_1h_input_tokens":4},"output_tokens":5,
		 "api_key_id":"apikey_01","workspace_id":null,"model":"claude-haiku-4-5","service_tier":"batch","context_window":"200k-1M","speed":"fast"}]}]}`))
	rows, err := b.client.Usage(context.Background(), key(), goldenWindow)
	require.NoError(t, err)
	require.Equal(t, []tokka.UsageRow{{
		Day: time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC), Family: "messages", Model: "claude-haiku-4-5",
		APIKeyID: "apikey_01", ServiceTier: "batch", ContextWindow: "200k-1M",
		Tokens: tokka.Tokens{OutputTokens: 5, InputUncachedTokens: 1, CacheReadTokens: 2, CacheWrite5mTokens: 3, CacheWrite1hTokens: 4},
	}}, rows)
}

func TestPagingGuards(t *testing.T) {
	t.Parallel()
	t.Run("repeated cursor", func(t *testing.T) {
		t.Parallel()
		b := setup(t, jsonBody(`{"data":[],"has_more":true,"next_page":"page_same"}`))
		_, err := b.client.Costs(context.Background(), key(), goldenWindow)
		requireKind(t, err, provider.KindBadResponse)
		require.Len(t, b.Requests(), 2)
	})
	t.Run("page cap", func(t *testing.T) {
		t.Parallel()
		var mu sync.Mutex
		n := 0
		b := setup(t, providertest.Handle(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			n++
			cursor := fmt.Sprintf("page_%d", n)
			mu.Unlock()
			_, _ = fmt.Fprintf(w, `{"data":[],"has_more":true,"next_page":%q}`, cursor)
		}))
		b.client.MaxPages = 4
		_, err := b.client.Usage(context.Background(), key(), goldenWindow)
		requireKind(t, err, provider.KindBadResponse)
		require.Len(t, b.Requests(), 4)
	})
	t.Run("more without cursor", func(t *testing.T) {
		t.Parallel()
		b := setup(t, jsonBody(`{"data":[],"has_more":true,"next_page":""}`))
		_, err := b.client.Usage(context.Background(), key(), goldenWindow)
		requireKind(t, err, provider.KindBadResponse)
	})
	t.Run("bad bucket times", func(t *testing.T) {
		t.Parallel()
		for _, start := range []string{`"yesterday"`, `null`, `"2025-12-31T00:00:00Z"`, `"2026-01-03T00:00:00Z"`} {
			b := setup(t, jsonBody(`{"has_more":false,"next_page":null,"data":[{"starting_at":`+start+`,"results":[{"output_tokens":1}]}]}`))
			_, err := b.client.Usage(context.Background(), key(), goldenWindow)
			requireKind(t, err, provider.KindBadResponse)
		}
	})
	t.Run("not a report", func(t *testing.T) {
		t.Parallel()
		b := setup(t, jsonBody(`{"type":"something"}`))
		_, err := b.client.Usage(context.Background(), key(), goldenWindow)
		requireKind(t, err, provider.KindBadResponse)
	})
}

func TestOverloadedIsRetried(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	n := 0
	b := setup(t, providertest.Handle(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		first := n == 1
		mu.Unlock()
		if first {
			w.WriteHeader(529)
			_, _ = w.Write([]byte(`{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`))
			return
		}
		_, _ = w.Write([]byte(`{"data":[],"has_more":false,"next_page":null}`))
	}))
	rows, err := b.client.Usage(context.Background(), key(), goldenWindow)
	require.NoError(t, err)
	require.Empty(t, rows)
	require.Len(t, b.Requests(), 2)
}

func TestEmptyWindowIsARequestError(t *testing.T) {
	t.Parallel()
	b := setup(t, jsonBody(`{}`))
	_, err := b.client.Costs(context.Background(), key(), tokka.Window{From: goldenWindow.To, To: goldenWindow.From})
	requireKind(t, err, provider.KindRequest)
	require.Empty(t, b.Requests())
}

func TestZeroClientUsesDefaults(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(providertest.Golden(t, "request-id", http.StatusForbidden, "error_401.json"))
	t.Cleanup(srv.Close)
	c := &anthropic.Client{BaseURL: srv.URL}
	_, err := c.Usage(context.Background(), key(), goldenWindow)
	pe := requireKind(t, err, provider.KindAuth)
	require.Equal(t, "req_golden", pe.RequestID, "request-id is read by default")
}

// TestTokenClassesAreAnthropicsDisjointClasses is the property for
// Anthropic: its classes (uncached, cache read, 5-minute and 1-hour cache
// writes) are disjoint and there is no total, so each lands in exactly one
// stored class, unchanged, and the stored input is their sum: nothing is
// derived, so nothing can be counted twice.
func TestTokenClassesAreAnthropicsDisjointClasses(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 11))
	for iter := 0; iter < 40; iter++ {
		type result struct{ uncached, read, w5, w1, output, searches int64 }
		var want []result
		var body strings.Builder
		body.WriteString(`{"has_more":false,"next_page":null,"data":[{"starting_at":"2026-01-01T00:00:00Z","results":[`)
		for i := 0; i < 1+rng.IntN(50); i++ {
			n := func() int64 {
				if rng.IntN(4) == 0 {
					return 0
				}
				return rng.Int64N(provider.MaxCount / 8)
			}
			r := result{n(), n(), n(), n(), n(), rng.Int64N(1000)}
			fmt.Fprintf(&body, `{"uncached_input_tokens":%d,"cache_read_input_tokens":%d,"cache_creation":{"ephemeral_5m_input_tokens":%d,"ephemeral_1h_input_tokens":%d},"output_tokens":%d,"server_tool_use":{"web_search_requests":%d},"model":"m%d"},`,
				r.uncached, r.read, r.w5, r.w1, r.output, r.searches, i)
			want = append(want, r)
		}
		b := setup(t, jsonBody(strings.TrimSuffix(body.String(), ",")+`]}]}`))
		rows, err := b.client.Usage(context.Background(), key(), goldenWindow)
		require.NoError(t, err)
		require.Len(t, rows, len(want))
		for i, row := range rows {
			w := want[i]
			got := result{row.InputUncachedTokens, row.CacheReadTokens, row.CacheWrite5mTokens, row.CacheWrite1hTokens, row.OutputTokens, row.WebSearches}
			require.Equal(t, w, got)
			require.Equal(t, w.uncached+w.read+w.w5+w.w1, row.InputTokens())
		}
	}
}
