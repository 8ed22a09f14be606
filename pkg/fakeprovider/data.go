package fakeprovider

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strconv"
	"time"

	"github.com/shopspring/decimal"
)

// OpenAIFamilies are the /v1/organization/usage/<family> endpoints the fake
// serves, in the order of the API reference.
var OpenAIFamilies = []string{
	"completions", "embeddings", "moderations", "images", "audio_speeches", "audio_transcriptions",
	"vector_stores", "code_interpreter_sessions", "file_search_calls", "web_search_calls",
}

// OpenAIRecord is one day's usage of one usage family in one project, split
// by every dimension that family has, with the cost lines it was billed as.
// Within a day no two records of a family share all their dimensions, so a
// report grouped by every dimension returns the records one to one.
type OpenAIRecord struct {
	Family    string // one of OpenAIFamilies
	Model     string // "" for vector_stores, code_interpreter_sessions and file_search_calls
	ProjectID string
	APIKeyID  string // every project has exactly one API key; "" for vector_stores and code_interpreter_sessions

	Batch         bool   // completions
	ServiceTier   string // completions: always "default"
	ImageSize     string // images
	ImageSource   string // images
	ContextLevel  string // web_search_calls
	VectorStoreID string // file_search_calls

	InputTokens           int64 // all input, including cached and cache-write tokens (OpenAI's definition)
	InputCachedTokens     int64 // completions
	InputCacheWriteTokens int64 // completions
	OutputTokens          int64 // completions
	Requests              int64 // num_model_requests (every family that has a model)
	Images                int64 // images
	Characters            int64 // audio_speeches
	Seconds               int64 // audio_transcriptions
	UsageBytes            int64 // vector_stores
	Sessions              int64 // code_interpreter_sessions
	ToolCalls             int64 // num_requests: file_search_calls and web_search_calls

	// Costs: completions two ("<model>, input", "<model>, output"); embeddings,
	// images, audio and web search one each; moderations (free) and the
	// model-less tool families none, so every billed line names a model.
	Costs []OpenAICostLine
}

// InputUncachedTokens is input that was neither read from nor written to a cache.
func (r OpenAIRecord) InputUncachedTokens() int64 {
	return r.InputTokens - r.InputCachedTokens - r.InputCacheWriteTokens
}

// OpenAICostLine is one billed line of an OpenAIRecord.
type OpenAICostLine struct {
	LineItem  string // "<model>, <kind>", e.g. "gpt-4.1, input" or "dall-e-3, images"
	ProjectID string
	APIKeyID  string
	Quantity  int64           // units billed
	Unit      string          // quantity_unit: "tokens", "images", "characters", "duration_seconds", "requests"
	Amount    decimal.Decimal // exact dollars
}

