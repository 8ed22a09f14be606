package openai_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/openai"
	"github.com/tokka-dev/tokka/pkg/provider"
	"github.com/tokka-dev/tokka/pkg/providertest"
	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

const goldenKey = "sk-admin-GoldenKeyDoNotLeak-4242"

// goldenWindow is the window of the reference's examples: 2026-01-01 and -02.
var goldenWindow = providertest.GoldenWindow

// testBundle is a openai.Client under test and the server behind it.
type testBundle struct {
	*providertest.Bundle
	client *openai.Client
}

// setup starts what opts choose (the fake provider unless given a handler)
// behind an openai.Client that never really sleeps.
func setup(t *testing.T, opts ...providertest.Option) *testBundle {
	t.Helper()
	b := providertest.Setup(t, opts...)
	// The base URL ends in a slash, which the client must trim.
	return &testBundle{Bundle: b, client: openai.New(b.URL+"/", b.HTTP)}
}

// golden serves testdata/<file> with status for every request.
func golden(t *testing.T, status int, file string) providertest.Option {
	t.Helper()
	return providertest.Handle(providertest.Golden(t, "x-request-id", status, file))
}

// emptyPage is a last page with no buckets.
const emptyPage = `{"object":"page","data":[],"has_more":false,"next_page":null}`

// goldenRoutes serves testdata/<family>.json for /v1/organization/usage/<family>
// and testdata/costs.json for /v1/organization/costs; a family without a
// fixture gets an empty page.
func goldenRoutes(t *testing.T) http.HandlerFunc {
	t.Helper()
	files := map[string][]byte{}
	for _, f := range append(openai.Families(), "costs") {
		body, err := os.ReadFile(filepath.Join("testdata", f+".json"))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		require.NoError(t, err)
		files[f] = body
	}
	return func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/v1/organization/"), "usage/")
		body, ok := files[name]
		if !ok {
			body = []byte(emptyPage)
		}
		w.Header().Set("x-request-id", "req_golden")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}
}

// jsonBody serves a literal body.
func jsonBody(body string) providertest.Option {
	return providertest.Handle(providertest.Body("x-request-id", body))
}

func key() *secret.Key { return secret.FromString(goldenKey) }

func requireKind(t *testing.T, err error, kind provider.Kind) *provider.Error {
	t.Helper()
	return providertest.RequireKind(t, err, tokka.OpenAI, kind)
}

