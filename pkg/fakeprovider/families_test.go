package fakeprovider_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/fakeprovider"
)

// familySpec is the reference's table 1.4, restated here so the fake is
// checked against the document and not against itself.
var familySpec = map[string]struct {
	object  string
	groups  []string
	metrics []string
}{
	"completions": {"organization.usage.completions.result", []string{"project_id", "user_id", "api_key_id", "model", "batch", "service_tier"},
		[]string{"input_tokens", "output_tokens", "num_model_requests", "input_cached_tokens", "input_cache_write_tokens", "input_uncached_tokens"}},
	"embeddings":                {"organization.usage.embeddings.result", []string{"project_id", "user_id", "api_key_id", "model"}, []string{"input_tokens", "num_model_requests"}},
	"moderations":               {"organization.usage.moderations.result", []string{"project_id", "user_id", "api_key_id", "model"}, []string{"input_tokens", "num_model_requests"}},
	"images":                    {"organization.usage.images.result", []string{"project_id", "user_id", "api_key_id", "model", "size", "source"}, []string{"images", "num_model_requests"}},
	"audio_speeches":            {"organization.usage.audio_speeches.result", []string{"project_id", "user_id", "api_key_id", "model"}, []string{"characters", "num_model_requests"}},
	"audio_transcriptions":      {"organization.usage.audio_transcriptions.result", []string{"project_id", "user_id", "api_key_id", "model"}, []string{"seconds", "num_model_requests"}},
	"vector_stores":             {"organization.usage.vector_stores.result", []string{"project_id"}, []string{"usage_bytes"}},
	"code_interpreter_sessions": {"organization.usage.code_interpreter_sessions.result", []string{"project_id"}, []string{"num_sessions"}},
	"file_search_calls":         {"organization.usage.file_searches.result", []string{"project_id", "user_id", "api_key_id", "vector_store_id"}, []string{"num_requests"}},
	"web_search_calls":          {"organization.usage.web_searches.result", []string{"project_id", "user_id", "api_key_id", "model", "context_level"}, []string{"num_model_requests", "num_requests"}},
}

// recordMetric reads a metric of a record by its wire name.
func recordMetric(r fakeprovider.OpenAIRecord, m string) int64 {
	switch m {
	case "input_tokens":
		return r.InputTokens
	case "output_tokens":
		return r.OutputTokens
	case "num_model_requests":
		return r.Requests
	case "input_cached_tokens":
		return r.InputCachedTokens
	case "input_cache_write_tokens":
		return r.InputCacheWriteTokens
	case "input_uncached_tokens":
		return r.InputUncachedTokens()
	case "images":
		return r.Images
	case "characters":
		return r.Characters
	case "seconds":
		return r.Seconds
	case "usage_bytes":
		return r.UsageBytes
	case "num_sessions":
		return r.Sessions
	case "num_requests":
		return r.ToolCalls
	}
	panic(m)
}

func TestOpenAIEveryFamilyIsServed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.Len(t, familySpec, len(fakeprovider.OpenAIFamilies))
	for family, spec := range familySpec {
		t.Run(family, func(t *testing.T) {
			t.Parallel()
			base := "/v1/organization/usage/" + family + "?limit=31&start_time=" + unix(day0) + "&end_time=" + unix(day0.AddDate(0, 0, 31))

			// Ungrouped: one result per non-empty day, every dimension null,
			// counts equal to the family's records added up.
			p := decode[oaiPage](t, b.openai(t, oaiKey, base))
			require.Len(t, p.Data, 31)
			sawData := false
			for i, bk := range p.Data {
				want := map[string]int64{}
				n := 0
				for _, r := range fakeprovider.OpenAIDay(oaiKey, day0.AddDate(0, 0, i)) {
					if r.Family != family {
						continue
					}
					n++
					for _, m := range spec.metrics {
						want[m] += recordMetric(r, m)
					}
				}
				if n == 0 {
					require.Empty(t, bk.Results)
					continue
				}
				sawData = true
				require.Len(t, bk.Results, 1)
				var res map[string]any
				require.NoError(t, json.Unmarshal(bk.Results[0], &res))
				require.Equal(t, spec.object, res["object"])
				for _, g := range spec.groups {
					require.Contains(t, res, g)
					require.Nil(t, res[g], g)
				}
				for _, m := range spec.metrics {
					require.Equal(t, float64(want[m]), res[m], m)
				}
			}
			require.True(t, sawData, "31 days have some %s usage", family)

			// Grouped by everything but user_id: results are the records
			// one to one.
			grouped := base
			for _, g := range spec.groups {
				if g != "user_id" {
					grouped += "&group_by[]=" + g
				}
			}
			p = decode[oaiPage](t, b.openai(t, oaiKey, grouped))
			for i, bk := range p.Data {
				var recs []fakeprovider.OpenAIRecord
				for _, r := range fakeprovider.OpenAIDay(oaiKey, day0.AddDate(0, 0, i)) {
					if r.Family == family {
						recs = append(recs, r)
					}
				}
				require.Len(t, bk.Results, len(recs))
				for _, raw := range bk.Results {
					var res map[string]any
					require.NoError(t, json.Unmarshal(raw, &res))
					require.Nil(t, res["user_id"])
					found := slices.ContainsFunc(recs, func(r fakeprovider.OpenAIRecord) bool {
						return matches(res, "project_id", r.ProjectID) && matches(res, "api_key_id", r.APIKeyID) &&
							matches(res, "model", r.Model) && matches(res, "size", r.ImageSize) && matches(res, "source", r.ImageSource) &&
							matches(res, "context_level", r.ContextLevel) && matches(res, "vector_store_id", r.VectorStoreID) &&
							res[spec.metrics[0]] == float64(recordMetric(r, spec.metrics[0]))
					})
					require.True(t, found, "result %v is one of the day's records", res)
				}
			}
			// user_id is allowed wherever the reference allows it; anything
			// else is a 400.
			if slices.Contains(spec.groups, "user_id") {
				require.Equal(t, http.StatusOK, b.openai(t, oaiKey, base+"&group_by[]=user_id").Code)
			}
			requireOpenAIError(t, b.openai(t, oaiKey, base+"&group_by[]=line_item"), http.StatusBadRequest)
		})
	}
}

