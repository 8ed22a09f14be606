package fakeprovider_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/fakeprovider"
)

const (
	oaiKey = "sk-admin-server-test-0001"
	antKey = "sk-ant-admin01-server-test-0001"
)

var now = time.Date(2026, 3, 31, 15, 4, 5, 0, time.UTC)

type testBundle struct {
	fake *fakeprovider.Server
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	return &testBundle{fake: fakeprovider.New(fakeprovider.Options{Now: func() time.Time { return now }})}
}

// openai sends a GET with a bearer key ("" for none) straight to the handler.
func (b *testBundle) openai(t *testing.T, key, target string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, target, nil)
	if key != "" {
		r.Header.Set("Authorization", "Bearer "+key)
	}
	w := httptest.NewRecorder()
	b.fake.ServeHTTP(w, r)
	return w
}

// anthropic sends a GET with x-api-key and anthropic-version (either "" to omit).
func (b *testBundle) anthropic(t *testing.T, key, version, target string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, target, nil)
	if key != "" {
		r.Header.Set("x-api-key", key)
	}
	if version != "" {
		r.Header.Set("anthropic-version", version)
	}
	w := httptest.NewRecorder()
	b.fake.ServeHTTP(w, r)
	return w
}

func unix(t time.Time) string { return fmt.Sprint(t.Unix()) }

func decode[T any](t *testing.T, w *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &v), w.Body.String())
	return v
}

// requireOpenAIError checks status and the exact OpenAI error shape: one
// "error" object with exactly message, type, param and code.
func requireOpenAIError(t *testing.T, w *httptest.ResponseRecorder, status int) map[string]any {
	t.Helper()
	require.Equal(t, status, w.Code, w.Body.String())
	require.NotEmpty(t, w.Header().Get("x-request-id"))
	env := decode[map[string]map[string]any](t, w)
	require.Len(t, env, 1)
	e := env["error"]
	require.Len(t, e, 4)
	for _, k := range []string{"message", "type", "param", "code"} {
		require.Contains(t, e, k)
	}
	return e
}

// requireAnthropicError checks status and the exact Anthropic error shape.
func requireAnthropicError(t *testing.T, w *httptest.ResponseRecorder, status int, typ string) string {
	t.Helper()
	require.Equal(t, status, w.Code, w.Body.String())
	var env struct {
		Type  string `json:"type"`
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
		RequestID string `json:"request_id"`
	}
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &env))
	require.Equal(t, "error", env.Type)
	require.Equal(t, typ, env.Error.Type)
	require.NotEmpty(t, env.Error.Message)
	require.Equal(t, w.Header().Get("request-id"), env.RequestID)
	require.True(t, strings.HasPrefix(env.RequestID, "req_"))
	return env.Error.Message
}

type oaiPage struct {
	Object string `json:"object"`
	Data   []struct {
		Object    string            `json:"object"`
		StartTime int64             `json:"start_time"`
		EndTime   int64             `json:"end_time"`
		Results   []json.RawMessage `json:"results"`
	} `json:"data"`
	HasMore  bool    `json:"has_more"`
	NextPage *string `json:"next_page"`
}

type antPage struct {
	Data []struct {
		StartingAt string            `json:"starting_at"`
		EndingAt   string            `json:"ending_at"`
		Results    []json.RawMessage `json:"results"`
	} `json:"data"`
	HasMore  bool    `json:"has_more"`
	NextPage *string `json:"next_page"`
}

