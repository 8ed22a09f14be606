package fakeprovider

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/shopspring/decimal"
)

// OpenAIRecord is one day's completions usage of one model in one project
// (and one batch flag), with the two cost lines it was billed as.
type OpenAIRecord struct {
	Model     string
	ProjectID string
	APIKeyID  string // every project has exactly one API key in the fake
	Batch     bool

	InputTokens           int64 // all input, including cached and cache-write tokens (OpenAI's definition)
	InputCachedTokens     int64
	InputCacheWriteTokens int64
	OutputTokens          int64
	Requests              int64

	Costs []OpenAICostLine // always two: "<model>, input" and "<model>, output"
}

// InputUncachedTokens is input that was neither read from nor written to a cache.
func (r OpenAIRecord) InputUncachedTokens() int64 {
	return r.InputTokens - r.InputCachedTokens - r.InputCacheWriteTokens
}

// OpenAICostLine is one billed line of an OpenAIRecord.
type OpenAICostLine struct {
	LineItem  string // "<model>, input" or "<model>, output"
	ProjectID string
	APIKeyID  string
	Quantity  int64           // tokens billed
	Amount    decimal.Decimal // exact dollars
}

// AnthropicRecord is one day's Messages usage of one model in one workspace,
// with the cost lines it was billed as.
type AnthropicRecord struct {
	Model       string
	WorkspaceID string // "" is the default workspace, reported as null
	APIKeyID    string // every workspace has exactly one API key in the fake

	ServiceTier   string // always "standard"
	ContextWindow string // always "0-200k"

	UncachedInputTokens   int64
	CacheReadInputTokens  int64
	CacheCreation5mTokens int64
	CacheCreation1hTokens int64
	OutputTokens          int64
	WebSearchRequests     int64

	Costs []AnthropicCostLine // one per non-zero token class, plus web search when used
}

// AnthropicCostLine is one billed line of an AnthropicRecord.
type AnthropicCostLine struct {
	Description string // e.g. "Claude Sonnet 4.5 Usage - Input Tokens"
	CostType    string // "tokens" or "web_search"
	Model       string // "" for web search
	TokenType   string // "" for web search
	WorkspaceID string
	AmountCents decimal.Decimal // exact cents, as the cost report states amounts
}

// openAIModel holds list prices in dollars per million tokens. Batch usage is
// billed at half price; cache writes are billed as ordinary input.
type openAIModel struct {
	name                  string
	input, cached, output decimal.Decimal
}

var openAIModels = []openAIModel{
	{"gpt-4o-mini-2024-07-18", dec("0.15"), dec("0.075"), dec("0.60")},
	{"gpt-4.1", dec("2.00"), dec("0.50"), dec("8.00")},
	{"o3", dec("2.00"), dec("0.50"), dec("8.00")},
	{"gpt-4.1-nano", dec("0.10"), dec("0.025"), dec("0.40")},
}

// anthropicModel holds list prices in dollars per million tokens.
type anthropicModel struct {
	name, display                         string
	input, output, read, write5m, write1h decimal.Decimal
}

var anthropicModels = []anthropicModel{
	{"claude-sonnet-4-5", "Claude Sonnet 4.5", dec("3"), dec("15"), dec("0.30"), dec("3.75"), dec("6")},
	{"claude-haiku-4-5", "Claude Haiku 4.5", dec("1"), dec("5"), dec("0.10"), dec("1.25"), dec("2")},
	{"claude-opus-4-1", "Claude Opus 4.1", dec("15"), dec("75"), dec("1.50"), dec("18.75"), dec("30")},
	{"claude-sonnet-4-20250514", "Claude Sonnet 4", dec("3"), dec("15"), dec("0.30"), dec("3.75"), dec("6")},
}

