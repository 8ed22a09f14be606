// Package openai reads an OpenAI organisation's usage and costs with an admin
// key, through the /v1/organization/usage/* and /v1/organization/costs
// endpoints, and normalises them into provider rows. Its projects
// (/v1/organization/projects) identify the organisation.
//
// What is requested and what is dropped:
//
//   - Every usage family is read once per window (one paged call each), daily
//     buckets, grouped by every dimension Tokka stores that the family allows:
//     model, project, API key, batch and service tier (completions), image
//     size and source, web search context level, file search vector store.
//   - user_id grouping is never requested: Tokka has no user dimension, and
//     asking for it would only split rows that are added up again.
//   - web_search_calls' num_model_requests is not stored as Requests: those
//     model requests are already counted by the completions family, and a
//     dashboard adding requests across families would count them twice. The
//     searches themselves (num_requests) are stored as WebSearches.
//   - The per-modality token splits (text/audio/image) are not stored; the
//     five token classes already add up to input plus output.
package openai

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tokka-dev/tokka/pkg/provider"
	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// DefaultBaseURL is the real API; paths below it start with /v1.
const DefaultBaseURL = "https://api.openai.com"

// DefaultMaxPages bounds one endpoint's paging in one call. A year of daily
// buckets is 12 usage pages (31 buckets each); 100 only trips on a provider
// that never stops, and stops it within one connection's sync.
const DefaultMaxPages = provider.DefaultMaxPages

// Client implements provider.Client for OpenAI. The zero value is not
// usable: BaseURL is required.
type Client struct {
	BaseURL  string              // e.g. DefaultBaseURL or a fake server's URL, without trailing /v1
	HTTP     provider.HTTPClient // retry, timeout and size policy; Provider and RequestIDHeader are set by the client
	MaxPages int                 // per endpoint and call; 0 means DefaultMaxPages
	Families []string            // usage families Usage reads; nil means Families()
}

var _ provider.Client = (*Client)(nil)

// New returns a client for baseURL with the given HTTP policy (its zero value
// gives the defaults). It cannot fail; a bad URL surfaces on the first call.
func New(baseURL string, h provider.HTTPClient) *Client {
	return &Client{BaseURL: baseURL, HTTP: h}
}

// usageFamily is one /v1/organization/usage/<name> endpoint.
type usageFamily struct {
	name    string   // tokka.UsageRow.Family, also the path segment
	groupBy []string // dimensions to split by; all of them are stored
	// fill maps the family's metrics onto row (whose dimensions are already
	// set) and returns a problem description, or "" when the result is sound.
	fill func(r *usageResult, row *tokka.UsageRow) string
}

var (
	modelGroups   = []string{"model", "project_id", "api_key_id"}
	usageFamilies = []usageFamily{
		{"completions", []string{"model", "project_id", "api_key_id", "batch", "service_tier"}, fillCompletions},
		{"embeddings", modelGroups, fillInputOnly},
		{"moderations", modelGroups, fillInputOnly},
		{"images", append(slices.Clone(modelGroups), "size", "source"), func(r *usageResult, row *tokka.UsageRow) string {
			row.Images, row.Requests = r.Images, r.NumModelRequests
			return ""
		}},
		{"audio_speeches", modelGroups, func(r *usageResult, row *tokka.UsageRow) string {
			row.Characters, row.Requests = r.Characters, r.NumModelRequests
			return ""
		}},
		{"audio_transcriptions", modelGroups, func(r *usageResult, row *tokka.UsageRow) string {
			row.Seconds, row.Requests = r.Seconds, r.NumModelRequests
			return ""
		}},
		{"vector_stores", []string{"project_id"}, func(r *usageResult, row *tokka.UsageRow) string {
			row.Bytes = r.UsageBytes
			return ""
		}},
		{"code_interpreter_sessions", []string{"project_id"}, func(r *usageResult, row *tokka.UsageRow) string {
			row.Sessions = r.NumSessions
			return ""
		}},
		{"file_search_calls", []string{"project_id", "api_key_id", "vector_store_id"}, func(r *usageResult, row *tokka.UsageRow) string {
			row.FileSearches = r.NumRequests
			return ""
		}},
		{"web_search_calls", append(slices.Clone(modelGroups), "context_level"), func(r *usageResult, row *tokka.UsageRow) string {
			row.WebSearches = r.NumRequests
			return ""
		}},
	}
)

