package fakeprovider_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/fakeprovider"
)

const (
	oaiUsage = "/v1/organization/usage/completions?limit=31&start_time=1767225600&end_time=1769904000" // 31 days
	oaiCosts = "/v1/organization/costs?start_time=1767225600&end_time=1767484800"
	antUsage = "/v1/organizations/usage_report/messages?limit=31&starting_at=2026-01-01T00:00:00Z&ending_at=2026-02-01T00:00:00Z"
	antCosts = "/v1/organizations/cost_report?starting_at=2026-01-01T00:00:00Z&ending_at=2026-01-04T00:00:00Z"
)

func TestStatusFaultsAlternateWithSuccess(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		marker              string
		oaiStatus           int
		antStatus           int
		retryAfter, retryMS string
	}{
		{"flaky", 500, 500, "", ""},
		{"ratelimited", 429, 429, "1", ""},
		{"throttled", 429, 429, "", ""},
		{"retryms", 429, 429, "1", "250"},
		{"overloaded", 503, 529, "", ""},
	} {
		t.Run(tc.marker, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			oai, ant := "sk-admin-x-"+tc.marker+"-1", "sk-ant-admin01-x-"+tc.marker+"-1"
			for i := 0; i < 2; i++ {
				w := b.openai(t, oai, oaiCosts)
				requireOpenAIError(t, w, tc.oaiStatus)
				require.Equal(t, tc.retryAfter, w.Header().Get("Retry-After"))
				require.Equal(t, tc.retryMS, w.Header().Get("retry-after-ms"))
				require.Equal(t, http.StatusOK, b.openai(t, oai, oaiCosts).Code, "every other request succeeds")

				w = b.anthropic(t, ant, "2023-06-01", antCosts)
				require.Equal(t, tc.antStatus, w.Code)
				require.Equal(t, tc.retryAfter, w.Header().Get("retry-after"))
				require.Equal(t, tc.retryMS, w.Header().Get("retry-after-ms"))
				require.Equal(t, http.StatusOK, b.anthropic(t, ant, "2023-06-01", antCosts).Code)
			}
		})
	}
}

func TestPermanentFaults(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for i := 0; i < 3; i++ {
		requireOpenAIError(t, b.openai(t, "sk-admin-x-outage-1", oaiCosts), http.StatusInternalServerError)
		requireAnthropicError(t, b.anthropic(t, "sk-ant-admin01-x-outage-1", "2023-06-01", antCosts), 500, "api_error")
		w := b.openai(t, "sk-admin-x-cooldown-1", oaiCosts)
		requireOpenAIError(t, w, http.StatusTooManyRequests)
		require.Equal(t, "3600", w.Header().Get("Retry-After"))
		w = b.anthropic(t, "sk-ant-admin01-x-cooldown-1", "2023-06-01", antCosts)
		requireAnthropicError(t, w, http.StatusTooManyRequests, "rate_limit_error")
		require.Equal(t, "3600", w.Header().Get("retry-after"))
	}
}

func TestMalformedAnswersAreNotJSON(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, w := range []*httptest.ResponseRecorder{
		b.openai(t, "sk-admin-x-malformed-1", oaiUsage),
		b.openai(t, "sk-admin-x-malformed-1", oaiCosts),
		b.anthropic(t, "sk-ant-admin01-x-malformed-1", "2023-06-01", antUsage),
		b.anthropic(t, "sk-ant-admin01-x-malformed-1", "2023-06-01", antCosts),
	} {
		require.Equal(t, http.StatusOK, w.Code)
		require.Equal(t, "application/json", w.Header().Get("Content-Type"))
		require.NotEmpty(t, w.Body.String())
		require.False(t, json.Valid(w.Body.Bytes()), w.Body.String())
	}
}