func TestOpenAIAuth(t *testing.T) {
	t.Parallel()
	b := setup(t)
	target := "/v1/organization/usage/completions?start_time=" + unix(day0)

	e := requireOpenAIError(t, b.openai(t, "", target), http.StatusUnauthorized)
	require.Equal(t, "invalid_request_error", e["type"])

	e = requireOpenAIError(t, b.openai(t, "sk-proj-abcdefghijklmnop", target), http.StatusForbidden)
	require.Contains(t, e["message"], "Missing scopes: api.usage.read")

	e = requireOpenAIError(t, b.openai(t, "sk-other-abcdefghijklmnop", target), http.StatusUnauthorized)
	require.Equal(t, "invalid_api_key", e["code"])
	require.NotContains(t, e["message"], "abcdefghijklmnop", "ordinary bad keys are masked, as OpenAI does")

	const revoked = "sk-admin-revoked-abcdefghijklmnop"
	e = requireOpenAIError(t, b.openai(t, revoked, target), http.StatusUnauthorized)
	require.Contains(t, e["message"], revoked, "the hostile key echoes itself in full")

	w := b.openai(t, oaiKey, target)
	require.Equal(t, http.StatusOK, w.Code)
	require.True(t, strings.HasPrefix(w.Header().Get("x-request-id"), "req_"))
	require.NotEqual(t, w.Header().Get("x-request-id"), b.openai(t, oaiKey, target).Header().Get("x-request-id"))
}

func TestOpenAIParamValidation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	usage := "/v1/organization/usage/completions?"
	costs := "/v1/organization/costs?"
	st := "start_time=" + unix(day0)

	e := requireOpenAIError(t, b.openai(t, oaiKey, usage+"end_time="+unix(day0.AddDate(0, 0, 1))), http.StatusBadRequest)
	require.Equal(t, "start_time", e["param"])
	require.Equal(t, "invalid_request_error", e["type"])
	requireOpenAIError(t, b.openai(t, oaiKey, costs+"limit=3"), http.StatusBadRequest)

	for _, bad := range []string{
		usage + "start_time=yesterday",
		usage + st + "&end_time=" + unix(day0),
		usage + st + "&bucket_width=1w",
		usage + st + "&limit=32",
		usage + st + "&limit=0",
		usage + st + "&bucket_width=1h&limit=169",
		usage + st + "&bucket_width=1m&limit=1441",
		usage + st + "&group_by[]=colour",
		usage + st + "&batch=maybe",
		usage + st + "&page=page_nonsense",
		costs + st + "&bucket_width=1h",
		costs + st + "&limit=181",
		costs + st + "&group_by=model",
	} {
		requireOpenAIError(t, b.openai(t, oaiKey, bad), http.StatusBadRequest)
	}
	for _, ok := range []string{
		usage + st + "&limit=31",
		usage + st + "&bucket_width=1h&limit=168",
		usage + st + "&bucket_width=1m&limit=1440&end_time=" + unix(day0.Add(time.Hour)),
		costs + st + "&limit=180",
	} {
		require.Equal(t, http.StatusOK, b.openai(t, oaiKey, ok).Code, ok)
	}
	requireOpenAIError(t, b.openai(t, oaiKey, "/v1/organization/usage/nonsense?"+st), http.StatusNotFound)
}

func TestOpenAIArrayFormsAreEquivalent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	base := "/v1/organization/usage/completions?start_time=" + unix(day0) + "&end_time=" + unix(day0.AddDate(0, 0, 5)) + "&"
	bracket := b.openai(t, oaiKey, base+"group_by[]=model&group_by[]=project_id")
	escaped := b.openai(t, oaiKey, base+"group_by%5B%5D=model&group_by%5B%5D=project_id")
	repeated := b.openai(t, oaiKey, base+"group_by=model&group_by=project_id")
	mixed := b.openai(t, oaiKey, base+"group_by[]=model&group_by=project_id")
	require.Equal(t, http.StatusOK, bracket.Code)
	require.Equal(t, bracket.Body.String(), escaped.Body.String())
	require.Equal(t, bracket.Body.String(), repeated.Body.String())
	require.Equal(t, bracket.Body.String(), mixed.Body.String())
	ungrouped := b.openai(t, oaiKey, base)
	require.NotEqual(t, bracket.Body.String(), ungrouped.Body.String())
}