func TestUsageGolden(t *testing.T) {
	t.Parallel()
	b := setup(t, providertest.Handle(goldenRoutes(t)))
	rows, err := b.client.Usage(context.Background(), key(), goldenWindow)
	require.NoError(t, err)
	day1 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	day2 := day1.AddDate(0, 0, 1)
	// Hand-computed from the fixtures, in the order the families are read.
	require.Equal(t, []tokka.UsageRow{{
		Day:       day1,
		Family:    "completions",
		Model:     "gpt-4o-mini-2024-07-18",
		ProjectID: "proj_demo1",
		Tokens: tokka.Tokens{
			InputUncachedTokens: 10000, // 12000 input − 2000 cached − 0 cache writes
			CacheReadTokens:     2000,
			CacheWrite5mTokens:  0,
			OutputTokens:        3400,
			Requests:            42,
		},
	}, {
		Day: day1, Family: "embeddings", Model: "text-embedding-3-small", ProjectID: "proj_demo1", APIKeyID: "key_demo1",
		Tokens: tokka.Tokens{Requests: 2, InputUncachedTokens: 16000},
	}, {
		Day: day2, Family: "moderations", Model: "omni-moderation-latest", ProjectID: "proj_demo1", APIKeyID: "key_demo1",
		Tokens: tokka.Tokens{Requests: 17, InputUncachedTokens: 850},
	}, {
		Day: day1, Family: "images", Model: "dall-e-3", ProjectID: "proj_demo1", APIKeyID: "key_demo1",
		ImageSize: "1024x1024", ImageSource: "image.generation", Images: 4, Tokens: tokka.Tokens{Requests: 2},
	}, {
		Day: day1, Family: "images", Model: "dall-e-3", ProjectID: "proj_demo1", APIKeyID: "key_demo1",
		ImageSize: "1024x1792", ImageSource: "image.edit", Images: 1, Tokens: tokka.Tokens{Requests: 1},
	}, {
		Day: day1, Family: "audio_speeches", Model: "tts-1", ProjectID: "proj_demo1", APIKeyID: "key_demo1",
		Characters: 45000, Tokens: tokka.Tokens{Requests: 30},
	}, {
		Day: day1, Family: "audio_transcriptions", Model: "whisper-1", ProjectID: "proj_demo1", APIKeyID: "key_demo1",
		Seconds: 3600, Tokens: tokka.Tokens{Requests: 12},
	}, {
		Day: day1, Family: "vector_stores", ProjectID: "proj_demo1", Bytes: 1 << 30,
	}, {
		Day: day2, Family: "vector_stores", ProjectID: "proj_demo1", Bytes: 1 << 30,
	}, {
		Day: day1, Family: "code_interpreter_sessions", ProjectID: "proj_demo1", Sessions: 7,
	}, {
		Day: day1, Family: "file_search_calls", ProjectID: "proj_demo1", APIKeyID: "key_demo1", VectorStoreID: "vs_demo1",
		FileSearches: 25,
	}, {
		// num_model_requests (9) is already counted by completions; only the
		// searches are stored.
		Day: day1, Family: "web_search_calls", Model: "gpt-4o-mini-2024-07-18", ProjectID: "proj_demo1", APIKeyID: "key_demo1",
		ContextLevel: "medium", WebSearches: 11,
	}}, rows)
	require.Equal(t, int64(12000), rows[0].InputTokens())

	reqs := b.Requests()
	require.Len(t, reqs, len(openai.Families()), "one call per family for a two-day window")
	for i, r := range reqs {
		family := openai.Families()[i]
		require.Equal(t, http.MethodGet, r.Method)
		require.Equal(t, "/v1/organization/usage/"+family, r.URL.Path)
		require.Equal(t, "Bearer "+goldenKey, r.Header.Get("Authorization"))
		require.Equal(t, "tokka-syncer/0.1", r.Header.Get("User-Agent"))
		q := r.URL.Query()
		require.Equal(t, "1767225600", q.Get("start_time"))
		require.Equal(t, "1767398400", q.Get("end_time"))
		require.Equal(t, "1d", q.Get("bucket_width"))
		require.Equal(t, "31", q.Get("limit"))
		require.Equal(t, openai.GroupBy(family), q["group_by[]"], "arrays go in the SDKs' bracket form")
		require.Empty(t, q["group_by"])
		require.NotContains(t, q["group_by[]"], "user_id", "Tokka has no user dimension")
	}
	groups := map[string][]string{}
	for _, f := range openai.Families() {
		groups[f] = openai.GroupBy(f)
	}
	require.Equal(t, map[string][]string{
		"completions":               {"model", "project_id", "api_key_id", "batch", "service_tier"},
		"embeddings":                {"model", "project_id", "api_key_id"},
		"moderations":               {"model", "project_id", "api_key_id"},
		"images":                    {"model", "project_id", "api_key_id", "size", "source"},
		"audio_speeches":            {"model", "project_id", "api_key_id"},
		"audio_transcriptions":      {"model", "project_id", "api_key_id"},
		"vector_stores":             {"project_id"},
		"code_interpreter_sessions": {"project_id"},
		"file_search_calls":         {"project_id", "api_key_id", "vector_store_id"},
		"web_search_calls":          {"model", "project_id", "api_key_id", "context_level"},
	}, groups)
	require.Nil(t, openai.GroupBy("decisions"))
}

func TestFamiliesCanBeNarrowed(t *testing.T) {
	t.Parallel()
	b := setup(t, providertest.Handle(goldenRoutes(t)))
	b.client.Families = []string{"images", "vector_stores"}
	rows, err := b.client.Usage(context.Background(), key(), goldenWindow)
	require.NoError(t, err)
	require.Len(t, rows, 4)
	require.Len(t, b.Requests(), 2)

	b.client.Families = []string{"decisions"}
	_, err = b.client.Usage(context.Background(), key(), goldenWindow)
	requireKind(t, err, provider.KindRequest)
	require.Len(t, b.Requests(), 2, "an unknown family is refused before any request")
}