// webSearchCents is $10 per 1,000 searches.
var webSearchCents = dec("1")

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// OpenAIDay returns the completions usage of key's organisation on the UTC day
// containing day, in a fixed order. It is a pure function of SHA-256 of the key
// and the date: the same key always yields the same data, different keys
// differ, roughly one day in six has no usage (nil), and each key uses 2–4
// models in 1–2 projects. It never fails.
func OpenAIDay(key string, day time.Time) []OpenAIRecord {
	org := newStream(key, "openai-org")
	projects := 1 + int(org.n(2))
	models := pick(org, openAIModels, 2+int(org.n(3)))

	d := newStream(key, "openai-day", day.UTC().Format(time.DateOnly))
	if d.n(6) == 0 {
		return nil
	}
	var out []OpenAIRecord
	for p := 0; p < projects; p++ {
		projectID := "proj_" + ident(key, "openai-project", p, 12)
		apiKeyID := "key_" + ident(key, "openai-apikey", p, 8)
		for mi, m := range models {
			for _, batch := range []bool{false, true} {
				// Interactive usage on three days in four, batch on one in four;
				// the first combination always has usage so no usage day is empty.
				roll := d.n(4)
				include := roll < 3
				if batch {
					include = roll == 0
				}
				if !include && !(p == 0 && mi == 0 && !batch) {
					continue
				}
				out = append(out, openAIRecord(d, m, projectID, apiKeyID, batch))
			}
		}
	}
	return out
}

func openAIRecord(d *stream, m openAIModel, projectID, apiKeyID string, batch bool) OpenAIRecord {
	input := 1_000 + d.n(2_000_000)
	cached := d.n(input / 2)
	write := d.n((input - cached) / 4)
	output := 100 + d.n(400_000)
	r := OpenAIRecord{
		Model: m.name, ProjectID: projectID, APIKeyID: apiKeyID, Batch: batch,
		InputTokens: input, InputCachedTokens: cached, InputCacheWriteTokens: write,
		OutputTokens: output, Requests: 1 + d.n(2_000),
	}
	factor := decimal.NewFromInt(1)
	if batch {
		factor = dec("0.5")
	}
	perToken := func(perMillion decimal.Decimal) decimal.Decimal { return perMillion.Shift(-6).Mul(factor) }
	inputCost := decimal.NewFromInt(input - cached).Mul(perToken(m.input)).
		Add(decimal.NewFromInt(cached).Mul(perToken(m.cached)))
	outputCost := decimal.NewFromInt(output).Mul(perToken(m.output))
	r.Costs = []OpenAICostLine{
		{LineItem: m.name + ", input", ProjectID: projectID, APIKeyID: apiKeyID, Quantity: input, Amount: inputCost},
		{LineItem: m.name + ", output", ProjectID: projectID, APIKeyID: apiKeyID, Quantity: output, Amount: outputCost},
	}
	return r
}

// AnthropicDay returns the Messages usage of key's organisation on the UTC day
// containing day, in a fixed order. Like OpenAIDay it is a pure function of
// SHA-256 of the key and the date; each key uses 2–4 models, the default
// workspace (WorkspaceID "") and sometimes one more. It never fails.
func AnthropicDay(key string, day time.Time) []AnthropicRecord {
	org := newStream(key, "anthropic-org")
	workspaces := []string{""}
	if org.n(2) == 1 {
		workspaces = append(workspaces, "wrkspc_"+ident(key, "anthropic-workspace", 1, 11))
	}
	models := pick(org, anthropicModels, 2+int(org.n(3)))

	d := newStream(key, "anthropic-day", day.UTC().Format(time.DateOnly))
	if d.n(6) == 0 {
		return nil
	}
	var out []AnthropicRecord
	for w, ws := range workspaces {
		apiKeyID := "apikey_" + ident(key, "anthropic-apikey", w, 12)
		for i, m := range models {
			if d.n(4) == 0 && !(w == 0 && i == 0) {
				continue
			}
			out = append(out, anthropicRecord(d, m, ws, apiKeyID))
		}
	}
	return out
}