// Families lists every usage family (endpoint under /v1/organization/usage/)
// the client reads by default, in the order it reads them. It never fails.
func Families() []string {
	out := make([]string, len(usageFamilies))
	for i, f := range usageFamilies {
		out[i] = f.name
	}
	return out
}

// GroupBy returns the group_by values Usage sends for family, or nil for a
// family the client does not know.
func GroupBy(family string) []string {
	for _, f := range usageFamilies {
		if f.name == family {
			return slices.Clone(f.groupBy)
		}
	}
	return nil
}

// Usage returns one row per day, family and group for w. Errors are
// *provider.Error: transport and status failures as provider.HTTPClient.Get
// describes; KindBadResponse for malformed JSON, negative or implausibly
// large counts, inconsistent token classes, buckets outside w or repeated,
// and endless paging (the reason names the endpoint); KindRequest for an
// empty window or an unknown family in Families. Nothing is returned unless
// every family was read completely, so a caller never replaces stored days
// with a partial picture.
func (c *Client) Usage(ctx context.Context, key *secret.Key, w tokka.Window) ([]tokka.UsageRow, error) {
	if err := c.checkWindow(w); err != nil {
		return nil, err
	}
	fams, err := c.families()
	if err != nil {
		return nil, err
	}
	var rows []tokka.UsageRow
	for _, f := range fams {
		q := c.windowQuery(w)
		q.Set("bucket_width", "1d")
		q.Set("limit", "31")
		for _, g := range f.groupBy {
			q.Add("group_by[]", g)
		}
		err := provider.Pages(ctx, c.paged(key, w, "usage/"+f.name, q), func(day time.Time, r *usageResult) error {
			row, problem := decodeUsage(f, day, r)
			if problem != "" {
				return badData("a " + f.name + " usage result " + problem)
			}
			rows = append(rows, row)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return rows, nil
}

func (c *Client) families() ([]usageFamily, error) {
	if c.Families == nil {
		return usageFamilies, nil
	}
	var out []usageFamily
	for _, name := range c.Families {
		i := slices.IndexFunc(usageFamilies, func(f usageFamily) bool { return f.name == name })
		if i < 0 {
			return nil, &provider.Error{Provider: tokka.OpenAI, Kind: provider.KindRequest,
				Reason: fmt.Sprintf("unknown OpenAI usage family %q", name)}
		}
		out = append(out, usageFamilies[i])
	}
	return out, nil
}

// usageResult is the union of every organization.usage.*.result object.
// Fields a family does not have decode as 0 or nil; counts OpenAI added
// later (input_cache_write_tokens) are absent from older data and decode as
// 0; unknown fields (the per-modality splits, future additions) are ignored.
type usageResult struct {
	InputTokens           int64 `json:"input_tokens"`
	OutputTokens          int64 `json:"output_tokens"`
	NumModelRequests      int64 `json:"num_model_requests"`
	InputCachedTokens     int64 `json:"input_cached_tokens"`
	InputCacheWriteTokens int64 `json:"input_cache_write_tokens"`
	Images                int64 `json:"images"`
	Characters            int64 `json:"characters"`
	Seconds               int64 `json:"seconds"`
	UsageBytes            int64 `json:"usage_bytes"`
	NumSessions           int64 `json:"num_sessions"`
	NumRequests           int64 `json:"num_requests"`

	ProjectID     *string `json:"project_id"`
	APIKeyID      *string `json:"api_key_id"`
	Model         *string `json:"model"`
	Batch         *bool   `json:"batch"`
	ServiceTier   *string `json:"service_tier"`
	Size          *string `json:"size"`
	Source        *string `json:"source"`
	ContextLevel  *string `json:"context_level"`
	VectorStoreID *string `json:"vector_store_id"`
}

// decodeUsage turns one result of family f into a row, or says what is wrong
// with it ("has a negative count", …).
func decodeUsage(f usageFamily, day time.Time, r *usageResult) (tokka.UsageRow, string) {
	if p := provider.CountsProblem(r.InputTokens, r.OutputTokens, r.NumModelRequests, r.InputCachedTokens,
		r.InputCacheWriteTokens, r.Images, r.Characters, r.Seconds, r.UsageBytes, r.NumSessions, r.NumRequests); p != "" {
		return tokka.UsageRow{}, "has " + p
	}
	row := tokka.UsageRow{
		Day:           day,
		Family:        f.name,
		Model:         str(r.Model),
		ProjectID:     str(r.ProjectID),
		APIKeyID:      str(r.APIKeyID),
		ServiceTier:   str(r.ServiceTier),
		ImageSize:     str(r.Size),
		ImageSource:   str(r.Source),
		ContextLevel:  str(r.ContextLevel),
		VectorStoreID: str(r.VectorStoreID),
	}
	if r.Batch != nil {
		row.Batch = strconv.FormatBool(*r.Batch)
	}
	if p := f.fill(r, &row); p != "" {
		return tokka.UsageRow{}, p
	}
	return row, ""
}

// fillCompletions splits input_tokens into classes that do not overlap:
// OpenAI's input_tokens includes cached reads and cache writes, so the
// uncached part is what is left, and the classes add up to input_tokens
// exactly. (The 2026 input_uncached_tokens field says the same thing and is
// not needed.)
func fillCompletions(r *usageResult, row *tokka.UsageRow) string {
	uncached := r.InputTokens - r.InputCachedTokens - r.InputCacheWriteTokens
	if uncached < 0 {
		return "reports more cached input than input"
	}
	row.InputUncachedTokens = uncached
	row.CacheReadTokens = r.InputCachedTokens
	row.CacheWrite5mTokens = r.InputCacheWriteTokens
	row.OutputTokens = r.OutputTokens
	row.Requests = r.NumModelRequests
	return ""
}

// fillInputOnly is embeddings and moderations: input tokens, never cached.
func fillInputOnly(r *usageResult, row *tokka.UsageRow) string {
	row.InputUncachedTokens = r.InputTokens
	row.Requests = r.NumModelRequests
	return ""
}

// costResult is organization.costs.result; quantity and quantity_unit are
// not stored.
type costResult struct {
	Amount *struct {
		Value    *provider.Decimal `json:"value"`
		Currency string            `json:"currency"`
	} `json:"amount"`
	LineItem  *string `json:"line_item"`
	ProjectID *string `json:"project_id"`
	APIKeyID  *string `json:"api_key_id"`
}

var (
	costGroups       = []string{"line_item", "project_id", "api_key_id"}
	legacyCostGroups = []string{"line_item", "project_id"} // before api_key_id grouping existed
)

// Costs returns one row per day, line item, project and API key for w, in
// dollars. Errors are *provider.Error as for Usage; a currency other than
// USD, or an implausible amount, is KindBadResponse rather than a guess. If
// OpenAI refuses api_key_id grouping with a 400 (the 2024 API did not have
// it), the costs are read again grouped by line item and project only.
func (c *Client) Costs(ctx context.Context, key *secret.Key, w tokka.Window) ([]tokka.CostRow, error) {
	if err := c.checkWindow(w); err != nil {
		return nil, err
	}
	rows, err := c.costs(ctx, key, w, costGroups)
	var pe *provider.Error
	if errors.As(err, &pe) && pe.Kind == provider.KindRequest && pe.Status == http.StatusBadRequest {
		rows, err = c.costs(ctx, key, w, legacyCostGroups)
	}
	return rows, err
}

func (c *Client) costs(ctx context.Context, key *secret.Key, w tokka.Window, groups []string) ([]tokka.CostRow, error) {
	q := c.windowQuery(w)
	q.Set("bucket_width", "1d")
	q.Set("limit", "180")
	for _, g := range groups {
		q.Add("group_by[]", g)
	}
	var rows []tokka.CostRow
	err := provider.Pages(ctx, c.paged(key, w, "costs", q), func(day time.Time, r *costResult) error {
		if r.Amount == nil || r.Amount.Value == nil {
			return badData("a cost result has no amount")
		}
		if !strings.EqualFold(r.Amount.Currency, "usd") {
			return badData("a cost result is not in USD")
		}
		amount, problem := provider.CheckAmount(r.Amount.Value.Decimal)
		if problem != "" {
			return badData("a cost result has " + problem)
		}
		li := str(r.LineItem)
		rows = append(rows, tokka.CostRow{
			Day:       day,
			LineItem:  li,
			Model:     lineItemModel(li),
			ProjectID: str(r.ProjectID),
			APIKeyID:  str(r.APIKeyID),
			AmountUSD: amount,
			Amount:    amount,
			Currency:  r.Amount.Currency,
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return rows, nil
}

// lineItemModel returns the model of a "<model>, <kind>" line item such as
// "gpt-4o-mini, input", or "" for free text like "Text tokens". A model name
// has no spaces, which keeps "File search, tool calls" from counting.
func lineItemModel(li string) string {
	model, kind, ok := strings.Cut(li, ", ")
	if !ok || model == "" || kind == "" || strings.ContainsAny(model, " \t") {
		return ""
	}
	return model
}

// projectList is GET /v1/organization/projects.
type projectList struct {
	Data *[]struct {
		ID string `json:"id"`
	} `json:"data"`
	LastID  *string `json:"last_id"`
	HasMore bool    `json:"has_more"`
}

// projectsPerPage is the listing's largest page size.
const projectsPerPage = 100

// Organization identifies the organisation key belongs to by its project
// ids, archived projects included: OpenAI's admin API has no organisation id,
// and project ids are unique across organisations. It pages through GET
// /v1/organization/projects with after = the previous page's last_id.
// Errors are *provider.Error: transport and status failures as
// provider.HTTPClient.Get describes, KindBadResponse for a malformed page, a
// cursor that repeats or is missing, or paging past MaxPages.
func (c *Client) Organization(ctx context.Context, key *secret.Key) (tokka.Organization, error) {
	h := c.httpClient()
	maxPages := c.MaxPages
	if maxPages <= 0 {
		maxPages = DefaultMaxPages
	}
	base := strings.TrimRight(c.BaseURL, "/") + "/v1/organization/projects"
	q := url.Values{}
	q.Set("limit", strconv.Itoa(projectsPerPage))
	q.Set("include_archived", "true")
	var org tokka.Organization
	seen, cursors := map[string]bool{}, map[string]bool{}
	for n := 0; ; n++ {
		if n == maxPages {
			return tokka.Organization{}, badData(fmt.Sprintf("the provider kept paging past %d pages (organization/projects)", maxPages))
		}
		res, err := h.Get(ctx, base+"?"+q.Encode(), c.authorize(key))
		if err != nil {
			return tokka.Organization{}, err
		}
		fail := func(reason string) error {
			e := badData(reason + " (organization/projects)")
			e.RequestID = res.RequestID
			return e
		}
		var page projectList
		if err := json.Unmarshal(res.Body, &page); err != nil || page.Data == nil {
			return tokka.Organization{}, fail("the provider's response is not the expected JSON")
		}
		for _, p := range *page.Data {
			if p.ID == "" || len(p.ID) > 200 {
				return tokka.Organization{}, fail("a project has no plausible id")
			}
			if !seen[p.ID] {
				seen[p.ID] = true
				org.ProjectIDs = append(org.ProjectIDs, p.ID)
			}
		}
		if !page.HasMore {
			return org, nil
		}
		if page.LastID == nil || *page.LastID == "" {
			return tokka.Organization{}, fail("the provider said there is more data but gave no last_id")
		}
		if cursors[*page.LastID] {
			return tokka.Organization{}, fail("the provider returned the same page cursor twice")
		}
		cursors[*page.LastID] = true
		q.Set("after", *page.LastID)
	}
}

func (c *Client) httpClient() provider.HTTPClient {
	h := c.HTTP
	h.Provider = tokka.OpenAI
	if h.RequestIDHeader == "" {
		h.RequestIDHeader = "x-request-id"
	}
	return h
}

// authorize sets the key header on a request.
func (c *Client) authorize(key *secret.Key) func(http.Header) {
	return func(hd http.Header) {
		// The only place the key's bytes are read.
		hd.Set("Authorization", "Bearer "+string(key.Bytes()))
	}
}

// paged is GET /v1/organization/<endpoint> with q, for provider.Pages.
func (c *Client) paged(key *secret.Key, w tokka.Window, endpoint string, q url.Values) provider.Paged {
	return provider.Paged{
		HTTP: c.httpClient(), URL: strings.TrimRight(c.BaseURL, "/") + "/v1/organization/" + endpoint, Name: endpoint,
		Authorize: c.authorize(key),
		MaxPages:  c.MaxPages, Start: provider.StartUnix, Window: w, Query: q,
	}
}

func (c *Client) windowQuery(w tokka.Window) url.Values {
	q := url.Values{}
	q.Set("start_time", strconv.FormatInt(w.From.Unix(), 10))
	q.Set("end_time", strconv.FormatInt(w.To.Unix(), 10))
	return q
}

func (c *Client) checkWindow(w tokka.Window) error {
	if !w.To.After(w.From) {
		return &provider.Error{Provider: tokka.OpenAI, Kind: provider.KindRequest, Reason: "the sync window is empty"}
	}
	return nil
}

func badData(reason string) *provider.Error {
	return &provider.Error{Provider: tokka.OpenAI, Kind: provider.KindBadResponse, Reason: reason}
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