func TestBadCountsAreServed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for marker, want := range map[string]string{"negative": "-42", "absurd": "4000000000000000000"} {
		body := b.openai(t, "sk-admin-x-"+marker+"-1", oaiUsage).Body.String()
		require.Contains(t, body, `"input_tokens":`+want)
		body = b.openai(t, "sk-admin-x-"+marker+"-1", strings.Replace(oaiUsage, "completions", "vector_stores", 1)).Body.String()
		require.Contains(t, body, `"usage_bytes":`+want)
		body = b.anthropic(t, "sk-ant-admin01-x-"+marker+"-1", "2023-06-01", antUsage).Body.String()
		require.Contains(t, body, `"output_tokens":`+want)
	}
}

func TestEndlessAndLoopingPages(t *testing.T) {
	t.Parallel()
	b := setup(t)
	type pg struct {
		Data     []json.RawMessage `json:"data"`
		HasMore  bool              `json:"has_more"`
		NextPage *string           `json:"next_page"`
	}
	follow := func(get func(target string) *httptest.ResponseRecorder, target string, pages int) []string {
		var cursors []string
		next := target
		for i := 0; i < pages; i++ {
			w := get(next)
			require.Equal(t, http.StatusOK, w.Code, w.Body.String())
			p := decode[pg](t, w)
			require.True(t, p.HasMore, "page %d still says there is more", i)
			require.NotNil(t, p.NextPage)
			cursors = append(cursors, *p.NextPage)
			next = target + "&page=" + url.QueryEscape(*p.NextPage)
		}
		return cursors
	}
	oai := func(key string) func(string) *httptest.ResponseRecorder {
		return func(target string) *httptest.ResponseRecorder { return b.openai(t, key, target) }
	}
	ant := func(key string) func(string) *httptest.ResponseRecorder {
		return func(target string) *httptest.ResponseRecorder { return b.anthropic(t, key, "2023-06-01", target) }
	}
	for _, c := range [][]string{
		follow(oai("sk-admin-x-endless-1"), oaiUsage, 50),
		follow(ant("sk-ant-admin01-x-endless-1"), antCosts, 50),
	} {
		seen := map[string]bool{}
		for _, cursor := range c {
			require.False(t, seen[cursor], "endless paging hands out fresh cursors")
			seen[cursor] = true
		}
	}
	for _, c := range [][]string{
		follow(oai("sk-admin-x-pageloop-1"), oaiCosts, 3),
		follow(ant("sk-ant-admin01-x-pageloop-1"), antUsage, 3),
	} {
		require.Equal(t, []string{c[0], c[0], c[0]}, c, "a looping provider repeats its cursor")
	}
}

func TestOversizeAnswersExceedTheClientLimit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	w := b.openai(t, "sk-admin-x-oversize-1", oaiCosts)
	require.Equal(t, http.StatusOK, w.Code)
	require.Greater(t, w.Body.Len(), fakeprovider.OversizeBytes)
	rest := bytes.TrimLeft(w.Body.Bytes(), " ")
	require.Less(t, len(rest), 64<<10, "the padding is whitespace…")
	require.True(t, json.Valid(rest), "… before a valid answer")
}

func TestSlowKeysWaitAndGiveUpWithTheClient(t *testing.T) {
	t.Parallel()
	serve := func(delay time.Duration) string {
		srv := httptest.NewServer(fakeprovider.New(fakeprovider.Options{SlowDelay: delay, Now: func() time.Time { return now }}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	get := func(ctx context.Context, base, key string) (time.Duration, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+oaiCosts, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+key)
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)
		}
		return time.Since(start), err
	}
	// A -slow key waits SlowDelay, then answers.
	d, err := get(context.Background(), serve(150*time.Millisecond), "sk-admin-x-slow-1")
	require.NoError(t, err)
	require.GreaterOrEqual(t, d, 150*time.Millisecond)

	// With an hour's delay: any other key answers (no upper bound on how
	// fast, so a loaded machine cannot fail it: waiting would mean an
	// hour), and a -slow key gives up with its client.
	hour := serve(time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = get(ctx, hour, oaiKey)
	require.NoError(t, err, "only the -slow key waits")
	short, cancelShort := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancelShort()
	_, err = get(short, hour, "sk-admin-x-slow-2")
	require.ErrorIs(t, err, context.DeadlineExceeded)
}
