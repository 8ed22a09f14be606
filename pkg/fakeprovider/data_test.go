package fakeprovider_test

import (
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/fakeprovider"
)

var day0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func days(n int) []time.Time {
	out := make([]time.Time, n)
	for i := range out {
		out[i] = day0.AddDate(0, 0, i)
	}
	return out
}

// hasMorePlaces reports whether d has more than places digits after the point.
func hasMorePlaces(d decimal.Decimal, places int32) bool {
	return -d.Exponent() > places && !d.Truncate(places).Equal(d)
}

func TestOpenAIDayIsDeterministicPerKey(t *testing.T) {
	t.Parallel()
	const a, b = "sk-admin-data-a", "sk-admin-data-b"
	differ := false
	for _, d := range days(30) {
		require.Equal(t, fakeprovider.OpenAIDay(a, d), fakeprovider.OpenAIDay(a, d))
		require.Equal(t, fakeprovider.OpenAIDay(a, d), fakeprovider.OpenAIDay(a, d.Add(13*time.Hour)), "any time of the day names the day")
		if len(fakeprovider.OpenAIDay(a, d)) != len(fakeprovider.OpenAIDay(b, d)) ||
			(len(fakeprovider.OpenAIDay(a, d)) > 0 && len(fakeprovider.OpenAIDay(b, d)) > 0 &&
				fakeprovider.OpenAIDay(a, d)[0].InputTokens != fakeprovider.OpenAIDay(b, d)[0].InputTokens) {
			differ = true
		}
	}
	require.True(t, differ, "different keys give different data")
}

func TestOpenAIDayShape(t *testing.T) {
	t.Parallel()
	for _, key := range []string{"sk-admin-shape-1", "sk-admin-shape-2", "sk-admin-shape-3", "sk-admin-shape-4"} {
		models, projects := map[string]bool{}, map[string]bool{}
		idle, awkward := 0, false
		for _, d := range days(90) {
			recs := fakeprovider.OpenAIDay(key, d)
			if len(recs) == 0 {
				idle++
			}
			for _, r := range recs {
				models[r.Model], projects[r.ProjectID] = true, true
				require.True(t, strings.HasPrefix(r.ProjectID, "proj_"))
				require.True(t, strings.HasPrefix(r.APIKeyID, "key_"))
				require.NotContains(t, r.ProjectID+r.APIKeyID, "shape", "ids never contain the key")
				require.Positive(t, r.InputTokens)
				require.Positive(t, r.OutputTokens)
				require.Positive(t, r.Requests)
				require.GreaterOrEqual(t, r.InputUncachedTokens(), int64(0))
				require.Len(t, r.Costs, 2)
				require.Equal(t, r.Model+", input", r.Costs[0].LineItem)
				require.Equal(t, r.Model+", output", r.Costs[1].LineItem)
				require.Equal(t, r.InputTokens, r.Costs[0].Quantity)
				require.Equal(t, r.OutputTokens, r.Costs[1].Quantity)
				for _, c := range r.Costs {
					require.Equal(t, r.ProjectID, c.ProjectID)
					require.True(t, c.Amount.IsPositive())
					awkward = awkward || hasMorePlaces(c.Amount, 4)
				}
			}
		}
		require.Positive(t, idle, "some days have no usage")
		require.Less(t, idle, 40)
		require.GreaterOrEqual(t, len(models), 2)
		require.LessOrEqual(t, len(models), 4)
		require.GreaterOrEqual(t, len(projects), 1)
		require.LessOrEqual(t, len(projects), 2)
		require.True(t, awkward, "amounts have sub-cent decimals")
	}
}

func TestOpenAICostsFollowPrices(t *testing.T) {
	t.Parallel()
	// gpt-4o-mini: $0.15 input, $0.075 cached, $0.60 output per million tokens;
	// batch at half price.
	found := false
	for _, rec := range allKeysDays("sk-admin-prices-", 8, 30) {
		for _, r := range rec {
			if r.Model != "gpt-4o-mini-2024-07-18" {
				continue
			}
			found = true
			f := decimal.NewFromInt(1)
			if r.Batch {
				f = decimal.RequireFromString("0.5")
			}
			in := decimal.NewFromInt(r.InputTokens - r.InputCachedTokens).Mul(decimal.RequireFromString("0.00000015")).
				Add(decimal.NewFromInt(r.InputCachedTokens).Mul(decimal.RequireFromString("0.000000075"))).Mul(f)
			out := decimal.NewFromInt(r.OutputTokens).Mul(decimal.RequireFromString("0.0000006")).Mul(f)
			require.True(t, in.Equal(r.Costs[0].Amount), "%s vs %s", in, r.Costs[0].Amount)
			require.True(t, out.Equal(r.Costs[1].Amount))
		}
	}
	require.True(t, found, "some key uses gpt-4o-mini")
}