func TestCostsGolden(t *testing.T) {
	t.Parallel()
	b := setup(t, providertest.Handle(goldenRoutes(t)))
	rows, err := b.client.Costs(context.Background(), key(), tokka.Window{From: goldenWindow.From, To: goldenWindow.From.AddDate(0, 0, 1)})
	require.NoError(t, err)
	require.Len(t, rows, 2)

	day := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	type flat struct {
		Day                                       time.Time
		LineItem, Model, ProjectID, APIKeyID, Cur string
		USD, Amount                               string
	}
	var got []flat
	total := decimal.Zero
	for _, r := range rows {
		got = append(got, flat{r.Day, r.LineItem, r.Model, r.ProjectID, r.APIKeyID, r.Currency, r.AmountUSD.String(), r.Amount.String()})
		total = total.Add(r.AmountUSD)
	}
	require.Equal(t, []flat{
		{day, "gpt-4o-mini, input", "gpt-4o-mini", "proj_demo1", "", "usd", "1.2345", "1.2345"},
		{day, "gpt-4o-mini, output", "gpt-4o-mini", "proj_demo1", "", "usd", "0.5", "0.5"}, // from the string "0.50"
	}, got)
	require.True(t, total.Equal(decimal.RequireFromString("1.7345")), "total %s", total)

	q := b.Requests()[0].URL.Query()
	require.Equal(t, "/v1/organization/costs", b.Requests()[0].URL.Path)
	require.Equal(t, []string{"line_item", "project_id", "api_key_id"}, q["group_by[]"])
	require.Equal(t, "180", q.Get("limit"))
	require.Equal(t, "1767225600", q.Get("start_time"))
	require.Equal(t, "1767312000", q.Get("end_time"))
}

func TestGolden401IsKeyFreeAuthError(t *testing.T) {
	t.Parallel()
	b := setup(t, golden(t, http.StatusUnauthorized, "error_401.json"))
	_, err := b.client.Usage(context.Background(), key(), goldenWindow)
	pe := requireKind(t, err, provider.KindAuth)
	require.Equal(t, http.StatusUnauthorized, pe.Status)
	require.Equal(t, "req_golden", pe.RequestID)
	require.NotContains(t, err.Error(), "Incorrect API key", "the provider's error text must not surface")
	require.NotContains(t, err.Error(), "sk-admin")
	require.Len(t, b.Requests(), 1, "401 is never retried")

	_, err = b.client.Costs(context.Background(), key(), goldenWindow)
	requireKind(t, err, provider.KindAuth)
}

func TestAmountValueDecoding(t *testing.T) {
	t.Parallel()
	cases := []struct {
		value string
		want  string // "" means KindBadResponse
	}{
		{`0.0001234`, "0.0001234"},
		{`"0.0001234"`, "0.0001234"},
		{`"12.50"`, "12.5"},
		{`123456789.123456789012345678`, "123456789.123456789012345678"}, // beyond float64
		{`1e-7`, "0.0000001"},
		{`"1e-7"`, "0.0000001"},
		{`0.000000100`, "0.0000001"},
		{`"0.50"`, "0.5"},
		{`999999999999`, "999999999999"},
		{`1e13`, ""},  // a ten-trillion-dollar line is a provider bug
		{`1e-40`, ""}, // more decimals than any money has
		{`"1e-999999999"`, ""},
		{`"0x10"`, ""},
		{`"NaN"`, ""},
		{`-0.25`, "-0.25"}, // credits are negative and still money
		{`"twelve"`, ""},
		{`""`, ""},
		{`null`, ""},
		{`true`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.value, func(t *testing.T) {
			t.Parallel()
			b := setup(t, jsonBody(`{"object":"page","has_more":false,"next_page":null,"data":[{"object":"bucket","start_time":1767225600,"end_time":1767312000,"results":[
				{"object":"organization.costs.result","amount":{"value":`+tc.value+`,"currency":"usd"},"line_item":"Text tokens","project_id":null}]}]}`))
			rows, err := b.client.Costs(context.Background(), key(), goldenWindow)
			if tc.want == "" {
				pe := requireKind(t, err, provider.KindBadResponse)
				require.Equal(t, "req_inline", pe.RequestID)
				return
			}
			require.NoError(t, err)
			require.Len(t, rows, 1)
			require.Equal(t, tc.want, rows[0].AmountUSD.String())
			require.Equal(t, "", rows[0].Model, "free-text line items name no model")
		})
	}
}

