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
		models, projects, families := map[string]bool{}, map[string]bool{}, map[string]bool{}
		idle, awkward := 0, false
		for _, d := range days(90) {
			recs := fakeprovider.OpenAIDay(key, d)
			if len(recs) == 0 {
				idle++
			}
			type dims struct {
				family, model, project, key, size, source, level, store string
				batch                                                   bool
			}
			seen := map[dims]bool{}
			for _, r := range recs {
				families[r.Family], projects[r.ProjectID] = true, true
				require.Contains(t, fakeprovider.OpenAIFamilies, r.Family)
				k := dims{r.Family, r.Model, r.ProjectID, r.APIKeyID, r.ImageSize, r.ImageSource, r.ContextLevel, r.VectorStoreID, r.Batch}
				require.False(t, seen[k], "records of a family never share all dimensions: %+v", k)
				seen[k] = true
				require.True(t, strings.HasPrefix(r.ProjectID, "proj_"))
				require.NotContains(t, r.ProjectID+r.APIKeyID+r.VectorStoreID, "shape", "ids never contain the key")
				for _, c := range r.Costs {
					require.Equal(t, r.ProjectID, c.ProjectID)
					require.Equal(t, r.APIKeyID, c.APIKeyID)
					require.True(t, c.Amount.IsPositive())
					require.Positive(t, c.Quantity)
					require.True(t, strings.HasPrefix(c.LineItem, r.Model+", "), "every billed line names its model: %q", c.LineItem)
					awkward = awkward || hasMorePlaces(c.Amount, 4)
				}
				switch r.Family {
				case "completions":
					models[r.Model] = true
					require.True(t, strings.HasPrefix(r.APIKeyID, "key_"))
					require.Equal(t, "default", r.ServiceTier)
					require.Positive(t, r.InputTokens)
					require.Positive(t, r.OutputTokens)
					require.Positive(t, r.Requests)
					require.GreaterOrEqual(t, r.InputUncachedTokens(), int64(0))
					require.Len(t, r.Costs, 2)
					require.Equal(t, r.Model+", input", r.Costs[0].LineItem)
					require.Equal(t, r.Model+", output", r.Costs[1].LineItem)
					require.Equal(t, r.InputTokens, r.Costs[0].Quantity)
					require.Equal(t, r.OutputTokens, r.Costs[1].Quantity)
				case "embeddings", "moderations":
					require.Positive(t, r.InputTokens)
					require.Zero(t, r.InputCachedTokens+r.InputCacheWriteTokens+r.OutputTokens)
					require.Equal(t, r.Family == "embeddings", len(r.Costs) == 1, "moderations are free")
				case "images":
					require.Contains(t, []string{"1024x1024", "1024x1792"}, r.ImageSize)
					require.Contains(t, []string{"image.generation", "image.edit", "image.variation"}, r.ImageSource)
					require.Positive(t, r.Images)
					require.LessOrEqual(t, r.Requests, r.Images)
					require.Equal(t, r.Images, r.Costs[0].Quantity)
				case "audio_speeches":
					require.Positive(t, r.Characters)
					require.Equal(t, "characters", r.Costs[0].Unit)
				case "audio_transcriptions":
					require.Positive(t, r.Seconds)
					require.Equal(t, "duration_seconds", r.Costs[0].Unit)
				case "vector_stores", "code_interpreter_sessions":
					require.Empty(t, r.Model+r.APIKeyID)
					require.Positive(t, r.UsageBytes+r.Sessions)
					require.Empty(t, r.Costs)
				case "file_search_calls":
					require.Empty(t, r.Model)
					require.True(t, strings.HasPrefix(r.VectorStoreID, "vs_"))
					require.Positive(t, r.ToolCalls)
					require.Empty(t, r.Costs)
				case "web_search_calls":
					require.Contains(t, []string{"low", "medium", "high"}, r.ContextLevel)
					require.Positive(t, r.ToolCalls)
					require.LessOrEqual(t, r.Requests, r.ToolCalls)
					require.Equal(t, r.ToolCalls, r.Costs[0].Quantity)
				}
			}
		}
		require.Positive(t, idle, "some days have no usage")
		require.Less(t, idle, 40)
		require.GreaterOrEqual(t, len(models), 2)
		require.LessOrEqual(t, len(models), 4)
		require.GreaterOrEqual(t, len(projects), 1)
		require.LessOrEqual(t, len(projects), 2)
		require.Len(t, families, len(fakeprovider.OpenAIFamilies), "90 days use every family")
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
			if r.Family != "completions" || r.Model != "gpt-4o-mini-2024-07-18" {
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
		models, workspaces, variants := map[string]bool{}, map[string]bool{}, map[string]bool{}
		idle, awkward := 0, false
		for _, d := range days(90) {
			recs := fakeprovider.AnthropicDay(key, d)
			require.Equal(t, recs, fakeprovider.AnthropicDay(key, d))
			if len(recs) == 0 {
				idle++
			}
			seen := map[string]bool{}
			for _, r := range recs {
				models[r.Model], workspaces[r.WorkspaceID] = true, true
				variants[r.ServiceTier+" "+r.ContextWindow] = true
				k := r.Model + "|" + r.WorkspaceID + "|" + r.ServiceTier + "|" + r.ContextWindow
				require.False(t, seen[k], "one record per model, workspace, tier and window")
				seen[k] = true
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
				require.Contains(t, []string{"standard", "batch"}, r.ServiceTier)
				require.Contains(t, []string{"0-200k", "200k-1M"}, r.ContextWindow)
				if r.Model == "claude-sonnet-4-5" {
					// $3 per million input tokens is 0.0003 cents per token;
					// $15 per million output tokens 0.0015. Batch halves both,
					// long context doubles input and adds half to output.
					in, out := decimal.RequireFromString("0.0003"), decimal.RequireFromString("0.0015")
					if r.ContextWindow == "200k-1M" {
						in, out = in.Mul(decimal.NewFromInt(2)), out.Mul(decimal.RequireFromString("1.5"))
					}
					if r.ServiceTier == "batch" {
						in, out = in.Div(decimal.NewFromInt(2)), out.Div(decimal.NewFromInt(2))
					}
					require.True(t, decimal.NewFromInt(r.UncachedInputTokens).Mul(in).Equal(types["uncached_input_tokens"]))
					require.True(t, decimal.NewFromInt(r.OutputTokens).Mul(out).Equal(types["output_tokens"]))
				}
			}
		}
		require.Positive(t, idle)
		require.True(t, workspaces[""], "the default workspace always has usage")
		require.LessOrEqual(t, len(workspaces), 2)
		require.GreaterOrEqual(t, len(models), 2)
		require.LessOrEqual(t, len(models), 4)
		require.True(t, awkward, "amounts have fractional cents")
		require.True(t, variants["batch 0-200k"], "some usage is batch")
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

func TestRestatementEpochsRerollDaysButNotTheOrganisation(t *testing.T) {
	t.Parallel()
	const oai, ant = "sk-admin-epochs-restated-1", "sk-ant-admin01-epochs-restated-1"
	changed := 0
	models0, models1 := map[string]bool{}, map[string]bool{}
	for _, d := range days(30) {
		require.Equal(t, fakeprovider.OpenAIDay(oai, d), fakeprovider.OpenAIDayAt(oai, d, 0), "epoch 0 is the original report")
		require.Equal(t, fakeprovider.AnthropicDay(ant, d), fakeprovider.AnthropicDayAt(ant, d, 0))
		require.Equal(t, fakeprovider.OpenAIDayAt(oai, d, 3), fakeprovider.OpenAIDayAt(oai, d, 3), "an epoch is deterministic")
		a, b := fakeprovider.OpenAIDayAt(oai, d, 0), fakeprovider.OpenAIDayAt(oai, d, 1)
		if len(a) != len(b) || (len(a) > 0 && a[0].InputTokens != b[0].InputTokens) {
			changed++
		}
		for _, r := range a {
			if r.Family == "completions" {
				models0[r.Model] = true
			}
		}
		for _, r := range b {
			if r.Family == "completions" {
				models1[r.Model] = true
			}
		}
		x, y := fakeprovider.AnthropicDayAt(ant, d, 0), fakeprovider.AnthropicDayAt(ant, d, 2)
		if len(x) > 0 && len(y) > 0 {
			require.NotEqual(t, x[0].OutputTokens, y[0].OutputTokens)
		}
	}
	require.Greater(t, changed, 20, "a new epoch re-rolls the days")
	require.Equal(t, models0, models1, "the organisation's models stay the same")
}