func anthropicRecord(d *stream, m anthropicModel, workspaceID, apiKeyID string) AnthropicRecord {
	r := AnthropicRecord{
		Model: m.name, WorkspaceID: workspaceID, APIKeyID: apiKeyID,
		ServiceTier: "standard", ContextWindow: "0-200k",
		UncachedInputTokens:  500 + d.n(1_500_000),
		CacheReadInputTokens: d.n(3_000_000),
		OutputTokens:         100 + d.n(300_000),
	}
	if d.n(3) != 0 {
		r.CacheCreation5mTokens = d.n(200_000)
	}
	if d.n(2) == 0 {
		r.CacheCreation1hTokens = d.n(100_000)
	}
	if d.n(3) == 0 {
		r.WebSearchRequests = 1 + d.n(50)
	}
	line := func(suffix, tokenType string, tokens int64, perMillion decimal.Decimal) {
		if tokens == 0 {
			return
		}
		// $/MTok → cents/token is ×100 ÷ 1e6.
		cents := decimal.NewFromInt(tokens).Mul(perMillion.Shift(-4))
		r.Costs = append(r.Costs, AnthropicCostLine{
			Description: m.display + " Usage - " + suffix, CostType: "tokens",
			Model: m.name, TokenType: tokenType, WorkspaceID: workspaceID, AmountCents: cents,
		})
	}
	line("Input Tokens", "uncached_input_tokens", r.UncachedInputTokens, m.input)
	line("Output Tokens", "output_tokens", r.OutputTokens, m.output)
	line("Input Tokens, Cache Read", "cache_read_input_tokens", r.CacheReadInputTokens, m.read)
	line("Input Tokens, Cache Write (5m)", "cache_creation.ephemeral_5m_input_tokens", r.CacheCreation5mTokens, m.write5m)
	line("Input Tokens, Cache Write (1h)", "cache_creation.ephemeral_1h_input_tokens", r.CacheCreation1hTokens, m.write1h)
	if r.WebSearchRequests > 0 {
		r.Costs = append(r.Costs, AnthropicCostLine{
			Description: "Web Search Usage", CostType: "web_search", WorkspaceID: workspaceID,
			AmountCents: decimal.NewFromInt(r.WebSearchRequests).Mul(webSearchCents),
		})
	}
	return r
}

// stream is a deterministic byte stream: SHA-256(seed || counter) blocks,
// where seed is SHA-256 of the key and the labels.
type stream struct {
	seed [32]byte
	ctr  uint64
	buf  [32]byte
	off  int
}

func newStream(key string, labels ...string) *stream {
	h := sha256.New()
	h.Write([]byte(key))
	for _, l := range labels {
		h.Write([]byte{0})
		h.Write([]byte(l))
	}
	s := &stream{off: 32}
	copy(s.seed[:], h.Sum(nil))
	return s
}

// n returns a value in [0, limit); limit <= 0 yields 0.
func (s *stream) n(limit int64) int64 {
	if limit <= 0 {
		return 0
	}
	if s.off+8 > len(s.buf) {
		var c [8]byte
		binary.BigEndian.PutUint64(c[:], s.ctr)
		s.ctr++
		s.buf = sha256.Sum256(append(s.seed[:], c[:]...))
		s.off = 0
	}
	v := binary.BigEndian.Uint64(s.buf[s.off:])
	s.off += 8
	return int64(v % uint64(limit))
}

// pick returns k entries of all, starting at a key-dependent offset.
func pick[T any](s *stream, all []T, k int) []T {
	start := int(s.n(int64(len(all))))
	out := make([]T, 0, k)
	for i := 0; i < k && i < len(all); i++ {
		out = append(out, all[(start+i)%len(all)])
	}
	return out
}

// ident is a stable identifier derived from the key, never containing it.
func ident(key, label string, i, bytes int) string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%s\x00%d", key, label, i)))
	return fmt.Sprintf("%x", sum[:bytes])
}