func TestOpenAIGroupingAndTotals(t *testing.T) {
	t.Parallel()
	b := setup(t)
	end := day0.AddDate(0, 0, 31)
	base := "/v1/organization/usage/completions?limit=31&start_time=" + unix(day0) + "&end_time=" + unix(end)

	// Ungrouped: at most one result per bucket, every dimension null, tokens
	// equal to the day's records added up.
	p := decode[oaiPage](t, b.openai(t, oaiKey, base))
	require.Equal(t, "page", p.Object)
	require.Len(t, p.Data, 31)
	for i, bk := range p.Data {
		d := day0.AddDate(0, 0, i)
		require.Equal(t, "bucket", bk.Object)
		require.Equal(t, d.Unix(), bk.StartTime)
		require.Equal(t, d.AddDate(0, 0, 1).Unix(), bk.EndTime)
		recs := fakeprovider.OpenAIDay(oaiKey, d)
		if len(recs) == 0 {
			require.NotNil(t, bk.Results)
			require.Empty(t, bk.Results)
			continue
		}
		require.Len(t, bk.Results, 1)
		var res map[string]any
		require.NoError(t, json.Unmarshal(bk.Results[0], &res))
		for _, k := range []string{"project_id", "user_id", "api_key_id", "model", "batch", "service_tier"} {
			require.Contains(t, res, k)
			require.Nil(t, res[k], k)
		}
		var in, cached int64
		for _, r := range recs {
			if r.Family == "completions" {
				in += r.InputTokens
				cached += r.InputCachedTokens
			}
		}
		require.Equal(t, float64(in), res["input_tokens"])
		require.Equal(t, float64(cached), res["input_cached_tokens"])
		require.Equal(t, "organization.usage.completions.result", res["object"])
	}
	require.Contains(t, b.openai(t, oaiKey, base).Body.String(), `"results":[]`, "empty days are present with an empty array")

	// Grouped by batch and model: batch is a real boolean, projects stay null.
	p = decode[oaiPage](t, b.openai(t, oaiKey, base+"&group_by[]=batch&group_by[]=model"))
	sawBatch := false
	for _, bk := range p.Data {
		for _, raw := range bk.Results {
			var res struct {
				Batch     *bool   `json:"batch"`
				Model     *string `json:"model"`
				ProjectID *string `json:"project_id"`
			}
			require.NoError(t, json.Unmarshal(raw, &res))
			require.NotNil(t, res.Batch)
			require.NotNil(t, res.Model)
			require.Nil(t, res.ProjectID)
			sawBatch = sawBatch || *res.Batch
		}
	}
	require.True(t, sawBatch)

	// A models filter keeps only that model.
	model := fakeprovider.OpenAIDay(oaiKey, day0.AddDate(0, 0, 1))
	require.NotEmpty(t, model)
	filtered := b.openai(t, oaiKey, base+"&group_by=model&models[]="+url.QueryEscape(model[0].Model))
	require.Equal(t, http.StatusOK, filtered.Code)
	for _, bk := range decode[oaiPage](t, filtered).Data {
		for _, raw := range bk.Results {
			require.Contains(t, string(raw), `"model":"`+model[0].Model+`"`)
		}
	}
}

func TestOpenAIPartialFirstBucketAndPaging(t *testing.T) {
	t.Parallel()
	b := setup(t)
	start := day0.Add(5*time.Hour + 17*time.Minute)
	end := day0.AddDate(0, 0, 10)
	q := "/v1/organization/usage/completions?limit=3&group_by[]=model&start_time=" + unix(start) + "&end_time=" + unix(end)

	var starts, ends []int64
	target := q
	pages := 0
	for {
		pages++
		p := decode[oaiPage](t, b.openai(t, oaiKey, target))
		for _, bk := range p.Data {
			starts = append(starts, bk.StartTime)
			ends = append(ends, bk.EndTime)
		}
		if !p.HasMore {
			require.Nil(t, p.NextPage)
			break
		}
		require.Len(t, p.Data, 3)
		require.NotNil(t, p.NextPage)
		require.True(t, strings.HasPrefix(*p.NextPage, "page_"))
		target = q + "&page=" + url.QueryEscape(*p.NextPage)
	}
	require.Equal(t, 4, pages) // 10 buckets, 3 per page
	require.Len(t, starts, 10)
	require.Equal(t, start.Unix(), starts[0], "the first bucket starts at start_time")
	require.Equal(t, day0.AddDate(0, 0, 1).Unix(), ends[0], "… and ends at the next UTC midnight")
	for i := 1; i < len(starts); i++ {
		require.Equal(t, ends[i-1], starts[i], "buckets are contiguous")
		require.Equal(t, int64(86400), ends[i]-starts[i])
	}

	// A cursor is base64 of the next bucket start and resumes there.
	p := decode[oaiPage](t, b.openai(t, oaiKey, q))
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(*p.NextPage, "page_"))
	require.NoError(t, err)
	require.Len(t, raw, 8)
}