// matches reports whether a result's dimension is v, or absent/null for "".
func matches(res map[string]any, dim, v string) bool {
	got, ok := res[dim]
	if !ok || got == nil {
		return v == ""
	}
	return got == v
}

func TestOpenAIFamilyFilters(t *testing.T) {
	t.Parallel()
	b := setup(t)
	end := day0.AddDate(0, 0, 60)
	q := func(family, extra string) string {
		return "/v1/organization/usage/" + family + "?limit=31&start_time=" + unix(day0) + "&end_time=" + unix(end) + extra
	}
	count := func(target string) (n int, body string) {
		p := decode[oaiPage](t, b.openai(t, oaiKey, target))
		var sb strings.Builder
		for _, bk := range p.Data {
			n += len(bk.Results)
			for _, r := range bk.Results {
				sb.Write(r)
			}
		}
		return n, sb.String()
	}
	for _, tc := range []struct{ family, param, dim, value string }{
		{"images", "sizes", "size", "1024x1792"},
		{"images", "sources", "source", "image.edit"},
		{"web_search_calls", "context_levels", "context_level", "high"},
	} {
		all, _ := count(q(tc.family, "&group_by[]="+tc.dim))
		some, body := count(q(tc.family, "&group_by[]="+tc.dim+"&"+tc.param+"[]="+url.QueryEscape(tc.value)))
		require.Positive(t, some, tc.param)
		require.Less(t, some, all, tc.param)
		require.Equal(t, some, strings.Count(body, `"`+tc.dim+`":"`+tc.value+`"`))
	}
	// The repeated array form works for the family filters too, and a
	// filter on user ids matches nothing (all the fake's usage is by key).
	a, _ := count(q("images", "&group_by[]=size&sizes[]=1024x1024"))
	c, _ := count(q("images", "&group_by[]=size&sizes=1024x1024"))
	require.Equal(t, a, c)
	n, _ := count(q("embeddings", "&user_ids[]=user_abc"))
	require.Zero(t, n)
}

func TestOpenAICostLinesOfEveryBilledFamily(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := decode[struct {
		Data []struct {
			Results []struct {
				LineItem     string `json:"line_item"`
				QuantityUnit string `json:"quantity_unit"`
			} `json:"results"`
		} `json:"data"`
	}](t, b.openai(t, oaiKey, "/v1/organization/costs?limit=60&group_by[]=line_item&start_time="+unix(day0)+"&end_time="+unix(day0.AddDate(0, 0, 60))))
	units := map[string]bool{}
	for _, bk := range p.Data {
		for _, r := range bk.Results {
			units[r.QuantityUnit] = true
			require.Contains(t, r.LineItem, ", ")
		}
	}
	require.Equal(t, map[string]bool{"tokens": true, "images": true, "characters": true, "duration_seconds": true, "requests": true}, units)
}

