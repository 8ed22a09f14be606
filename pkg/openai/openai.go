// Package openai reads an OpenAI organisation's usage and costs with an admin
// key, through the /v1/organization/usage/* and /v1/organization/costs
// endpoints, and normalises them into provider rows.
package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tokka-dev/tokka/pkg/provider"
	"github.com/tokka-dev/tokka/pkg/secret"
)

// DefaultBaseURL is the real API; paths below it start with /v1.
const DefaultBaseURL = "https://api.openai.com"

// DefaultMaxPages bounds one Usage or Costs call. A 90-day window needs 3
// usage pages per family; 500 only trips on a provider that never stops.
const DefaultMaxPages = 500

// Client implements provider.Client for OpenAI. The zero value is not
// usable: BaseURL is required.
type Client struct {
	BaseURL  string              // e.g. DefaultBaseURL or a fake server's URL, without trailing /v1
	HTTP     provider.HTTPClient // retry, timeout and size policy; Provider and RequestIDHeader are set by the client
	MaxPages int                 // per endpoint and call; 0 means DefaultMaxPages
}

var _ provider.Client = (*Client)(nil)

// New returns a client for baseURL with the given HTTP policy (its zero value
// gives the defaults). It cannot fail; a bad URL surfaces on the first call.
func New(baseURL string, h provider.HTTPClient) *Client {
	return &Client{BaseURL: baseURL, HTTP: h}
}

// usageFamily is one /v1/organization/usage/<path> endpoint. Adding the other
// families (embeddings, moderations, images, audio_speeches,
// audio_transcriptions, vector_stores, code_interpreter_sessions,
// file_search_calls, web_search_calls) means adding a row to usageFamilies
// with its group_by set and a decoder for its result object.
type usageFamily struct {
	name    string   // provider.UsageRow.Family, also the path segment
	groupBy []string // dimensions to split by; the decoder fills the matching row fields
	decode  func(day time.Time, raw json.RawMessage) (provider.UsageRow, error)
}

var usageFamilies = []usageFamily{
	{name: "completions", groupBy: []string{"model", "project_id"}, decode: decodeCompletions},
}