func TestOpenAICostsAmountsAreExactNumbers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	d := day0
	for len(fakeprovider.OpenAIDay(oaiKey, d)) == 0 {
		d = d.AddDate(0, 0, 1)
	}
	target := "/v1/organization/costs?group_by[]=line_item&group_by[]=project_id&start_time=" + unix(d) + "&end_time=" + unix(d.AddDate(0, 0, 1))
	w := b.openai(t, oaiKey, target)
	require.Equal(t, http.StatusOK, w.Code)

	dec := json.NewDecoder(bytes.NewReader(w.Body.Bytes()))
	dec.UseNumber()
	var p struct {
		Data []struct {
			Results []struct {
				Object string `json:"object"`
				Amount struct {
					Value    any    `json:"value"`
					Currency string `json:"currency"`
				} `json:"amount"`
				LineItem     string  `json:"line_item"`
				ProjectID    string  `json:"project_id"`
				APIKeyID     *string `json:"api_key_id"`
				Quantity     int64   `json:"quantity"`
				QuantityUnit string  `json:"quantity_unit"`
			} `json:"results"`
		} `json:"data"`
	}
	require.NoError(t, dec.Decode(&p))
	want := map[string]decimal.Decimal{}
	for _, r := range fakeprovider.OpenAIDay(oaiKey, d) {
		for _, c := range r.Costs {
			k := c.LineItem + "|" + c.ProjectID
			want[k] = want[k].Add(c.Amount)
		}
	}
	got := map[string]decimal.Decimal{}
	for _, r := range p.Data[0].Results {
		require.Equal(t, "organization.costs.result", r.Object)
		require.Equal(t, "usd", r.Amount.Currency)
		require.Nil(t, r.APIKeyID)
		require.Contains(t, []string{"tokens", "images", "characters", "duration_seconds", "requests"}, r.QuantityUnit)
		require.Positive(t, r.Quantity)
		n, ok := r.Amount.Value.(json.Number)
		require.True(t, ok, "amount.value is a JSON number, got %T", r.Amount.Value)
		got[r.LineItem+"|"+r.ProjectID] = decimal.RequireFromString(n.String())
	}
	require.Len(t, got, len(want))
	for k, v := range want {
		require.True(t, v.Equal(got[k]), "%s: want %s got %s", k, v, got[k])
	}

	// The -strings key gets the same amounts as JSON strings.
	strKey := "sk-admin-with-strings-1"
	body := b.openai(t, strKey, "/v1/organization/costs?start_time="+unix(day0)+"&end_time="+unix(day0.AddDate(0, 0, 7))).Body.String()
	require.Contains(t, body, `"value":"`)
}

func TestOpenAIDataStopsAtNow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	today := now.Truncate(24 * time.Hour)
	p := decode[oaiPage](t, b.openai(t, oaiKey, "/v1/organization/usage/completions?limit=10&start_time="+unix(today.AddDate(0, 0, -3))+"&end_time="+unix(today.AddDate(0, 0, 5))))
	require.Len(t, p.Data, 8)
	for i, bk := range p.Data {
		if i > 3 {
			require.Empty(t, bk.Results, "no usage in the future")
		}
	}
	// Without end_time the report runs up to now.
	p = decode[oaiPage](t, b.openai(t, oaiKey, "/v1/organization/usage/completions?start_time="+unix(today.AddDate(0, 0, -1))))
	require.Len(t, p.Data, 2)
	require.Equal(t, now.Unix(), p.Data[1].EndTime)
}

