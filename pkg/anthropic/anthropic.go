// Package anthropic reads an Anthropic organisation's identity, usage and
// costs with an admin key, through the /v1/organizations/me,
// /v1/organizations/usage_report/messages and /v1/organizations/cost_report
// endpoints, and normalises them into provider rows.
package anthropic

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tokka-dev/tokka/pkg/provider"
	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// DefaultBaseURL is the real API; paths below it start with /v1.
const DefaultBaseURL = "https://api.anthropic.com"

// Version is the anthropic-version header value the client speaks.
const Version = "2023-06-01"

// DefaultMaxPages bounds one endpoint's paging in one call. A year of daily
// buckets is 12 pages (31 buckets each); 100 only trips on a provider that
// never stops, and stops it within one connection's sync.
const DefaultMaxPages = provider.DefaultMaxPages

// Client implements provider.Client for Anthropic. The zero value is not
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

// messagesResult is one result of the messages usage report; unknown fields
// (the 2026 dimensions inference_geo, speed, account_id, …) are ignored.
type messagesResult struct {
	UncachedInputTokens  int64 `json:"uncached_input_tokens"`
	CacheReadInputTokens int64 `json:"cache_read_input_tokens"`
	CacheCreation        struct {
		Ephemeral5m int64 `json:"ephemeral_5m_input_tokens"`
		Ephemeral1h int64 `json:"ephemeral_1h_input_tokens"`
	} `json:"cache_creation"`
	OutputTokens  int64 `json:"output_tokens"`
	ServerToolUse struct {
		WebSearchRequests int64 `json:"web_search_requests"`
	} `json:"server_tool_use"`
	APIKeyID      *string `json:"api_key_id"`
	WorkspaceID   *string `json:"workspace_id"`
	Model         *string `json:"model"`
	ServiceTier   *string `json:"service_tier"`
	ContextWindow *string `json:"context_window"`
}

// messagesGroups are the dimensions Usage splits by; all are stored.
var messagesGroups = []string{"model", "workspace_id", "api_key_id", "service_tier", "context_window"}

