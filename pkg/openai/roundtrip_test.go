package openai_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/fakeprovider"
	"github.com/tokka-dev/tokka/pkg/openai"
	"github.com/tokka-dev/tokka/pkg/provider"
	"github.com/tokka-dev/tokka/pkg/providertest"
	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

var fakeNow = providertest.FakeNow

type costKey struct {
	day             time.Time
	model, lineItem string
	projectID       string
	apiKeyID        string
}

// wantRow is how a record of the fake must come out of the client: written
// from the reference's field list, not from the client's code.
func wantRow(d time.Time, r fakeprovider.OpenAIRecord) tokka.UsageRow {
	row := tokka.UsageRow{Day: d, Family: r.Family, Model: r.Model, ProjectID: r.ProjectID, APIKeyID: r.APIKeyID}
	switch r.Family {
	case "completions":
		row.Batch = strconv.FormatBool(r.Batch)
		row.ServiceTier = r.ServiceTier
		row.InputUncachedTokens = r.InputTokens - r.InputCachedTokens - r.InputCacheWriteTokens
		row.CacheReadTokens, row.CacheWrite5mTokens = r.InputCachedTokens, r.InputCacheWriteTokens
		row.OutputTokens, row.Requests = r.OutputTokens, r.Requests
	case "embeddings", "moderations":
		row.InputUncachedTokens, row.Requests = r.InputTokens, r.Requests
	case "images":
		row.ImageSize, row.ImageSource, row.Images, row.Requests = r.ImageSize, r.ImageSource, r.Images, r.Requests
	case "audio_speeches":
		row.Characters, row.Requests = r.Characters, r.Requests
	case "audio_transcriptions":
		row.Seconds, row.Requests = r.Seconds, r.Requests
	case "vector_stores":
		row.Bytes = r.UsageBytes
	case "code_interpreter_sessions":
		row.Sessions = r.Sessions
	case "file_search_calls":
		row.VectorStoreID, row.FileSearches = r.VectorStoreID, r.ToolCalls
	case "web_search_calls":
		row.ContextLevel, row.WebSearches = r.ContextLevel, r.ToolCalls
	}
	return row
}

// expected computes, straight from fakeprovider.OpenAIDay and without HTTP,
// what a sync of w must produce: every usage row, the cost per line, and the
// idle days.
func expected(key string, w tokka.Window) ([]tokka.UsageRow, map[costKey]string, map[time.Time]bool) {
	var usage []tokka.UsageRow
	costs := map[costKey]decimal.Decimal{}
	empty := map[time.Time]bool{}
	for d := w.From; d.Before(w.To); d = d.AddDate(0, 0, 1) {
		recs := fakeprovider.OpenAIDay(key, d)
		if len(recs) == 0 {
			empty[d] = true
		}
		for _, r := range recs {
			usage = append(usage, wantRow(d, r))
			for _, c := range r.Costs {
				ck := costKey{d, r.Model, c.LineItem, c.ProjectID, c.APIKeyID}
				costs[ck] = costs[ck].Add(c.Amount)
			}
		}
	}
	return usage, providertest.DecimalStrings(costs), empty
}