func TestFailureModes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	oai := "/v1/organization/costs?start_time=" + unix(day0)
	ant := "/v1/organizations/cost_report?starting_at=2026-01-01T00:00:00Z"

	e := requireOpenAIError(t, b.openai(t, "sk-admin-flaky-1", oai), http.StatusInternalServerError)
	require.Equal(t, "server_error", e["type"])
	require.Equal(t, http.StatusOK, b.openai(t, "sk-admin-flaky-1", oai).Code)
	requireOpenAIError(t, b.openai(t, "sk-admin-flaky-1", oai), http.StatusInternalServerError)

	w := b.openai(t, "sk-admin-ratelimited-1", oai)
	requireOpenAIError(t, w, http.StatusTooManyRequests)
	require.Equal(t, "1", w.Header().Get("Retry-After"))

	w = b.anthropic(t, "sk-ant-admin-ratelimited-1", "2023-06-01", ant)
	requireAnthropicError(t, w, http.StatusTooManyRequests, "rate_limit_error")
	require.Equal(t, "1", w.Header().Get("retry-after"))
	requireAnthropicError(t, b.anthropic(t, "sk-ant-admin-overloaded-1", "2023-06-01", ant), 529, "overloaded_error")
	requireAnthropicError(t, b.anthropic(t, "sk-ant-admin-flaky-1", "2023-06-01", ant), 500, "api_error")
	require.Equal(t, http.StatusOK, b.anthropic(t, "sk-ant-admin-flaky-1", "2023-06-01", ant).Code)
}

func TestRequestsAreCountedPerKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	oai := "/v1/organization/costs?start_time=" + unix(day0)
	ant := "/v1/organizations/cost_report?starting_at=2026-01-01T00:00:00Z"
	b.openai(t, oaiKey, oai)
	b.openai(t, oaiKey, oai)
	b.openai(t, "sk-admin-revoked-1", oai)
	b.anthropic(t, antKey, "2023-06-01", ant)
	b.anthropic(t, antKey, "", ant) // rejected requests count too
	require.Equal(t, 2, b.fake.Requests(oaiKey))
	require.Equal(t, 1, b.fake.Requests("sk-admin-revoked-1"))
	require.Equal(t, 2, b.fake.Requests(antKey))
	require.Equal(t, 0, b.fake.Requests("sk-admin-never-seen"))
}

func TestLatencyIsAdded(t *testing.T) {
	t.Parallel()
	fake := fakeprovider.New(fakeprovider.Options{Latency: 30 * time.Millisecond, Now: func() time.Time { return now }})
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	start := time.Now()
	req, err := http.NewRequest(http.MethodGet, srv.URL+"/v1/organization/costs?start_time="+unix(day0), nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+oaiKey)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.GreaterOrEqual(t, time.Since(start), 30*time.Millisecond)
}

func TestAnthropicAuthAndVersion(t *testing.T) {
	t.Parallel()
	b := setup(t)
	target := "/v1/organizations/usage_report/messages?starting_at=2026-01-01T00:00:00Z"

	requireAnthropicError(t, b.anthropic(t, "", "2023-06-01", target), http.StatusUnauthorized, "authentication_error")
	requireAnthropicError(t, b.anthropic(t, "sk-ant-api03-regular", "2023-06-01", target), http.StatusUnauthorized, "authentication_error")
	const revoked = "sk-ant-admin01-revoked-abcdefghijkl"
	msg := requireAnthropicError(t, b.anthropic(t, revoked, "2023-06-01", target), http.StatusUnauthorized, "authentication_error")
	require.Contains(t, msg, revoked, "the hostile key echoes itself in full")
	requireAnthropicError(t, b.anthropic(t, antKey, "", target), http.StatusBadRequest, "invalid_request_error")
	requireAnthropicError(t, b.anthropic(t, antKey, "2099-01-01", target), http.StatusBadRequest, "invalid_request_error")
	requireAnthropicError(t, b.anthropic(t, antKey, "2023-06-01", "/v1/organizations/nope"), http.StatusNotFound, "not_found_error")

	w := b.anthropic(t, antKey, "2023-06-01", target)
	require.Equal(t, http.StatusOK, w.Code)
	require.True(t, strings.HasPrefix(w.Header().Get("request-id"), "req_"))
}