func TestCostsRejectsOtherCurrencies(t *testing.T) {
	t.Parallel()
	for _, cur := range []string{"eur", ""} {
		b := setup(t, jsonBody(`{"object":"page","has_more":false,"next_page":null,"data":[{"start_time":1767225600,"results":[
			{"object":"organization.costs.result","amount":{"value":1,"currency":"`+cur+`"}}]}]}`))
		_, err := b.client.Costs(context.Background(), key(), goldenWindow)
		requireKind(t, err, provider.KindBadResponse)
	}
	b := setup(t, jsonBody(`{"object":"page","has_more":false,"next_page":null,"data":[{"start_time":1767225600,"results":[
		{"object":"organization.costs.result","amount":{"value":1,"currency":"USD"}}]}]}`))
	rows, err := b.client.Costs(context.Background(), key(), goldenWindow)
	require.NoError(t, err)
	require.Equal(t, "USD", rows[0].Currency, "currency is kept as reported")
}

func TestUsageRejectsImpossibleCounts(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"negative output":         `{"input_tokens":10,"output_tokens":-1,"num_model_requests":1}`,
		"negative requests":       `{"input_tokens":10,"output_tokens":1,"num_model_requests":-3}`,
		"cached exceeds input":    `{"input_tokens":10,"input_cached_tokens":8,"input_cache_write_tokens":5,"output_tokens":1,"num_model_requests":1}`,
		"fractional tokens":       `{"input_tokens":10.5,"output_tokens":1,"num_model_requests":1}`,
		"tokens as text":          `{"input_tokens":"ten","output_tokens":1,"num_model_requests":1}`,
		"negative cache write":    `{"input_tokens":10,"input_cache_write_tokens":-1,"output_tokens":1,"num_model_requests":1}`,
		"absurd input":            `{"input_tokens":4000000000000000000,"output_tokens":1,"num_model_requests":1}`,
		"beyond int64":            `{"input_tokens":99999999999999999999,"output_tokens":1,"num_model_requests":1}`,
		"result is not an object": `42`,
	}
	for name, result := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, jsonBody(`{"object":"page","has_more":false,"next_page":null,"data":[{"start_time":1767225600,"results":[`+result+`]}]}`))
			_, err := b.client.Usage(context.Background(), key(), goldenWindow)
			requireKind(t, err, provider.KindBadResponse)
		})
	}
}

func TestUsageToleratesOldAndNewFields(t *testing.T) {
	t.Parallel()
	// 2024-era result (no cache-write field) with an unknown future field and
	// a batch grouping value.
	b := setup(t, jsonBody(`{"object":"page","has_more":false,"next_page":null,"data":[{"start_time":1767312000,"end_time":1767398400,"results":[
		{"object":"organization.usage.completions.result","input_tokens":100,"input_cached_tokens":40,"output_tokens":7,"num_model_requests":2,
		 "model":"o3","project_id":null,"batch":true,"service_tier":"flex","shiny_new_metric":{"x":1}}]}]}`))
	b.client.Families = []string{"completions"}
	rows, err := b.client.Usage(context.Background(), key(), goldenWindow)
	require.NoError(t, err)
	require.Equal(t, []tokka.UsageRow{{
		Day: time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC), Family: "completions", Model: "o3", Batch: "true", ServiceTier: "flex",
		Tokens: tokka.Tokens{InputUncachedTokens: 60, CacheReadTokens: 40, OutputTokens: 7, Requests: 2},
	}}, rows)
}