func TestRoundTripMatchesFakeData(t *testing.T) {
	t.Parallel()
	w := tokka.DayWindow(fakeNow, 90)
	require.Equal(t, 90, w.Days())
	for _, k := range []string{
		"sk-admin-roundtrip-alpha-00001",
		"sk-admin-roundtrip-bravo-88888",
		"sk-admin-charlie-strings-3", // amount.value arrives as JSON strings
	} {
		t.Run(k, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			wantUsage, wantCosts, empty := expected(k, w)
			require.NotEmpty(t, empty, "the fake should have idle days in 90")
			require.Less(t, len(empty), 45)

			rows, err := b.client.Usage(context.Background(), secret.FromString(k), w)
			require.NoError(t, err)
			require.ElementsMatch(t, wantUsage, rows)
			families := map[string]bool{}
			perModelTokens := map[string]int64{}
			for _, r := range rows {
				require.False(t, empty[r.Day], "no rows on idle day %s", r.Day)
				require.Zero(t, r.CacheWrite1hTokens)
				families[r.Family] = true
				perModelTokens[r.Model] += r.InputTokens() + r.OutputTokens
			}
			require.Len(t, families, len(openai.Families()), "90 days exercise every family")

			costs, err := b.client.Costs(context.Background(), secret.FromString(k), w)
			require.NoError(t, err)
			got := map[costKey]decimal.Decimal{}
			for _, c := range costs {
				require.Equal(t, "usd", c.Currency)
				require.True(t, c.Amount.Equal(c.AmountUSD))
				require.True(t, strings.HasPrefix(c.LineItem, c.Model+", "), "model %q parsed from %q", c.Model, c.LineItem)
				ck := costKey{c.Day, c.Model, c.LineItem, c.ProjectID, c.APIKeyID}
				got[ck] = got[ck].Add(c.AmountUSD)
			}
			require.Equal(t, wantCosts, providertest.DecimalStrings(got))

			// 90 daily buckets at 31 per page is 3 pages per usage family;
			// costs fit one page of 180.
			require.Equal(t, 3*len(openai.Families())+1, b.Fake.Requests(k))
		})
	}
}

func TestRoundTripRetriesFlakyAndRateLimitedKeys(t *testing.T) {
	t.Parallel()
	w := tokka.DayWindow(fakeNow, 40)
	for _, tc := range []struct {
		key       string
		wantSleep time.Duration // 0: backoff with random jitter, so only counted
	}{
		{"sk-admin-echo-flaky-1", 0},
		{"sk-admin-fox-ratelimited-2", time.Second},         // the fake asks for Retry-After: 1
		{"sk-admin-golf-retryms-3", 250 * time.Millisecond}, // retry-after-ms wins over Retry-After
		{"sk-admin-hotel-throttled-4", 0},                   // 429 without Retry-After: backoff
		{"sk-admin-india-overloaded-5", 0},
	} {
		t.Run(tc.key, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			rows, err := b.client.Usage(context.Background(), secret.FromString(tc.key), w)
			require.NoError(t, err)
			wantUsage, _, _ := expected(tc.key, w)
			require.ElementsMatch(t, wantUsage, rows)
			// Two pages per family, each failing once before it succeeds.
			pages := 2 * len(openai.Families())
			require.Equal(t, 2*pages, b.Fake.Requests(tc.key))
			require.Len(t, b.Sleeps.All(), pages)
			if tc.wantSleep > 0 {
				for _, d := range b.Sleeps.All() {
					require.Equal(t, tc.wantSleep, d)
				}
			}
		})
	}
}

// requireKeyFree fails if err's text contains any 8-character piece of key.
func requireKeyFree(t *testing.T, err error, key string) {
	t.Helper()
	pe := requireKind(t, err, provider.KindAuth)
	for _, s := range []string{err.Error(), pe.Reason, pe.RequestID} {
		for i := 0; i+8 <= len(key); i++ {
			require.NotContains(t, s, key[i:i+8])
		}
	}
}

func TestRoundTripRejectedKeysAreKeyFreeAuthErrors(t *testing.T) {
	t.Parallel()
	w := tokka.DayWindow(fakeNow, 90)
	for _, tc := range []struct {
		key    string
		status int
	}{
		{"sk-admin-revoked-Q7w8E9r0T1y2U3i4", 401}, // the fake echoes this whole key back
		{"sk-proj-NotAnAdminKey-Z9x8C7v6B5n4", 403},
		{"sk-live-SomethingElseEntirely-1234", 401},
	} {
		t.Run(tc.key, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			_, err := b.client.Usage(context.Background(), secret.FromString(tc.key), w)
			requireKeyFree(t, err, tc.key)
			require.Equal(t, tc.status, requireKind(t, err, provider.KindAuth).Status)
			require.NotEmpty(t, requireKind(t, err, provider.KindAuth).RequestID)

			_, err = b.client.Costs(context.Background(), secret.FromString(tc.key), w)
			requireKeyFree(t, err, tc.key)
			require.Equal(t, 2, b.Fake.Requests(tc.key), "auth failures are not retried")
			require.Empty(t, b.Sleeps.All())
		})
	}
}
