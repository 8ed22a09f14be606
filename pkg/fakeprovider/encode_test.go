package fakeprovider

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The hand encoders must write exactly what encoding/json writes for the
// same values (the wire types' tags): these tests build real pages and
// compare.

func TestAppendStringIsEncodingJSONs(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "gpt-4.1, input", "Claude Sonnet 4.5 Usage - Input Tokens", `quote " and \ backslash`,
		"<b>&amp;</b>", "tab\tnew\nline\x01", "naïve ☃", "line\u2028sep", "bad \xff utf-8"} {
		want, err := json.Marshal(s)
		require.NoError(t, err)
		require.Equal(t, string(want), string(appendString(nil, s)), "%q", s)
	}
}

// testDays are the bucket spans of 40 days that end well before now.
func testDays() []span {
	var out []span
	first := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 40 {
		d := first.AddDate(0, 0, i)
		out = append(out, span{d, d.AddDate(0, 0, 1)})
	}
	return out
}

func TestOpenAIUsagePagesEncodeAsEncodingJSON(t *testing.T) {
	t.Parallel()
	s := New(Options{})
	next := "page_AAAAAGdGAAA="
	seen := 0
	for _, key := range []string{"sk-admin-encode-a", "sk-admin-encode-b-org_enc"} {
		for _, fam := range oaiFamilies {
			for _, groupBy := range []map[string]bool{{}, setOf(fam.groups...)} {
				req := oaiUsageRequest{groupBy: groupBy, filters: map[string][]string{}}
				page := oaiPage[*oaiUsageResult]{Object: "page", Data: []oaiBucket[*oaiUsageResult]{}, HasMore: true, NextPage: &next}
				type mapBucket struct {
					Object    string           `json:"object"`
					StartTime int64            `json:"start_time"`
					EndTime   int64            `json:"end_time"`
					Results   []map[string]any `json:"results"`
				}
				want := struct {
					Object   string      `json:"object"`
					Data     []mapBucket `json:"data"`
					HasMore  bool        `json:"has_more"`
					NextPage *string     `json:"next_page"`
				}{Object: "page", Data: []mapBucket{}, HasMore: true, NextPage: &next}
				for _, b := range testDays() {
					results := s.openAIUsageResults(key, fam, req, b)
					page.Data = append(page.Data, oaiBucket[*oaiUsageResult]{Object: "bucket", StartTime: b.start.Unix(), EndTime: b.end.Unix(), Results: results})
					seen += len(results)
					maps := []map[string]any{}
					for _, r := range results {
						maps = append(maps, r.asMap())
					}
					want.Data = append(want.Data, mapBucket{Object: "bucket", StartTime: b.start.Unix(), EndTime: b.end.Unix(), Results: maps})
				}
				wantJSON, err := json.Marshal(want)
				require.NoError(t, err)
				require.Equal(t, string(wantJSON), string(page.appendJSON(nil)), "%s %s", key, fam.name)
			}
		}
	}
	require.Greater(t, seen, 500, "the pages compared carry results")
}

// asMap is r as the map of fields OpenAI's result objects are.
func (r *oaiUsageResult) asMap() map[string]any {
	m := map[string]any{"object": r.fam.object}
	for i, g := range r.fam.groups {
		switch {
		case g == "batch" && r.batch != nil:
			m[g] = *r.batch
		case g == "batch":
			m[g] = nil
		case r.dims[i] == nil:
			m[g] = nil
		default:
			m[g] = *r.dims[i]
		}
	}
	for i, name := range r.fam.metrics {
		m[name] = r.metrics[i]
	}
	return m
}

func setOf(values ...string) map[string]bool {
	out := map[string]bool{}
	for _, v := range values {
		out[v] = true
	}
	return out
}

func TestCostAndAnthropicPagesEncodeAsEncodingJSON(t *testing.T) {
	t.Parallel()
	s := New(Options{})
	check := func(v jsonAppender, name string) {
		t.Helper()
		want, err := json.Marshal(v)
		require.NoError(t, err)
		require.Equal(t, string(want), string(v.appendJSON(nil)), name)
	}
	for _, groupBy := range []map[string]bool{{}, setOf(oaiCostGroups...), setOf("line_item")} {
		for _, asString := range []bool{false, true} {
			page := oaiPage[*oaiCostResult]{Object: "page", Data: []oaiBucket[*oaiCostResult]{}}
			for _, b := range testDays() {
				results := s.openAICostResults("sk-admin-encode-costs", groupBy, nil, nil, b)
				for _, res := range results {
					res.Amount.Value = json.RawMessage(res.sum.String())
					if asString {
						res.Amount.Value = appendString(nil, res.sum.String())
					}
				}
				page.Data = append(page.Data, oaiBucket[*oaiCostResult]{Object: "bucket", StartTime: b.start.Unix(), EndTime: b.end.Unix(), Results: results})
			}
			check(page, "openai costs")
		}
	}
	for _, groupBy := range []map[string]bool{{}, setOf(antMessagesGroups...), setOf("model", "workspace_id")} {
		next := "page_MjAyNi0wMi0xMFQwMDowMDowMFo="
		page := antPage[*antMessagesResult]{Data: []antBucket[*antMessagesResult]{}, HasMore: true, NextPage: &next}
		for _, b := range testDays() {
			results := s.anthropicMessagesResults("sk-ant-admin01-encode", groupBy, antMessagesFilter{}, b)
			page.Data = append(page.Data, antBucket[*antMessagesResult]{StartingAt: rfc3339(b.start), EndingAt: rfc3339(b.end), Results: results})
		}
		check(page, "anthropic messages")
	}
	for _, groupBy := range []map[string]bool{{}, setOf(antCostGroups...), setOf("description")} {
		page := antPage[*antCostResult]{Data: []antBucket[*antCostResult]{}}
		for _, b := range testDays() {
			results := s.anthropicCostResults("sk-ant-admin01-encode", groupBy, b)
			for _, res := range results {
				res.Amount = res.sum.String()
			}
			page.Data = append(page.Data, antBucket[*antCostResult]{StartingAt: rfc3339(b.start), EndingAt: rfc3339(b.end), Results: results})
		}
		check(page, "anthropic costs")
	}
}

func TestTheDayCacheServesThePureFunctionsDays(t *testing.T) {
	t.Parallel()
	s := New(Options{})
	for _, b := range testDays()[:5] {
		for range 2 { // generated, then from the cache
			require.Equal(t, OpenAIDayAt("sk-admin-cache", b.start, 0), s.openAIDay("sk-admin-cache", b.start))
			require.Equal(t, AnthropicDayAt("sk-ant-admin01-cache", b.start, 0), s.anthropicDay("sk-ant-admin01-cache", b.start))
		}
	}
	var c dayCache
	for i := range dayCacheSize + 10 {
		c.put(dayKey{key: "k", day: int64(i)}, i)
	}
	require.Len(t, c.days, dayCacheSize, "the cache stays bounded")
	_, ok := c.get(dayKey{key: "k", day: 0})
	require.False(t, ok, "the oldest day went first")
	v, ok := c.get(dayKey{key: "k", day: dayCacheSize + 9})
	require.True(t, ok)
	require.Equal(t, dayCacheSize+9, v)
}
