package anthropic_test

import (
	"context"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/fakeprovider"
	"github.com/tokka-dev/tokka/pkg/provider"
	"github.com/tokka-dev/tokka/pkg/providertest"
	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

var fakeNow = providertest.FakeNow

type costKey struct {
	day                        time.Time
	workspaceID, description   string
	model, tokenType, costType string
}

// expected computes, straight from fakeprovider.AnthropicDay and without
// HTTP, what a sync of w must produce: every usage row (written from the
// reference's field list), cents per cost line, dollars per model, and the
// idle days.
func expected(key string, w tokka.Window) ([]tokka.UsageRow, map[costKey]string, map[string]string, map[time.Time]bool) {
	var usage []tokka.UsageRow
	costs := map[costKey]decimal.Decimal{}
	perModel := map[string]decimal.Decimal{}
	empty := map[time.Time]bool{}
	for d := w.From; d.Before(w.To); d = d.AddDate(0, 0, 1) {
		recs := fakeprovider.AnthropicDay(key, d)
		if len(recs) == 0 {
			empty[d] = true
		}
		for _, r := range recs {
			usage = append(usage, tokka.UsageRow{
				Day: d, Family: "messages", Model: r.Model, ProjectID: r.WorkspaceID, APIKeyID: r.APIKeyID,
				ServiceTier: r.ServiceTier, ContextWindow: r.ContextWindow,
				Tokens: tokka.Tokens{InputUncachedTokens: r.UncachedInputTokens, CacheReadTokens: r.CacheReadInputTokens,
					CacheWrite5mTokens: r.CacheCreation5mTokens, CacheWrite1hTokens: r.CacheCreation1hTokens,
					OutputTokens: r.OutputTokens},
				WebSearches: r.WebSearchRequests,
			})
			for _, c := range r.Costs {
				ck := costKey{d, c.WorkspaceID, c.Description, c.Model, c.TokenType, c.CostType}
				costs[ck] = costs[ck].Add(c.AmountCents)
				perModel[c.Model] = perModel[c.Model].Add(c.AmountCents.Shift(-2))
			}
		}
	}
	return usage, providertest.DecimalStrings(costs), providertest.DecimalStrings(perModel), empty
}

func TestRoundTripMatchesFakeData(t *testing.T) {
	t.Parallel()
	w := tokka.DayWindow(fakeNow, 90)
	for _, k := range []string{
		"sk-ant-admin01-roundtrip-alpha-00001",
		"sk-ant-admin01-roundtrip-bravo-88888",
		"sk-ant-admin01-roundtrip-charlie-333",
	} {
		t.Run(k, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			wantUsage, wantCosts, wantPerModel, empty := expected(k, w)
			require.NotEmpty(t, empty, "the fake should have idle days in 90")

			rows, err := b.client.Usage(context.Background(), secret.FromString(k), w)
			require.NoError(t, err)
			require.ElementsMatch(t, wantUsage, rows)
			defaultWorkspace, tiers := false, map[string]bool{}
			for _, r := range rows {
				require.Zero(t, r.Requests)
				require.False(t, empty[r.Day], "no rows on idle day %s", r.Day)
				defaultWorkspace = defaultWorkspace || r.ProjectID == ""
				tiers[r.ServiceTier] = true
				require.Contains(t, []string{"0-200k", "200k-1M"}, r.ContextWindow)
			}
			require.True(t, defaultWorkspace, "the default workspace arrives as a null workspace_id")
			require.True(t, tiers["batch"] && tiers["standard"], "both service tiers in 90 days")

			costs, err := b.client.Costs(context.Background(), secret.FromString(k), w)
			require.NoError(t, err)
			got := map[costKey]decimal.Decimal{}
			perModel := map[string]decimal.Decimal{}
			for _, c := range costs {
				require.Equal(t, "USD", c.Currency)
				require.True(t, c.AmountUSD.Shift(2).Equal(c.Amount))
				ck := costKey{c.Day, c.ProjectID, c.LineItem, c.Model, c.TokenType, c.CostType}
				got[ck] = got[ck].Add(c.Amount)
				perModel[c.Model] = perModel[c.Model].Add(c.AmountUSD)
			}
			require.Equal(t, wantCosts, providertest.DecimalStrings(got))
			require.Equal(t, wantPerModel, providertest.DecimalStrings(perModel))

			// 90 daily buckets at 31 per page: 3 pages for each endpoint.
			require.Equal(t, 6, b.Fake.Requests(k))
		})
	}
}

func TestRoundTripRetriesRateLimitedKey(t *testing.T) {
	t.Parallel()
	const k = "sk-ant-admin01-ratelimited-7"
	b := setup(t)
	w := tokka.DayWindow(fakeNow, 20)
	_, wantCosts, _, _ := expected(k, w)
	costs, err := b.client.Costs(context.Background(), secret.FromString(k), w)
	require.NoError(t, err)
	got := map[costKey]decimal.Decimal{}
	for _, c := range costs {
		ck := costKey{c.Day, c.ProjectID, c.LineItem, c.Model, c.TokenType, c.CostType}
		got[ck] = got[ck].Add(c.Amount)
	}
	require.Equal(t, wantCosts, providertest.DecimalStrings(got))
	require.Equal(t, 2, b.Fake.Requests(k))
	require.Equal(t, []time.Duration{time.Second}, b.Sleeps.All(), "the fake's retry-after: 1 is honoured")
}

func TestRoundTripRejectedKeysAreKeyFreeAuthErrors(t *testing.T) {
	t.Parallel()
	w := tokka.DayWindow(fakeNow, 90)
	for _, k := range []string{
		"sk-ant-admin01-revoked-Q7w8E9r0T1y2U3i4", // the fake echoes this whole key back
		"sk-ant-api03-NotAnAdminKey-Z9x8C7v6B5n4",
	} {
		t.Run(k, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			_, errUsage := b.client.Usage(context.Background(), secret.FromString(k), w)
			_, errCosts := b.client.Costs(context.Background(), secret.FromString(k), w)
			for _, err := range []error{errUsage, errCosts} {
				pe := requireKind(t, err, provider.KindAuth)
				require.Equal(t, 401, pe.Status)
				require.NotEmpty(t, pe.RequestID)
				for i := 0; i+8 <= len(k); i++ {
					require.NotContains(t, err.Error(), k[i:i+8])
					require.NotContains(t, pe.Reason, k[i:i+8])
				}
			}
			require.Equal(t, 2, b.Fake.Requests(k), "auth failures are not retried")
		})
	}
}