func TestAnthropicParamValidation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	msgs := "/v1/organizations/usage_report/messages?"
	cost := "/v1/organizations/cost_report?"
	st := "starting_at=2026-01-01T00:00:00Z"
	for _, bad := range []string{
		msgs + "ending_at=2026-01-02T00:00:00Z",
		msgs + "starting_at=1767225600",
		msgs + st + "&ending_at=2025-12-01T00:00:00Z",
		msgs + st + "&limit=32",
		msgs + st + "&bucket_width=1h&limit=169",
		msgs + st + "&bucket_width=1w",
		msgs + st + "&group_by[]=description",
		msgs + st + "&page=page_garbage",
		cost + "limit=3",
		cost + st + "&bucket_width=1h",
		cost + st + "&limit=32",
		cost + st + "&group_by[]=model",
	} {
		requireAnthropicError(t, b.anthropic(t, antKey, "2023-06-01", bad), http.StatusBadRequest, "invalid_request_error")
	}
	for _, ok := range []string{
		msgs + st + "&limit=31&group_by[]=api_key_id&group_by[]=service_tier&group_by[]=context_window",
		msgs + st + "&bucket_width=1h&limit=168",
		cost + st + "&limit=31&group_by=workspace_id&group_by=description",
	} {
		require.Equal(t, http.StatusOK, b.anthropic(t, antKey, "2023-06-01", ok).Code, ok)
	}
}

func TestAnthropicMessagesBucketsAndGrouping(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// starting_at mid-day snaps down to the day; ending_at is exclusive.
	base := "/v1/organizations/usage_report/messages?limit=31&starting_at=2026-01-01T13:45:00Z&ending_at=2026-01-11T00:00:00Z"

	grouped := b.anthropic(t, antKey, "2023-06-01", base+"&group_by[]=model&group_by[]=workspace_id")
	repeated := b.anthropic(t, antKey, "2023-06-01", base+"&group_by=model&group_by=workspace_id")
	require.Equal(t, grouped.Body.String(), repeated.Body.String())

	p := decode[antPage](t, grouped)
	require.False(t, p.HasMore)
	require.Nil(t, p.NextPage)
	require.Len(t, p.Data, 10)
	require.Equal(t, "2026-01-01T00:00:00Z", p.Data[0].StartingAt)
	require.Equal(t, "2026-01-02T00:00:00Z", p.Data[0].EndingAt)
	sawDefault := false
	for i, bk := range p.Data {
		d := day0.AddDate(0, 0, i)
		require.Equal(t, d.Format(time.RFC3339), bk.StartingAt)
		recs := fakeprovider.AnthropicDay(antKey, d)
		want := map[string]int64{}
		for _, r := range recs {
			// Tiers and context windows are added up: not grouped by them.
			want[r.Model+"|"+r.WorkspaceID] += r.CacheReadInputTokens
		}
		require.Len(t, bk.Results, len(want))
		for _, raw := range bk.Results {
			var res struct {
				CacheRead   int64   `json:"cache_read_input_tokens"`
				Model       string  `json:"model"`
				WorkspaceID *string `json:"workspace_id"`
				APIKeyID    *string `json:"api_key_id"`
			}
			require.NoError(t, json.Unmarshal(raw, &res))
			require.Nil(t, res.APIKeyID, "not grouped by api_key_id")
			ws := ""
			if res.WorkspaceID != nil {
				ws = *res.WorkspaceID
			} else {
				sawDefault = true
			}
			require.Equal(t, want[res.Model+"|"+ws], res.CacheRead)
		}
	}
	require.True(t, sawDefault, "the default workspace is reported as null")

	// Ungrouped: one aggregated result per non-empty day, all dims null.
	p = decode[antPage](t, b.anthropic(t, antKey, "2023-06-01", base))
	for i, bk := range p.Data {
		recs := fakeprovider.AnthropicDay(antKey, day0.AddDate(0, 0, i))
		if len(recs) == 0 {
			require.Empty(t, bk.Results)
			continue
		}
		require.Len(t, bk.Results, 1)
		var res map[string]any
		require.NoError(t, json.Unmarshal(bk.Results[0], &res))
		for _, k := range []string{"api_key_id", "workspace_id", "model", "service_tier", "context_window"} {
			require.Contains(t, res, k)
			require.Nil(t, res[k])
		}
		var out int64
		for _, r := range recs {
			out += r.OutputTokens
		}
		require.Equal(t, float64(out), res["output_tokens"])
	}
}