// Usage returns one "messages" row per day, model, workspace, API key,
// service tier and context window for w; the default workspace has
// ProjectID "" and Console usage APIKeyID "". Anthropic's token classes are
// disjoint already (there is no total input field), so they are stored as
// reported. Anthropic reports no request count, so Requests is 0. Errors are
// *provider.Error: transport and status failures as provider.HTTPClient.Get
// describes; KindBadResponse for malformed data, negative or implausibly
// large counts, repeated buckets and endless paging (the reason names the
// endpoint); KindRequest for an empty window.
func (c *Client) Usage(ctx context.Context, key *secret.Key, w tokka.Window) ([]tokka.UsageRow, error) {
	q, err := c.windowQuery(w)
	if err != nil {
		return nil, err
	}
	q.Set("bucket_width", "1d")
	q.Set("limit", "31")
	for _, g := range messagesGroups {
		q.Add("group_by[]", g)
	}
	var rows []tokka.UsageRow
	err = provider.Pages(ctx, c.paged(key, w, "usage_report/messages", q), func(day time.Time, r *messagesResult) error {
		if p := provider.CountsProblem(r.UncachedInputTokens, r.CacheReadInputTokens, r.CacheCreation.Ephemeral5m,
			r.CacheCreation.Ephemeral1h, r.OutputTokens, r.ServerToolUse.WebSearchRequests); p != "" {
			return badData("a messages usage result has " + p)
		}
		rows = append(rows, tokka.UsageRow{
			Day:           day,
			Family:        "messages",
			Model:         str(r.Model),
			ProjectID:     str(r.WorkspaceID),
			APIKeyID:      str(r.APIKeyID),
			ServiceTier:   str(r.ServiceTier),
			ContextWindow: str(r.ContextWindow),
			Tokens: tokka.Tokens{
				InputUncachedTokens: r.UncachedInputTokens,
				CacheReadTokens:     r.CacheReadInputTokens,
				CacheWrite5mTokens:  r.CacheCreation.Ephemeral5m,
				CacheWrite1hTokens:  r.CacheCreation.Ephemeral1h,
				OutputTokens:        r.OutputTokens,
			},
			WebSearches: r.ServerToolUse.WebSearchRequests,
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return rows, nil
}

// costResult is one result of the cost report. The amount is a decimal
// string in cents such as "123.78912"; a bare JSON number is accepted too, in
// case the provider ever changes its mind; float64 is never involved.
type costResult struct {
	Amount      *provider.Decimal `json:"amount"`
	Currency    string            `json:"currency"`
	CostType    *string           `json:"cost_type"`
	Description *string           `json:"description"`
	Model       *string           `json:"model"`
	TokenType   *string           `json:"token_type"`
	WorkspaceID *string           `json:"workspace_id"`
}

// Costs returns one row per day, workspace and description for w. Amount is
// the cents Anthropic reported and AmountUSD that divided by 100, exactly.
// Errors are *provider.Error as for Usage; a currency other than USD, or an
// implausible amount, is KindBadResponse rather than a guess.
func (c *Client) Costs(ctx context.Context, key *secret.Key, w tokka.Window) ([]tokka.CostRow, error) {
	q, err := c.windowQuery(w)
	if err != nil {
		return nil, err
	}
	q.Set("bucket_width", "1d")
	q.Set("limit", "31")
	q.Add("group_by[]", "workspace_id")
	q.Add("group_by[]", "description")
	var rows []tokka.CostRow
	err = provider.Pages(ctx, c.paged(key, w, "cost_report", q), func(day time.Time, r *costResult) error {
		if r.Amount == nil {
			return badData("a cost result has no amount")
		}
		if !strings.EqualFold(r.Currency, "usd") {
			return badData("a cost result is not in USD")
		}
		cents, problem := provider.CheckAmount(r.Amount.Decimal)
		if problem != "" {
			return badData("a cost result has " + problem)
		}
		rows = append(rows, tokka.CostRow{
			Day:       day,
			LineItem:  str(r.Description),
			Model:     str(r.Model),
			TokenType: str(r.TokenType),
			CostType:  str(r.CostType),
			ProjectID: str(r.WorkspaceID),
			Amount:    cents,
			AmountUSD: cents.Shift(-2), // a decimal shift, so never rounded
			Currency:  r.Currency,
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return rows, nil
}

// organizationDoc is GET /v1/organizations/me.
type organizationDoc struct {
	ID   string `json:"id"`
	Type string `json:"type"`
}

// Organization returns the id of the organisation key belongs to, from
// GET /v1/organizations/me, lower-cased (it is a UUID). Errors are
// *provider.Error: transport and status failures as provider.HTTPClient.Get
// describes, KindBadResponse for an answer without a plausible id.
func (c *Client) Organization(ctx context.Context, key *secret.Key) (tokka.Organization, error) {
	h := c.httpClient()
	res, err := h.Get(ctx, strings.TrimRight(c.BaseURL, "/")+"/v1/organizations/me", c.authorize(key))
	if err != nil {
		return tokka.Organization{}, err
	}
	var doc organizationDoc
	if err := json.Unmarshal(res.Body, &doc); err != nil || doc.ID == "" || len(doc.ID) > 200 ||
		(doc.Type != "" && doc.Type != "organization") || !printable(doc.ID) {
		e := badData("the organisation's identity is not the expected JSON (organizations/me)")
		e.RequestID = res.RequestID
		return tokka.Organization{}, e
	}
	return tokka.Organization{ID: strings.ToLower(doc.ID)}, nil
}

// printable reports whether s is plain visible ASCII, as ids are.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

func (c *Client) httpClient() provider.HTTPClient {
	h := c.HTTP
	h.Provider = tokka.Anthropic
	if h.RequestIDHeader == "" {
		h.RequestIDHeader = "request-id"
	}
	return h
}

// authorize sets the key and version headers on a request.
func (c *Client) authorize(key *secret.Key) func(http.Header) {
	return func(hd http.Header) {
		// The only place the key's bytes are read.
		hd.Set("x-api-key", string(key.Bytes()))
		hd.Set("anthropic-version", Version)
	}
}

// paged is GET /v1/organizations/<endpoint> with q, for provider.Pages.
func (c *Client) paged(key *secret.Key, w tokka.Window, endpoint string, q url.Values) provider.Paged {
	return provider.Paged{
		HTTP: c.httpClient(), URL: strings.TrimRight(c.BaseURL, "/") + "/v1/organizations/" + endpoint, Name: endpoint,
		Authorize: c.authorize(key),
		MaxPages:  c.MaxPages, Start: provider.StartRFC3339, Window: w, Query: q,
	}
}

func (c *Client) windowQuery(w tokka.Window) (url.Values, error) {
	if !w.To.After(w.From) {
		return nil, &provider.Error{Provider: tokka.Anthropic, Kind: provider.KindRequest, Reason: "the sync window is empty"}
	}
	q := url.Values{}
	q.Set("starting_at", w.From.UTC().Format(time.RFC3339))
	q.Set("ending_at", w.To.UTC().Format(time.RFC3339))
	return q, nil
}

func badData(reason string) *provider.Error {
	return &provider.Error{Provider: tokka.Anthropic, Kind: provider.KindBadResponse, Reason: reason}
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
