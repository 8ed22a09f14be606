package fakeprovider_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/tokka-dev/tokka/pkg/fakeprovider"
)

// backfillRequests are the data requests one sync of a 90-day window makes
// (what pkg/openai and pkg/anthropic ask for, page by page), so the
// benchmarks below measure the fake's CPU per connection in bench/syncer.
func backfillRequests(b *testing.B, srv *fakeprovider.Server, oaiKey, antKey string, end time.Time) []*http.Request {
	b.Helper()
	start := end.AddDate(0, 0, -90)
	var out []*http.Request
	page := func(path string, q url.Values, header, key string) {
		for {
			req := httptest.NewRequest(http.MethodGet, path+"?"+q.Encode(), nil)
			if header == "x-api-key" {
				req.Header.Set("x-api-key", key)
				req.Header.Set("anthropic-version", "2023-06-01")
			} else {
				req.Header.Set("Authorization", "Bearer "+key)
			}
			out = append(out, req)
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, req)
			next := nextPage(b, rec.Body.Bytes())
			if next == "" {
				return
			}
			q.Set("page", next)
		}
	}
	openAIGroups := map[string][]string{
		"completions": {"model", "project_id", "api_key_id", "batch", "service_tier"},
		"images":      {"model", "project_id", "api_key_id", "size", "source"}, "vector_stores": {"project_id"},
		"code_interpreter_sessions": {"project_id"}, "file_search_calls": {"project_id", "api_key_id", "vector_store_id"},
		"web_search_calls": {"model", "project_id", "api_key_id", "context_level"},
	}
	for _, family := range fakeprovider.OpenAIFamilies {
		q := url.Values{"start_time": {strconv.FormatInt(start.Unix(), 10)}, "end_time": {strconv.FormatInt(end.Unix(), 10)},
			"bucket_width": {"1d"}, "limit": {"31"}}
		groups, ok := openAIGroups[family]
		if !ok {
			groups = []string{"model", "project_id", "api_key_id"}
		}
		q["group_by[]"] = groups
		page("/v1/organization/usage/"+family, q, "Authorization", oaiKey)
	}
	page("/v1/organization/costs", url.Values{"start_time": {strconv.FormatInt(start.Unix(), 10)}, "end_time": {strconv.FormatInt(end.Unix(), 10)},
		"bucket_width": {"1d"}, "limit": {"180"}, "group_by[]": {"line_item", "project_id", "api_key_id"}}, "Authorization", oaiKey)
	window := url.Values{"starting_at": {start.Format(time.RFC3339)}, "ending_at": {end.Format(time.RFC3339)}, "bucket_width": {"1d"}, "limit": {"31"}}
	messages := url.Values{"group_by[]": {"model", "workspace_id", "api_key_id", "service_tier", "context_window"}}
	costs := url.Values{"group_by[]": {"workspace_id", "description"}}
	for k, v := range window {
		messages[k], costs[k] = v, v
	}
	page("/v1/organizations/usage_report/messages", messages, "x-api-key", antKey)
	page("/v1/organizations/cost_report", costs, "x-api-key", antKey)
	return out
}

// BenchmarkBackfillPages serves the pages of one OpenAI and one Anthropic
// connection's 90-day backfill, each op with new keys (so nothing is
// cached from an earlier op), as bench/syncer's fake provider does.
func BenchmarkBackfillPages(b *testing.B) {
	end := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	srv := fakeprovider.New(fakeprovider.Options{Now: func() time.Time { return end }})
	reqs := backfillRequests(b, srv, "sk-admin-bench", "sk-ant-admin01-bench", end)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		suffix := strconv.Itoa(i)
		for _, req := range reqs {
			r := req.Clone(req.Context())
			if r.Header.Get("x-api-key") != "" {
				r.Header.Set("x-api-key", "sk-ant-admin01-bench"+suffix)
			} else {
				r.Header.Set("Authorization", "Bearer sk-admin-bench"+suffix)
			}
			srv.ServeHTTP(httptest.NewRecorder(), r)
		}
	}
	b.ReportMetric(float64(len(reqs)), "requests/op")
}

// nextPage is a page's next_page cursor, "" on the last page.
func nextPage(b *testing.B, body []byte) string {
	b.Helper()
	var p struct {
		HasMore  bool    `json:"has_more"`
		NextPage *string `json:"next_page"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		b.Fatalf("not a page: %s", body)
	}
	if !p.HasMore || p.NextPage == nil {
		return ""
	}
	return *p.NextPage
}