func TestRestateChangesRecentDaysOfRestatedKeysOnly(t *testing.T) {
	t.Parallel()
	b := setup(t)
	today := now.Truncate(24 * time.Hour)
	const restated, plain = "sk-admin-server-restated-1", "sk-admin-server-plain-1"
	const antRestated = "sk-ant-admin01-server-restated-1"
	target := func(p string) string {
		return p + "?limit=31&start_time=" + unix(today.AddDate(0, 0, -9)) + "&end_time=" + unix(today.AddDate(0, 0, 1))
	}
	usage := target("/v1/organization/usage/completions")
	before := b.openai(t, restated, usage).Body.String()
	plainBefore := b.openai(t, plain, usage).Body.String()
	antURL := "/v1/organizations/usage_report/messages?limit=31&starting_at=" + today.AddDate(0, 0, -9).Format(time.RFC3339)
	antBefore := b.anthropic(t, antRestated, "2023-06-01", antURL).Body.String()

	require.Equal(t, 0, b.fake.Epoch(restated))
	require.Equal(t, 1, b.fake.Restate(restated))
	require.Equal(t, 1, b.fake.Restate(plain))
	require.Equal(t, 1, b.fake.Restate(antRestated))
	require.Equal(t, 1, b.fake.Epoch(restated))

	require.Equal(t, plainBefore, b.openai(t, plain, usage).Body.String(), "keys without the marker never change")
	after := decode[oaiPage](t, b.openai(t, restated, usage))
	var old oaiPage
	require.NoError(t, json.Unmarshal([]byte(before), &old))
	require.Len(t, after.Data, 10)
	for i, bk := range after.Data {
		d := today.AddDate(0, 0, -9+i)
		if today.Sub(d) > fakeprovider.DefaultRestateDays*24*time.Hour {
			require.Equal(t, old.Data[i].Results, bk.Results, "%s is older than the restatement horizon", d)
			continue
		}
		var in int64
		for _, r := range fakeprovider.OpenAIDayAt(restated, d, 1) {
			if r.Family == "completions" {
				in += r.InputTokens
			}
		}
		if in == 0 {
			require.Empty(t, bk.Results)
			continue
		}
		var res struct {
			InputTokens int64 `json:"input_tokens"`
		}
		require.NoError(t, json.Unmarshal(bk.Results[0], &res))
		require.Equal(t, in, res.InputTokens, "%s is served at epoch 1", d)
	}
	require.NotEqual(t, antBefore, b.anthropic(t, antRestated, "2023-06-01", antURL).Body.String())
}

func TestRestatementsArePermanent(t *testing.T) {
	t.Parallel()
	var clock atomic.Int64
	clock.Store(now.Unix())
	fake := fakeprovider.New(fakeprovider.Options{Now: func() time.Time { return time.Unix(clock.Load(), 0) }})
	const key = "sk-ant-admin01-permanent-restated-1"
	today := now.Truncate(24 * time.Hour)
	served := func(d time.Time) string {
		r := httptest.NewRequest(http.MethodGet, "/v1/organizations/cost_report?starting_at="+d.Format(time.RFC3339)+"&ending_at="+d.AddDate(0, 0, 1).Format(time.RFC3339), nil)
		r.Header.Set("x-api-key", key)
		r.Header.Set("anthropic-version", "2023-06-01")
		w := httptest.NewRecorder()
		fake.ServeHTTP(w, r)
		require.Equal(t, http.StatusOK, w.Code)
		var p struct {
			Data []struct {
				Results []struct{ Amount string } `json:"results"`
			} `json:"data"`
		}
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &p))
		total := decimal.Zero
		for _, r := range p.Data[0].Results {
			total = total.Add(decimal.RequireFromString(r.Amount))
		}
		return total.String()
	}
	at := func(d time.Time, epoch int) string {
		total := decimal.Zero
		for _, r := range fakeprovider.AnthropicDayAt(key, d, epoch) {
			for _, c := range r.Costs {
				total = total.Add(c.AmountCents)
			}
		}
		return total.String()
	}
	edge := today.AddDate(0, 0, -fakeprovider.DefaultRestateDays)
	require.Equal(t, 1, fake.Restate(key))
	require.Equal(t, at(edge, 1), served(edge), "the oldest day in reach is revised")
	require.Equal(t, at(edge.AddDate(0, 0, -1), 0), served(edge.AddDate(0, 0, -1)), "the day before is not")

	clock.Add(3 * 86400) // three days later, edge is out of reach of new restatements …
	require.Equal(t, 2, fake.Restate(key))
	require.Equal(t, at(edge, 1), served(edge), "… and keeps its revision")
	require.Equal(t, at(today, 1), served(today), "the old today is out of reach of the second")
	for i := 1; i <= 3; i++ {
		d := today.AddDate(0, 0, i)
		require.Equal(t, at(d, 2), served(d), "day %d after is revised by the second", i)
	}
	require.Equal(t, 3, fake.Restate(key))
	require.Equal(t, at(today.AddDate(0, 0, 3), 3), served(today.AddDate(0, 0, 3)), "overlapping revisions: the latest wins")
	require.Equal(t, at(edge, 1), served(edge))
}