// allKeysDays returns OpenAIDay for n keys prefix0… over the first d days.
func allKeysDays(prefix string, n, d int) [][]fakeprovider.OpenAIRecord {
	var out [][]fakeprovider.OpenAIRecord
	for i := 0; i < n; i++ {
		for _, day := range days(d) {
			out = append(out, fakeprovider.OpenAIDay(prefix+string(rune('a'+i)), day))
		}
	}
	return out
}

func TestAnthropicDayShape(t *testing.T) {
	t.Parallel()
	for _, key := range []string{"sk-ant-admin01-shape-1", "sk-ant-admin01-shape-2", "sk-ant-admin01-shape-3"} {
		models, workspaces := map[string]bool{}, map[string]bool{}
		idle, awkward := 0, false
		for _, d := range days(90) {
			recs := fakeprovider.AnthropicDay(key, d)
			require.Equal(t, recs, fakeprovider.AnthropicDay(key, d))
			if len(recs) == 0 {
				idle++
			}
			for _, r := range recs {
				models[r.Model], workspaces[r.WorkspaceID] = true, true
				require.True(t, strings.HasPrefix(r.APIKeyID, "apikey_"))
				require.Positive(t, r.UncachedInputTokens)
				require.Positive(t, r.OutputTokens)
				require.GreaterOrEqual(t, len(r.Costs), 2)
				types := map[string]decimal.Decimal{}
				for _, c := range r.Costs {
					require.Equal(t, r.WorkspaceID, c.WorkspaceID)
					require.True(t, c.AmountCents.IsPositive())
					awkward = awkward || hasMorePlaces(c.AmountCents, 2)
					if c.CostType == "web_search" {
						require.Empty(t, c.Model)
						require.Empty(t, c.TokenType)
						require.True(t, c.AmountCents.Equal(decimal.NewFromInt(r.WebSearchRequests)), "one cent per search")
						continue
					}
					require.Equal(t, "tokens", c.CostType)
					require.Equal(t, r.Model, c.Model)
					require.Contains(t, c.Description, " Usage - ")
					types[c.TokenType] = c.AmountCents
				}
				require.Contains(t, types, "uncached_input_tokens")
				require.Contains(t, types, "output_tokens")
				require.Equal(t, r.CacheCreation5mTokens > 0, !types["cache_creation.ephemeral_5m_input_tokens"].IsZero())
				require.Equal(t, r.CacheCreation1hTokens > 0, !types["cache_creation.ephemeral_1h_input_tokens"].IsZero())
				if r.Model == "claude-sonnet-4-5" {
					// $3 per million input tokens is 0.0003 cents per token.
					want := decimal.NewFromInt(r.UncachedInputTokens).Mul(decimal.RequireFromString("0.0003"))
					require.True(t, want.Equal(types["uncached_input_tokens"]))
				}
			}
		}
		require.Positive(t, idle)
		require.True(t, workspaces[""], "the default workspace always has usage")
		require.LessOrEqual(t, len(workspaces), 2)
		require.GreaterOrEqual(t, len(models), 2)
		require.LessOrEqual(t, len(models), 4)
		require.True(t, awkward, "amounts have fractional cents")
	}
}

func TestAnthropicDayDiffersByKey(t *testing.T) {
	t.Parallel()
	same := 0
	for _, d := range days(20) {
		a := fakeprovider.AnthropicDay("sk-ant-admin-x", d)
		b := fakeprovider.AnthropicDay("sk-ant-admin-y", d)
		if len(a) > 0 && len(b) > 0 && a[0].UncachedInputTokens == b[0].UncachedInputTokens {
			same++
		}
	}
	require.Zero(t, same)
}