func TestUsageDayIsBucketStartTruncatedToUTCMidnight(t *testing.T) {
	t.Parallel()
	// A partial first bucket starts mid-day (1767225600 + 5h).
	b := setup(t, jsonBody(`{"object":"page","has_more":false,"next_page":null,"data":[{"start_time":1767243600,"end_time":1767312000,"results":[
		{"input_tokens":1,"output_tokens":1,"num_model_requests":1}]}]}`))
	rows, err := b.client.Usage(context.Background(), key(), goldenWindow)
	require.NoError(t, err)
	require.Equal(t, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), rows[0].Day)
	require.Equal(t, "", rows[0].Batch, "null batch is reported as empty")
}

func TestPagingGuards(t *testing.T) {
	t.Parallel()
	t.Run("repeated cursor", func(t *testing.T) {
		t.Parallel()
		b := setup(t, jsonBody(`{"object":"page","data":[],"has_more":true,"next_page":"page_same"}`))
		_, err := b.client.Usage(context.Background(), key(), goldenWindow)
		requireKind(t, err, provider.KindBadResponse)
		require.Len(t, b.Requests(), 2)
		require.Equal(t, "page_same", b.Requests()[1].URL.Query().Get("page"))
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
			_, _ = fmt.Fprintf(w, `{"object":"page","data":[],"has_more":true,"next_page":%q}`, cursor)
		}))
		b.client.MaxPages = 7
		_, err := b.client.Costs(context.Background(), key(), goldenWindow)
		pe := requireKind(t, err, provider.KindBadResponse)
		require.Contains(t, pe.Reason, "7 pages")
		require.Contains(t, pe.Reason, "(costs)")
		require.Len(t, b.Requests(), 7)
	})
	t.Run("default page cap", func(t *testing.T) {
		t.Parallel()
		var mu sync.Mutex
		n := 0
		b := setup(t, providertest.Handle(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			n++
			cursor := fmt.Sprintf("page_%d", n)
			mu.Unlock()
			_, _ = fmt.Fprintf(w, `{"object":"page","data":[],"has_more":true,"next_page":%q}`, cursor)
		}))
		_, err := b.client.Costs(context.Background(), key(), goldenWindow)
		requireKind(t, err, provider.KindBadResponse)
		require.Len(t, b.Requests(), openai.DefaultMaxPages)
	})
	t.Run("more without cursor", func(t *testing.T) {
		t.Parallel()
		b := setup(t, jsonBody(`{"object":"page","data":[],"has_more":true,"next_page":null}`))
		_, err := b.client.Usage(context.Background(), key(), goldenWindow)
		requireKind(t, err, provider.KindBadResponse)
	})
	t.Run("not a page", func(t *testing.T) {
		t.Parallel()
		for _, body := range []string{`{}`, `<html>`, `{"data":{}}`} {
			b := setup(t, jsonBody(body))
			_, err := b.client.Usage(context.Background(), key(), goldenWindow)
			requireKind(t, err, provider.KindBadResponse)
		}
	})
	t.Run("same bucket twice", func(t *testing.T) {
		t.Parallel()
		var mu sync.Mutex
		n := 0
		b := setup(t, providertest.Handle(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			n++
			next := fmt.Sprintf("page_%d", n)
			mu.Unlock()
			// Every page carries the same day: adding them up would count it twice.
			_, _ = fmt.Fprintf(w, `{"object":"page","has_more":true,"next_page":%q,"data":[{"start_time":1767225600,"results":[{"input_tokens":5,"output_tokens":1,"num_model_requests":1}]}]}`, next)
		}))
		_, err := b.client.Usage(context.Background(), key(), goldenWindow)
		pe := requireKind(t, err, provider.KindBadResponse)
		require.Contains(t, pe.Reason, "same bucket twice")
		require.Contains(t, pe.Reason, "usage/completions", "the reason names the endpoint")
		require.Len(t, b.Requests(), 2)
	})
	t.Run("bucket outside window", func(t *testing.T) {
		t.Parallel()
		b := setup(t, jsonBody(`{"object":"page","has_more":false,"next_page":null,"data":[{"start_time":1767398400,"results":[{"input_tokens":1}]}]}`))
		_, err := b.client.Usage(context.Background(), key(), goldenWindow)
		requireKind(t, err, provider.KindBadResponse)
	})
}