func TestAnthropicPaging(t *testing.T) {
	t.Parallel()
	b := setup(t)
	q := "/v1/organizations/cost_report?limit=4&starting_at=2026-01-01T00:00:00Z&ending_at=2026-01-11T00:00:00Z"
	target := q
	var starts []string
	for pages := 1; ; pages++ {
		require.LessOrEqual(t, pages, 3)
		p := decode[antPage](t, b.anthropic(t, antKey, "2023-06-01", target))
		for _, bk := range p.Data {
			starts = append(starts, bk.StartingAt)
		}
		if !p.HasMore {
			require.Nil(t, p.NextPage)
			break
		}
		raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(*p.NextPage, "page_"))
		require.NoError(t, err)
		require.Equal(t, day0.AddDate(0, 0, len(starts)).Format(time.RFC3339), string(raw), "the cursor is the next starting_at")
		target = q + "&page=" + url.QueryEscape(*p.NextPage)
	}
	require.Len(t, starts, 10)
	require.Equal(t, "2026-01-10T00:00:00Z", starts[9])
}

func TestAnthropicCostAmountsAreCentStrings(t *testing.T) {
	t.Parallel()
	b := setup(t)
	w := b.anthropic(t, antKey, "2023-06-01",
		"/v1/organizations/cost_report?limit=31&group_by[]=workspace_id&group_by[]=description&starting_at=2026-01-01T00:00:00Z&ending_at=2026-02-01T00:00:00Z")
	require.Equal(t, http.StatusOK, w.Code)
	var p struct {
		Data []struct {
			Results []struct {
				Amount        any     `json:"amount"`
				Currency      string  `json:"currency"`
				CostType      string  `json:"cost_type"`
				Description   string  `json:"description"`
				Model         *string `json:"model"`
				TokenType     *string `json:"token_type"`
				ServiceTier   *string `json:"service_tier"`
				ContextWindow *string `json:"context_window"`
				WorkspaceID   *string `json:"workspace_id"`
			} `json:"results"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &p))
	require.Len(t, p.Data, 31)
	for i, bk := range p.Data {
		want := map[string]decimal.Decimal{}
		for _, r := range fakeprovider.AnthropicDay(antKey, day0.AddDate(0, 0, i)) {
			for _, c := range r.Costs {
				k := c.WorkspaceID + "|" + c.Description + "||"
				if c.CostType == "tokens" {
					// Token lines also carry their tier and window, which
					// split them even under one description.
					k = c.WorkspaceID + "|" + c.Description + "|" + r.ServiceTier + "|" + r.ContextWindow
				}
				want[k] = want[k].Add(c.AmountCents)
			}
		}
		require.Len(t, bk.Results, len(want))
		for _, r := range bk.Results {
			s, ok := r.Amount.(string)
			require.True(t, ok, "amount is a decimal string, got %T", r.Amount)
			require.Equal(t, "USD", r.Currency)
			ws := ""
			if r.WorkspaceID != nil {
				ws = *r.WorkspaceID
			}
			str := func(p *string) string {
				if p == nil {
					return ""
				}
				return *p
			}
			k := ws + "|" + r.Description + "|" + str(r.ServiceTier) + "|" + str(r.ContextWindow)
			require.True(t, want[k].Equal(decimal.RequireFromString(s)), k)
			if r.CostType == "web_search" {
				require.Nil(t, r.Model)
				require.Nil(t, r.TokenType)
			} else {
				require.NotNil(t, r.Model)
				require.NotNil(t, r.TokenType)
			}
		}
	}
}