// AnthropicRecord is one day's Messages usage of one model in one workspace,
// service tier and context window, with the cost lines it was billed as.
type AnthropicRecord struct {
	Model       string
	WorkspaceID string // "" is the default workspace, reported as null
	APIKeyID    string // every workspace has exactly one API key in the fake

	ServiceTier   string // "standard" or "batch" (half price)
	ContextWindow string // "0-200k", or "200k-1M" for some Sonnet usage (long-context prices)

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

// openAIUnitModel is a model billed per unit of something: dollars per
// million tokens or characters, per image, per second.
type openAIUnitModel struct {
	name  string
	price decimal.Decimal
}

var (
	embeddingModels     = []openAIUnitModel{{"text-embedding-3-small", dec("0.02")}, {"text-embedding-3-large", dec("0.13")}}
	moderationModels    = []openAIUnitModel{{"omni-moderation-latest", decimal.Zero}}
	imageModels         = []openAIUnitModel{{"dall-e-3", dec("0.04")}, {"gpt-image-1", dec("0.042")}} // per 1024x1024 image
	speechModels        = []openAIUnitModel{{"tts-1", dec("15")}, {"gpt-4o-mini-tts", dec("12")}}     // per million characters
	transcriptionModels = []openAIUnitModel{{"whisper-1", dec("0.0001")}}                             // per second
	imageSizes          = []string{"1024x1024", "1024x1792"}                                          // the second costs twice as much
	imageSources        = []string{"image.generation", "image.edit", "image.variation"}
	contextLevels       = []string{"low", "medium", "high"}
	webSearchPerCall    = dec("0.01")
)

// anthropicModel holds list prices in dollars per million tokens.
type anthropicModel struct {
	name, display                         string
	input, output, read, write5m, write1h decimal.Decimal
	longContext                           bool // offers the 200k-1M context window
}

var anthropicModels = []anthropicModel{
	{"claude-sonnet-4-5", "Claude Sonnet 4.5", dec("3"), dec("15"), dec("0.30"), dec("3.75"), dec("6"), true},
	{"claude-haiku-4-5", "Claude Haiku 4.5", dec("1"), dec("5"), dec("0.10"), dec("1.25"), dec("2"), false},
	{"claude-opus-4-1", "Claude Opus 4.1", dec("15"), dec("75"), dec("1.50"), dec("18.75"), dec("30"), false},
	{"claude-sonnet-4-20250514", "Claude Sonnet 4", dec("3"), dec("15"), dec("0.30"), dec("3.75"), dec("6"), true},
}

// webSearchCents is $10 per 1,000 searches.
var webSearchCents = dec("1")

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// OpenAIDay returns the usage of key's organisation on the UTC day containing
// day, in a fixed order: OpenAIDayAt at epoch 0. It never fails.
func OpenAIDay(key string, day time.Time) []OpenAIRecord {
	return OpenAIDayAt(key, day, 0)
}

// OpenAIDayAt returns the usage of key's organisation on the UTC day
// containing day as the provider reports it at restatement epoch epoch (0 is
// the original report; see Server.Restate). It is a pure function of SHA-256
// of the organisation (OrgOf: the key itself, unless it names one), the date
// and the epoch: the same inputs always yield the same data, two keys of one
// organisation get the same data, different organisations differ, and a new
// epoch re-rolls the day's numbers while the organisation (its models and
// projects) stays the same. Roughly
// one day in six has no usage (nil); each key uses 2–4 chat models in 1–2
// projects and, on some days, every other family. It never fails.
func OpenAIDayAt(key string, day time.Time, epoch int) []OpenAIRecord {
	key = OrgOf(key) // the organisation, not the key, decides the data
	org := newStream(key, "openai-org")
	projects := 1 + int(org.n(2))
	models := pick(org, openAIModels, 2+int(org.n(3)))
	embed := pick(org, embeddingModels, 1)[0]
	image := pick(org, imageModels, 1)[0]
	speech := pick(org, speechModels, 1)[0]

	date := day.UTC().Format(time.DateOnly)
	d := newStream(key, dayLabels("openai-day", date, epoch)...)
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
	// The other families draw from their own streams, so adding one never
	// changes another's numbers.
	for p := 0; p < projects; p++ {
		projectID := "proj_" + ident(key, "openai-project", p, 12)
		apiKeyID := "key_" + ident(key, "openai-apikey", p, 8)
		f := func(family string) *stream {
			return newStream(key, append(dayLabels("openai-day", date, epoch), family, strconv.Itoa(p))...)
		}
		base := OpenAIRecord{ProjectID: projectID, APIKeyID: apiKeyID}
		out = append(out, unitRecords(f("embeddings"), base, "embeddings", embed, 2)...)
		out = append(out, unitRecords(f("moderations"), base, "moderations", moderationModels[0], 3)...)
		out = append(out, imageRecords(f("images"), base, image)...)
		out = append(out, unitRecords(f("audio_speeches"), base, "audio_speeches", speech, 3)...)
		out = append(out, unitRecords(f("audio_transcriptions"), base, "audio_transcriptions", transcriptionModels[0], 3)...)
		out = append(out, toolRecords(f("tools"), key, base, models[0].name)...)
	}
	return out
}

func openAIRecord(d *stream, m openAIModel, projectID, apiKeyID string, batch bool) OpenAIRecord {
	input := 1_000 + d.n(2_000_000)
	cached := d.n(input / 2)
	write := d.n((input - cached) / 4)
	output := 100 + d.n(400_000)
	r := OpenAIRecord{
		Family: "completions", Model: m.name, ProjectID: projectID, APIKeyID: apiKeyID, Batch: batch, ServiceTier: "default",
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
		{LineItem: m.name + ", input", ProjectID: projectID, APIKeyID: apiKeyID, Quantity: input, Unit: "tokens", Amount: inputCost},
		{LineItem: m.name + ", output", ProjectID: projectID, APIKeyID: apiKeyID, Quantity: output, Unit: "tokens", Amount: outputCost},
	}
	return r
}

// unitRecords is one record of a per-unit family (embeddings, moderations,
// audio) on one day in every oneIn, or none.
func unitRecords(s *stream, base OpenAIRecord, family string, m openAIUnitModel, oneIn int64) []OpenAIRecord {
	if s.n(oneIn) != 0 {
		return nil
	}
	r := base
	r.Family, r.Model = family, m.name
	var qty int64
	var kind, unit string
	var price decimal.Decimal
	switch family {
	case "audio_speeches":
		r.Characters = 100 + s.n(2_000_000)
		qty, kind, unit, price = r.Characters, "characters", "characters", m.price.Shift(-6)
	case "audio_transcriptions":
		r.Seconds = 10 + s.n(100_000)
		qty, kind, unit, price = r.Seconds, "seconds", "duration_seconds", m.price
	default: // embeddings, moderations
		r.InputTokens = 100 + s.n(5_000_000)
		qty, kind, unit, price = r.InputTokens, "input", "tokens", m.price.Shift(-6)
	}
	r.Requests = 1 + s.n(qty)%5_000
	if !price.IsZero() {
		r.Costs = []OpenAICostLine{{LineItem: m.name + ", " + kind, ProjectID: r.ProjectID, APIKeyID: r.APIKeyID,
			Quantity: qty, Unit: unit, Amount: decimal.NewFromInt(qty).Mul(price)}}
	}
	return []OpenAIRecord{r}
}

// imageRecords is one or two (size, source) combinations on one day in three.
func imageRecords(s *stream, base OpenAIRecord, m openAIUnitModel) []OpenAIRecord {
	if s.n(3) != 0 {
		return nil
	}
	var out []OpenAIRecord
	first := s.n(int64(len(imageSizes) * len(imageSources)))
	for i := int64(0); i < 1+s.n(2); i++ {
		combo := (first + i) % int64(len(imageSizes)*len(imageSources))
		size, source := imageSizes[combo%2], imageSources[combo/2]
		r := base
		r.Family, r.Model, r.ImageSize, r.ImageSource = "images", m.name, size, source
		r.Images = 1 + s.n(200)
		r.Requests = 1 + s.n(r.Images)
		price := m.price
		if size != "1024x1024" {
			price = price.Mul(decimal.NewFromInt(2))
		}
		r.Costs = []OpenAICostLine{{LineItem: m.name + ", images", ProjectID: r.ProjectID, APIKeyID: r.APIKeyID,
			Quantity: r.Images, Unit: "images", Amount: decimal.NewFromInt(r.Images).Mul(price)}}
		out = append(out, r)
	}
	return out
}

// toolRecords is the tool families: vector store storage, code interpreter
// sessions and file searches (unbilled in the fake, since their line items
// would name no model), and web searches billed per call to the chat model
// that made them.
func toolRecords(s *stream, key string, base OpenAIRecord, chatModel string) []OpenAIRecord {
	var out []OpenAIRecord
	if s.n(2) == 0 {
		r := base
		r.Family, r.APIKeyID = "vector_stores", ""
		r.UsageBytes = 1_000_000 + s.n(5_000_000_000)
		out = append(out, r)
	}
	if s.n(3) == 0 {
		r := base
		r.Family, r.APIKeyID = "code_interpreter_sessions", ""
		r.Sessions = 1 + s.n(300)
		out = append(out, r)
	}
	if s.n(3) == 0 {
		for v := int64(0); v < 1+s.n(2); v++ {
			r := base
			r.Family = "file_search_calls"
			r.VectorStoreID = "vs_" + ident(key, "openai-vector-store-"+base.ProjectID, int(v), 10)
			r.ToolCalls = 1 + s.n(1_000)
			out = append(out, r)
		}
	}
	if s.n(3) == 0 {
		first := s.n(int64(len(contextLevels)))
		for i := int64(0); i < 1+s.n(2); i++ {
			r := base
			r.Family, r.Model = "web_search_calls", chatModel
			r.ContextLevel = contextLevels[(first+i)%int64(len(contextLevels))]
			r.ToolCalls = 1 + s.n(500)
			r.Requests = 1 + s.n(r.ToolCalls)
			r.Costs = []OpenAICostLine{{LineItem: chatModel + ", web search tool calls", ProjectID: r.ProjectID, APIKeyID: r.APIKeyID,
				Quantity: r.ToolCalls, Unit: "requests", Amount: decimal.NewFromInt(r.ToolCalls).Mul(webSearchPerCall)}}
			out = append(out, r)
		}
	}
	return out
}

// AnthropicDay returns the Messages usage of key's organisation on the UTC
// day containing day, in a fixed order: AnthropicDayAt at epoch 0. It never
// fails.
func AnthropicDay(key string, day time.Time) []AnthropicRecord {
	return AnthropicDayAt(key, day, 0)
}

// AnthropicDayAt returns the Messages usage of key's organisation on the UTC
// day containing day at restatement epoch epoch (see OpenAIDayAt). Like
// OpenAIDayAt it is a pure function of SHA-256 of the organisation (OrgOf),
// the date and the epoch; each key uses 2–4 models, the default workspace (WorkspaceID "")
// and sometimes one more; some usage is batch (half price) and some Sonnet
// usage is long-context (input classes at twice, output at one and a half
// times the price). It never fails.
func AnthropicDayAt(key string, day time.Time, epoch int) []AnthropicRecord {
	key = OrgOf(key) // the organisation, not the key, decides the data
	org := newStream(key, "anthropic-org")
	workspaces := []string{""}
	if org.n(2) == 1 {
		workspaces = append(workspaces, "wrkspc_"+ident(key, "anthropic-workspace", 1, 11))
	}
	models := pick(org, anthropicModels, 2+int(org.n(3)))

	date := day.UTC().Format(time.DateOnly)
	d := newStream(key, dayLabels("anthropic-day", date, epoch)...)
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
			out = append(out, anthropicRecord(d, m, ws, apiKeyID, "standard", "0-200k"))
			// Variants draw from their own stream so the standard record's
			// numbers do not depend on them.
			v := newStream(key, append(dayLabels("anthropic-day", date, epoch), "variants", ws, m.name)...)
			if v.n(4) == 0 {
				out = append(out, anthropicRecord(v, m, ws, apiKeyID, "batch", "0-200k"))
			}
			if m.longContext && v.n(4) == 0 {
				out = append(out, anthropicRecord(v, m, ws, apiKeyID, "standard", "200k-1M"))
			}
		}
	}
	return out
}

