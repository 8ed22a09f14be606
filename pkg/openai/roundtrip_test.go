package openai_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/fakeprovider"
	"github.com/tokka-dev/tokka/pkg/openai"
	"github.com/tokka-dev/tokka/pkg/provider"
	"github.com/tokka-dev/tokka/pkg/secret"
)

var fakeNow = time.Date(2026, 3, 31, 15, 4, 5, 0, time.UTC)

type fakeBundle struct {
	fake   *fakeprovider.Server
	client *openai.Client
	mu     sync.Mutex
	sleeps []time.Duration
}

func setupFake(t *testing.T) *fakeBundle {
	t.Helper()
	b := &fakeBundle{fake: fakeprovider.New(fakeprovider.Options{Now: func() time.Time { return fakeNow }})}
	srv := httptest.NewServer(b.fake)
	t.Cleanup(srv.Close)
	b.client = openai.New(srv.URL, provider.HTTPClient{Sleep: func(ctx context.Context, d time.Duration) error {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.sleeps = append(b.sleeps, d)
		return ctx.Err()
	}})
	return b
}

type usageKey struct {
	day              time.Time
	model, projectID string
}

type tokens struct{ uncached, read, write, output, requests int64 }

type costKey struct {
	day             time.Time
	model, lineItem string
	projectID       string
}

// expected computes, straight from fakeprovider.OpenAIDay and without HTTP,
// what a sync of w must produce.
func expected(key string, w provider.Window) (map[usageKey]tokens, map[costKey]string, map[time.Time]bool) {
	usage := map[usageKey]tokens{}
	costs := map[costKey]decimal.Decimal{}
	empty := map[time.Time]bool{}
	for d := w.From; d.Before(w.To); d = d.AddDate(0, 0, 1) {
		recs := fakeprovider.OpenAIDay(key, d)
		if len(recs) == 0 {
			empty[d] = true
		}
		for _, r := range recs {
			k := usageKey{d, r.Model, r.ProjectID}
			t := usage[k]
			t.uncached += r.InputUncachedTokens()
			t.read += r.InputCachedTokens
			t.write += r.InputCacheWriteTokens
			t.output += r.OutputTokens
			t.requests += r.Requests
			usage[k] = t
			for _, c := range r.Costs {
				ck := costKey{d, r.Model, c.LineItem, c.ProjectID}
				costs[ck] = costs[ck].Add(c.Amount)
			}
		}
	}
	return usage, decimalStrings(costs), empty
}

func decimalStrings[K comparable](m map[K]decimal.Decimal) map[K]string {
	out := make(map[K]string, len(m))
	for k, v := range m {
		out[k] = v.String()
	}
	return out
}

func TestRoundTripMatchesFakeData(t *testing.T) {
	t.Parallel()
	w := provider.DayWindow(fakeNow, 90)
	require.Equal(t, 90, w.Days())
	for _, k := range []string{
		"sk-admin-roundtrip-alpha-00001",
		"sk-admin-roundtrip-bravo-88888",
		"sk-admin-charlie-strings-3", // amount.value arrives as JSON strings
	} {
		t.Run(k, func(t *testing.T) {
			t.Parallel()
			b := setupFake(t)
			wantUsage, wantCosts, empty := expected(k, w)
			require.NotEmpty(t, empty, "the fake should have idle days in 90")
			require.Less(t, len(empty), 45)

			rows, err := b.client.Usage(context.Background(), secret.FromString(k), w)
			require.NoError(t, err)
			gotUsage := map[usageKey]tokens{}
			perModelTokens := map[string]int64{}
			for _, r := range rows {
				require.Equal(t, "completions", r.Family)
				require.Equal(t, "", r.Batch, "not grouped by batch")
				require.Zero(t, r.CacheWrite1hTokens)
				require.False(t, empty[r.Day], "no rows on idle day %s", r.Day)
				uk := usageKey{r.Day, r.Model, r.ProjectID}
				_, dup := gotUsage[uk]
				require.False(t, dup, "one row per day, model and project")
				gotUsage[uk] = tokens{r.InputUncachedTokens, r.CacheReadTokens, r.CacheWrite5mTokens, r.OutputTokens, r.Requests}
				perModelTokens[r.Model] += r.InputTokens() + r.OutputTokens
			}
			require.Equal(t, wantUsage, gotUsage)
			require.GreaterOrEqual(t, len(perModelTokens), 2)

			costs, err := b.client.Costs(context.Background(), secret.FromString(k), w)
			require.NoError(t, err)
			got := map[costKey]decimal.Decimal{}
			perModel := map[string]decimal.Decimal{}
			for _, c := range costs {
				require.Equal(t, "usd", c.Currency)
				require.True(t, c.Amount.Equal(c.AmountUSD))
				require.True(t, strings.HasPrefix(c.LineItem, c.Model+", "), "model %q parsed from %q", c.Model, c.LineItem)
				ck := costKey{c.Day, c.Model, c.LineItem, c.ProjectID}
				got[ck] = got[ck].Add(c.AmountUSD)
				perModel[c.Model] = perModel[c.Model].Add(c.AmountUSD)
			}
			require.Equal(t, wantCosts, decimalStrings(got))
			for model := range perModelTokens {
				require.True(t, perModel[model].IsPositive(), "every model with usage has cost: %s", model)
			}

			// 90 daily buckets at 31 per page is 3 usage pages; costs fit one page of 180.
			require.Equal(t, 4, b.fake.Requests(k))
		})
	}
}

func TestRoundTripRetriesFlakyAndRateLimitedKeys(t *testing.T) {
	t.Parallel()
	w := provider.DayWindow(fakeNow, 40)
	for _, tc := range []struct {
		key       string
		wantSleep time.Duration // 0: backoff with random jitter, so only counted
	}{
		{"sk-admin-echo-flaky-1", 0},
		{"sk-admin-fox-ratelimited-2", time.Second}, // the fake asks for Retry-After: 1
	} {
		t.Run(tc.key, func(t *testing.T) {
			t.Parallel()
			b := setupFake(t)
			rows, err := b.client.Usage(context.Background(), secret.FromString(tc.key), w)
			require.NoError(t, err)
			wantUsage, _, _ := expected(tc.key, w)
			total := int64(0)
			for _, r := range rows {
				total += r.OutputTokens
			}
			want := int64(0)
			for _, v := range wantUsage {
				want += v.output
			}
			require.Equal(t, want, total)
			// Two pages, each failing once before it succeeds.
			require.Equal(t, 4, b.fake.Requests(tc.key))
			b.mu.Lock()
			defer b.mu.Unlock()
			require.Len(t, b.sleeps, 2)
			if tc.wantSleep > 0 {
				require.Equal(t, []time.Duration{tc.wantSleep, tc.wantSleep}, b.sleeps)
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
	w := provider.DayWindow(fakeNow, 90)
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
			b := setupFake(t)
			_, err := b.client.Usage(context.Background(), secret.FromString(tc.key), w)
			requireKeyFree(t, err, tc.key)
			require.Equal(t, tc.status, requireKind(t, err, provider.KindAuth).Status)
			require.NotEmpty(t, requireKind(t, err, provider.KindAuth).RequestID)

			_, err = b.client.Costs(context.Background(), secret.FromString(tc.key), w)
			requireKeyFree(t, err, tc.key)
			require.Equal(t, 2, b.fake.Requests(tc.key), "auth failures are not retried")
			b.mu.Lock()
			defer b.mu.Unlock()
			require.Empty(t, b.sleeps)
		})
	}
}