func TestFollowsNextPage(t *testing.T) {
	t.Parallel()
	b := setup(t, providertest.Handle(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("page") == "" {
			_, _ = w.Write([]byte(`{"object":"page","has_more":true,"next_page":"page_AAAAAGdG","data":[{"start_time":1767225600,"results":[{"input_tokens":5,"output_tokens":1,"num_model_requests":1,"model":"a"}]}]}`))
			return
		}
		_, _ = w.Write([]byte(`{"object":"page","has_more":false,"next_page":null,"data":[{"start_time":1767312000,"results":[{"input_tokens":6,"output_tokens":1,"num_model_requests":1,"model":"b"}]}]}`))
	}))
	b.client.Families = []string{"completions"}
	rows, err := b.client.Usage(context.Background(), key(), goldenWindow)
	require.NoError(t, err)
	require.Len(t, rows, 2)
	require.Equal(t, "a", rows[0].Model)
	require.Equal(t, "b", rows[1].Model)
	reqs := b.Requests()
	require.Len(t, reqs, 2)
	second := reqs[1].URL.Query()
	require.Equal(t, "page_AAAAAGdG", second.Get("page"))
	first := reqs[0].URL.Query()
	first.Set("page", "page_AAAAAGdG")
	require.Equal(t, first, url.Values(second), "the next page repeats every other parameter")
}

func TestEmptyWindowIsARequestError(t *testing.T) {
	t.Parallel()
	b := setup(t, jsonBody(`{}`))
	_, err := b.client.Usage(context.Background(), key(), tokka.Window{From: goldenWindow.From, To: goldenWindow.From})
	requireKind(t, err, provider.KindRequest)
	require.Empty(t, b.Requests())
}

func TestServerErrorIsRetriedThenSurfaces(t *testing.T) {
	t.Parallel()
	b := setup(t, providertest.Handle(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"error":{"message":"key ` + goldenKey + ` broke us"}}`))
	}))
	_, err := b.client.Costs(context.Background(), key(), goldenWindow)
	pe := requireKind(t, err, provider.KindUnavailable)
	require.Equal(t, http.StatusInternalServerError, pe.Status)
	require.NotContains(t, err.Error(), goldenKey)
	require.Len(t, b.Requests(), 1+provider.DefaultMaxRetries)
}

func TestUsageRejectsBadCountsInEveryFamily(t *testing.T) {
	t.Parallel()
	metric := map[string]string{
		"completions": "output_tokens", "embeddings": "input_tokens", "moderations": "num_model_requests",
		"images": "images", "audio_speeches": "characters", "audio_transcriptions": "seconds",
		"vector_stores": "usage_bytes", "code_interpreter_sessions": "num_sessions",
		"file_search_calls": "num_requests", "web_search_calls": "num_requests",
	}
	require.Len(t, metric, len(openai.Families()))
	for family, m := range metric {
		for name, value := range map[string]string{"negative": "-1", "absurd": "1000000000000001", "fractional": "1.5", "text": `"7"`} {
			t.Run(family+"/"+name, func(t *testing.T) {
				t.Parallel()
				b := setup(t, jsonBody(`{"object":"page","has_more":false,"next_page":null,"data":[{"start_time":1767225600,"results":[{"`+m+`":`+value+`}]}]}`))
				b.client.Families = []string{family}
				_, err := b.client.Usage(context.Background(), key(), goldenWindow)
				pe := requireKind(t, err, provider.KindBadResponse)
				require.Contains(t, pe.Reason, family)
			})
		}
	}
	// The largest plausible count is accepted.
	b := setup(t, jsonBody(`{"object":"page","has_more":false,"next_page":null,"data":[{"start_time":1767225600,"results":[{"usage_bytes":1000000000000000}]}]}`))
	b.client.Families = []string{"vector_stores"}
	rows, err := b.client.Usage(context.Background(), key(), goldenWindow)
	require.NoError(t, err)
	require.Equal(t, provider.MaxCount, rows[0].Bytes)
}

func TestCostsFallBackWhenAPIKeyGroupingIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, providertest.Handle(func(w http.ResponseWriter, r *http.Request) {
		if slices.Contains(r.URL.Query()["group_by[]"], "api_key_id") {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":{"message":"Invalid value for 'group_by'","type":"invalid_request_error","param":"group_by","code":null}}`))
			return
		}
		goldenRoutes(t)(w, r)
	}))
	rows, err := b.client.Costs(context.Background(), key(), goldenWindow)
	require.NoError(t, err)
	require.Len(t, rows, 2)
	reqs := b.Requests()
	require.Len(t, reqs, 2, "a 400 is not retried; the call is repeated once without api_key_id")
	require.Equal(t, []string{"line_item", "project_id"}, reqs[1].URL.Query()["group_by[]"])
}