func anthropicRecord(d *stream, m anthropicModel, workspaceID, apiKeyID, tier, window string) AnthropicRecord {
	r := AnthropicRecord{
		Model: m.name, WorkspaceID: workspaceID, APIKeyID: apiKeyID,
		ServiceTier: tier, ContextWindow: window,
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
	inFactor, outFactor := decimal.NewFromInt(1), decimal.NewFromInt(1)
	if window == "200k-1M" {
		inFactor, outFactor = decimal.NewFromInt(2), dec("1.5")
	}
	if tier == "batch" {
		inFactor, outFactor = inFactor.Mul(dec("0.5")), outFactor.Mul(dec("0.5"))
	}
	line := func(suffix, tokenType string, tokens int64, perMillion, factor decimal.Decimal) {
		if tokens == 0 {
			return
		}
		// $/MTok → cents/token is ×100 ÷ 1e6.
		cents := decimal.NewFromInt(tokens).Mul(perMillion.Shift(-4)).Mul(factor)
		r.Costs = append(r.Costs, AnthropicCostLine{
			Description: m.display + " Usage - " + suffix, CostType: "tokens",
			Model: m.name, TokenType: tokenType, WorkspaceID: workspaceID, AmountCents: cents,
		})
	}
	line("Input Tokens", "uncached_input_tokens", r.UncachedInputTokens, m.input, inFactor)
	line("Output Tokens", "output_tokens", r.OutputTokens, m.output, outFactor)
	line("Input Tokens, Cache Read", "cache_read_input_tokens", r.CacheReadInputTokens, m.read, inFactor)
	line("Input Tokens, Cache Write (5m)", "cache_creation.ephemeral_5m_input_tokens", r.CacheCreation5mTokens, m.write5m, inFactor)
	line("Input Tokens, Cache Write (1h)", "cache_creation.ephemeral_1h_input_tokens", r.CacheCreation1hTokens, m.write1h, inFactor)
	if r.WebSearchRequests > 0 {
		r.Costs = append(r.Costs, AnthropicCostLine{
			Description: "Web Search Usage", CostType: "web_search", WorkspaceID: workspaceID,
			AmountCents: decimal.NewFromInt(r.WebSearchRequests).Mul(webSearchCents),
		})
	}
	return r
}

// dayLabels are the stream labels of one day's data; epoch 0 adds nothing,
// so the original report is stable whatever epochs exist.
func dayLabels(kind, date string, epoch int) []string {
	if epoch == 0 {
		return []string{kind, date}
	}
	return []string{kind, date, "epoch", strconv.Itoa(epoch)}
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
