package tokka

import (
	"time"

	"github.com/shopspring/decimal"
)

// Provider names an AI provider Tokka watches; it is the value stored in
// the database and shown by the API.
type Provider string

// The providers Tokka can watch.
const (
	OpenAI    Provider = "openai"
	Anthropic Provider = "anthropic"
)

// Valid reports whether n is a provider Tokka knows.
func (n Provider) Valid() bool { return n == OpenAI || n == Anthropic }

// KeyPrefix is the prefix an admin key of this provider must start with.
func (n Provider) KeyPrefix() string {
	switch n {
	case OpenAI:
		return "sk-admin-"
	case Anthropic:
		return "sk-ant-admin"
	}
	return ""
}

// Window is a half-open range of whole UTC days: From is the first day's
// 00:00 UTC, To is the 00:00 UTC after the last day.
type Window struct {
	From time.Time
	To   time.Time
}

// DayWindow returns the window of n whole UTC days ending with the day that
// contains now (so today is included).
func DayWindow(now time.Time, n int) Window {
	today := now.UTC().Truncate(24 * time.Hour)
	return Window{From: today.AddDate(0, 0, -(n - 1)), To: today.AddDate(0, 0, 1)}
}

// Days is the number of whole days in the window.
func (w Window) Days() int { return int(w.To.Sub(w.From) / (24 * time.Hour)) }

// Contains reports whether t falls in the window: at or after From and
// before To.
func (w Window) Contains(t time.Time) bool { return !t.Before(w.From) && t.Before(w.To) }

// UsageRow is one daily usage bucket as a provider reported it, normalised.
// Grouping fields are "" when the provider left them null. Token classes never
// overlap: their sum is the total token count. Every count is between 0 and
// the decoders' plausibility bound; the family-specific units are 0 for families that do not report
// them.
type UsageRow struct {
	Day           time.Time // 00:00 UTC of the bucket
	Family        string    // "completions", "embeddings", … for OpenAI; "messages" for Anthropic
	Model         string
	ProjectID     string // OpenAI project_id, Anthropic workspace_id
	APIKeyID      string
	ServiceTier   string
	Batch         string // "true", "false" or ""
	ContextWindow string // Anthropic context_window ("0-200k", "200k-1M")

	// Family-specific dimensions (OpenAI only).
	ImageSize     string // images: size, e.g. "1024x1024"
	ImageSource   string // images: source, e.g. "image.generation"
	ContextLevel  string // web_search_calls: context_level ("low", "medium", "high")
	VectorStoreID string // file_search_calls: vector_store_id

	// Tokens are the token classes and the request count, the same
	// figures an API response's usage group sums.
	Tokens

	// Family-specific units.
	Images       int64 // OpenAI images: images produced
	Characters   int64 // OpenAI audio_speeches: input characters
	Seconds      int64 // OpenAI audio_transcriptions: seconds of audio
	Bytes        int64 // OpenAI vector_stores: bytes stored that day (a level, not a flow: do not add days up)
	Sessions     int64 // OpenAI code_interpreter_sessions
	FileSearches int64 // OpenAI file_search_calls: tool calls
	WebSearches  int64 // OpenAI web_search_calls num_requests; Anthropic server_tool_use.web_search_requests
}

// Tokens are the figures every usage row and group carries, from the
// provider decoder's daily row to an API response. Token classes never
// overlap: their sum is the total token count.
type Tokens struct {
	InputUncachedTokens int64 // input that was neither read from nor written to a cache
	CacheReadTokens     int64
	CacheWrite5mTokens  int64 // OpenAI cache writes (no TTL reported) are counted here
	CacheWrite1hTokens  int64
	OutputTokens        int64
	// Requests counts API requests to the family's own endpoint (OpenAI
	// num_model_requests); 0 where the provider reports none (Anthropic,
	// the OpenAI tool families) or where the requests are already counted
	// elsewhere (web_search_calls: completions counts them).
	Requests int64
}

// InputTokens is every input token class added up.
func (t Tokens) InputTokens() int64 {
	return t.InputUncachedTokens + t.CacheReadTokens + t.CacheWrite5mTokens + t.CacheWrite1hTokens
}

// Add accumulates o into t.
func (t *Tokens) Add(o Tokens) {
	for _, f := range TokenFields {
		*f.Of(t) += *f.Of(&o)
	}
}

// TokenField is one figure of Tokens under the name it has everywhere
// outside Go: the API's JSON, the CSV export's header and the daily tables'
// columns.
type TokenField struct {
	Name string
	Of   func(*Tokens) *int64
}

// TokenFields declares the name of every figure of Tokens, once, in the
// order the tables and the export list them. InputTokens is derived and
// named "input_tokens" where it is shown.
var TokenFields = []TokenField{
	{"input_uncached_tokens", func(t *Tokens) *int64 { return &t.InputUncachedTokens }},
	{"cache_read_tokens", func(t *Tokens) *int64 { return &t.CacheReadTokens }},
	{"cache_write_5m_tokens", func(t *Tokens) *int64 { return &t.CacheWrite5mTokens }},
	{"cache_write_1h_tokens", func(t *Tokens) *int64 { return &t.CacheWrite1hTokens }},
	{"output_tokens", func(t *Tokens) *int64 { return &t.OutputTokens }},
	{"requests", func(t *Tokens) *int64 { return &t.Requests }},
}

// CostRow is one daily cost line as a provider billed it, normalised to USD.
type CostRow struct {
	Day       time.Time // 00:00 UTC of the bucket
	LineItem  string    // OpenAI line_item, Anthropic description
	Model     string    // Anthropic model; for OpenAI parsed from line_item when it has the "<model>, <kind>" shape
	TokenType string    // Anthropic token_type
	CostType  string    // Anthropic cost_type
	ProjectID string    // OpenAI project_id, Anthropic workspace_id
	APIKeyID  string    // OpenAI api_key_id when grouped by it

	AmountUSD decimal.Decimal // exact dollars
	Amount    decimal.Decimal // the amount exactly as reported (dollars for OpenAI, cents for Anthropic)
	Currency  string          // as reported ("usd", "USD")
}

// Organization identifies the provider organisation a key belongs to, so
// that two connections of one organisation are never both counted.
type Organization struct {
	// ID is the provider's organisation id (Anthropic's organizations/me);
	// "" when the admin API exposes none (OpenAI).
	ID string
	// ProjectIDs are the organisation's project ids, archived ones
	// included (OpenAI). Project ids are unique across organisations, so
	// two keys whose organisations share one belong to the same organisation.
	ProjectIDs []string
}

// Empty reports whether o identifies nothing (no id and no project), so
// it can match no other organisation.
func (o Organization) Empty() bool { return o.ID == "" && len(o.ProjectIDs) == 0 }