// TestTokenClassesAddUpToOpenAITotals is the property the dashboards rely
// on: OpenAI's input_tokens includes cached reads and cache writes, and the
// stored classes must add up to it exactly, each token counted once, for
// any mix of values (including the 2026 fields, absent or present).
func TestTokenClassesAddUpToOpenAITotals(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(4, 2))
	for iter := 0; iter < 40; iter++ {
		type result struct{ input, cached, write, output, requests int64 }
		var want []result
		var body strings.Builder
		body.WriteString(`{"object":"page","has_more":false,"next_page":null,"data":[{"start_time":1767225600,"results":[`)
		for i := 0; i < 1+rng.IntN(50); i++ {
			r := result{input: rng.Int64N(provider.MaxCount / 1000)}
			r.cached = rng.Int64N(r.input + 1)
			r.write = rng.Int64N(r.input - r.cached + 1)
			r.output, r.requests = rng.Int64N(1<<40), rng.Int64N(1<<20)
			switch rng.IntN(3) {
			case 0: // today's shape, with the 2026 fields
				fmt.Fprintf(&body, `{"input_tokens":%d,"input_cached_tokens":%d,"input_cache_write_tokens":%d,"input_uncached_tokens":%d,"output_tokens":%d,"num_model_requests":%d,"model":"m%d"},`,
					r.input, r.cached, r.write, r.input-r.cached-r.write, r.output, r.requests, i)
			case 1: // 2024 shape: no cache writes reported
				r.write = 0
				fmt.Fprintf(&body, `{"input_tokens":%d,"input_cached_tokens":%d,"output_tokens":%d,"num_model_requests":%d,"model":"m%d"},`,
					r.input, r.cached, r.output, r.requests, i)
			default: // nothing cached at all
				r.cached, r.write = 0, 0
				fmt.Fprintf(&body, `{"input_tokens":%d,"output_tokens":%d,"num_model_requests":%d,"model":"m%d"},`,
					r.input, r.output, r.requests, i)
			}
			want = append(want, r)
		}
		b := setup(t, jsonBody(strings.TrimSuffix(body.String(), ",")+`]}]}`))
		b.client.Families = []string{"completions"}
		rows, err := b.client.Usage(context.Background(), key(), goldenWindow)
		require.NoError(t, err)
		require.Len(t, rows, len(want))
		var totalIn, totalRows int64
		for i, row := range rows {
			w := want[i]
			require.Equal(t, w.input, row.InputTokens(), "classes add up to input_tokens")
			require.Equal(t, w.cached, row.CacheReadTokens)
			require.Equal(t, w.write, row.CacheWrite5mTokens+row.CacheWrite1hTokens)
			require.Equal(t, w.input-w.cached-w.write, row.InputUncachedTokens, "uncached excludes cached and written tokens")
			require.GreaterOrEqual(t, row.InputUncachedTokens, int64(0))
			require.Equal(t, w.output, row.OutputTokens)
			require.Equal(t, w.requests, row.Requests)
			totalIn += w.input
			totalRows += row.InputUncachedTokens + row.CacheReadTokens + row.CacheWrite5mTokens + row.CacheWrite1hTokens
		}
		require.Equal(t, totalIn, totalRows, "no token is counted twice across rows")
	}
}