// Usage returns one row per day, family and group for w. Errors are
// *provider.Error: transport and status failures as provider.HTTPClient.Get
// describes, KindBadResponse for malformed or inconsistent data and for
// endless paging, KindRequest for an empty window.
func (c *Client) Usage(ctx context.Context, key *secret.Key, w provider.Window) ([]provider.UsageRow, error) {
	if err := c.checkWindow(w); err != nil {
		return nil, err
	}
	var rows []provider.UsageRow
	for _, f := range usageFamilies {
		q := c.windowQuery(w)
		q.Set("bucket_width", "1d")
		q.Set("limit", "31")
		for _, g := range f.groupBy {
			q.Add("group_by[]", g)
		}
		err := c.pages(ctx, key, w, "/v1/organization/usage/"+f.name, q, func(day time.Time, raw json.RawMessage) error {
			row, err := f.decode(day, raw)
			if err != nil {
				return err
			}
			row.Family = f.name
			rows = append(rows, row)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return rows, nil
}

// completionsResult is organization.usage.completions.result. Counts OpenAI
// added later (input_cache_write_tokens) are absent from older data and
// decode as 0; unknown fields are ignored.
type completionsResult struct {
	InputTokens           int64   `json:"input_tokens"`
	OutputTokens          int64   `json:"output_tokens"`
	NumModelRequests      int64   `json:"num_model_requests"`
	InputCachedTokens     int64   `json:"input_cached_tokens"`
	InputCacheWriteTokens int64   `json:"input_cache_write_tokens"`
	ProjectID             *string `json:"project_id"`
	APIKeyID              *string `json:"api_key_id"`
	Model                 *string `json:"model"`
	Batch                 *bool   `json:"batch"`
	ServiceTier           *string `json:"service_tier"`
}

func decodeCompletions(day time.Time, raw json.RawMessage) (provider.UsageRow, error) {
	var r completionsResult
	if err := json.Unmarshal(raw, &r); err != nil {
		return provider.UsageRow{}, badData("a completions usage result is malformed")
	}
	for _, n := range []int64{r.InputTokens, r.OutputTokens, r.NumModelRequests, r.InputCachedTokens, r.InputCacheWriteTokens} {
		if n < 0 {
			return provider.UsageRow{}, badData("a completions usage result has a negative count")
		}
	}
	// input_tokens includes cached reads and cache writes; the row's classes
	// must not overlap, so the uncached part is what is left.
	uncached := r.InputTokens - r.InputCachedTokens - r.InputCacheWriteTokens
	if uncached < 0 {
		return provider.UsageRow{}, badData("a completions usage result reports more cached input than input")
	}
	row := provider.UsageRow{
		Day:                 day,
		Model:               str(r.Model),
		ProjectID:           str(r.ProjectID),
		APIKeyID:            str(r.APIKeyID),
		ServiceTier:         str(r.ServiceTier),
		InputUncachedTokens: uncached,
		CacheReadTokens:     r.InputCachedTokens,
		CacheWrite5mTokens:  r.InputCacheWriteTokens,
		OutputTokens:        r.OutputTokens,
		Requests:            r.NumModelRequests,
	}
	if r.Batch != nil {
		row.Batch = strconv.FormatBool(*r.Batch)
	}
	return row, nil
}

// costResult is organization.costs.result.
type costResult struct {
	Amount *struct {
		Value    *amount `json:"value"`
		Currency string  `json:"currency"`
	} `json:"amount"`
	LineItem  *string `json:"line_item"`
	ProjectID *string `json:"project_id"`
	APIKeyID  *string `json:"api_key_id"`
}

// amount decodes amount.value exactly: the spec says number, but live
// responses have carried numeric strings ("12.50"), and float64 would round
// either way.
type amount struct{ d decimal.Decimal }

func (a *amount) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		b = []byte(strings.TrimSpace(s))
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("amount is not a number")
	}
	d, err := decimal.NewFromString(n.String())
	if err != nil {
		return fmt.Errorf("amount is not a decimal")
	}
	a.d = d
	return nil
}

// Costs returns one row per day and cost line for w, in dollars. Errors are
// *provider.Error as for Usage; a currency other than USD is KindBadResponse
// rather than a guess at an exchange rate.
func (c *Client) Costs(ctx context.Context, key *secret.Key, w provider.Window) ([]provider.CostRow, error) {
	if err := c.checkWindow(w); err != nil {
		return nil, err
	}
	q := c.windowQuery(w)
	q.Set("bucket_width", "1d")
	q.Set("limit", "180")
	q.Add("group_by[]", "line_item")
	q.Add("group_by[]", "project_id")
	var rows []provider.CostRow
	err := c.pages(ctx, key, w, "/v1/organization/costs", q, func(day time.Time, raw json.RawMessage) error {
		var r costResult
		if err := json.Unmarshal(raw, &r); err != nil {
			return badData("a cost result is malformed")
		}
		if r.Amount == nil || r.Amount.Value == nil {
			return badData("a cost result has no amount")
		}
		if !strings.EqualFold(r.Amount.Currency, "usd") {
			return badData("a cost result is not in USD")
		}
		li := str(r.LineItem)
		rows = append(rows, provider.CostRow{
			Day:       day,
			LineItem:  li,
			Model:     lineItemModel(li),
			ProjectID: str(r.ProjectID),
			APIKeyID:  str(r.APIKeyID),
			AmountUSD: r.Amount.Value.d,
			Amount:    r.Amount.Value.d,
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

// page is the envelope shared by every usage and costs endpoint.
type page struct {
	Data *[]struct {
		StartTime *int64            `json:"start_time"`
		Results   []json.RawMessage `json:"results"`
	} `json:"data"`
	HasMore  bool    `json:"has_more"`
	NextPage *string `json:"next_page"`
}

// pages GETs path with q and follows next_page until has_more is false,
// calling each for every result with its bucket's UTC day (which must lie in
// w). A response without a data array is malformed, not empty. It refuses a
// cursor it has already seen and stops after MaxPages, so a misbehaving
// provider cannot keep a sync busy forever.
func (c *Client) pages(ctx context.Context, key *secret.Key, w provider.Window, path string, q url.Values, each func(day time.Time, raw json.RawMessage) error) error {
	h := c.HTTP
	h.Provider = provider.OpenAI
	if h.RequestIDHeader == "" {
		h.RequestIDHeader = "x-request-id"
	}
	authorize := func(hd http.Header) {
		// The only place the key's bytes are read.
		hd.Set("Authorization", "Bearer "+string(key.Bytes()))
	}
	maxPages := c.MaxPages
	if maxPages <= 0 {
		maxPages = DefaultMaxPages
	}
	seen := map[string]bool{}
	base := strings.TrimRight(c.BaseURL, "/") + path + "?"
	for n := 0; ; n++ {
		if n == maxPages {
			return &provider.Error{Provider: provider.OpenAI, Kind: provider.KindBadResponse,
				Reason: fmt.Sprintf("the provider kept paging past %d pages", maxPages)}
		}
		res, err := h.Get(ctx, base+q.Encode(), authorize)
		if err != nil {
			return err
		}
		fail := func(err error) error {
			var pe *provider.Error
			if errors.As(err, &pe) {
				pe.RequestID = res.RequestID
			}
			return err
		}
		var p page
		if err := json.Unmarshal(res.Body, &p); err != nil || p.Data == nil {
			return fail(badData("the provider's response is not the expected JSON"))
		}
		for _, b := range *p.Data {
			if len(b.Results) == 0 {
				continue
			}
			if b.StartTime == nil {
				return fail(badData("a bucket has no start_time"))
			}
			day := time.Unix(*b.StartTime, 0).UTC().Truncate(24 * time.Hour)
			if day.Before(w.From.UTC().Truncate(24*time.Hour)) || !day.Before(w.To) {
				return fail(badData("the provider returned a bucket outside the requested window"))
			}
			for _, raw := range b.Results {
				if err := each(day, raw); err != nil {
					return fail(err)
				}
			}
		}
		if !p.HasMore {
			return nil
		}
		if p.NextPage == nil || *p.NextPage == "" {
			return fail(badData("the provider said there is more data but gave no next page"))
		}
		if seen[*p.NextPage] {
			return fail(badData("the provider returned the same page cursor twice"))
		}
		seen[*p.NextPage] = true
		q.Set("page", *p.NextPage)
	}
}

func (c *Client) windowQuery(w provider.Window) url.Values {
	q := url.Values{}
	q.Set("start_time", strconv.FormatInt(w.From.Unix(), 10))
	q.Set("end_time", strconv.FormatInt(w.To.Unix(), 10))
	return q
}

func (c *Client) checkWindow(w provider.Window) error {
	if !w.To.After(w.From) {
		return &provider.Error{Provider: provider.OpenAI, Kind: provider.KindRequest, Reason: "the sync window is empty"}
	}
	return nil
}

func badData(reason string) *provider.Error {
	return &provider.Error{Provider: provider.OpenAI, Kind: provider.KindBadResponse, Reason: reason}
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
