package fakeprovider

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/shopspring/decimal"
)

// Anthropic wire types, field for field as the API reports them.

type antErrorEnvelope struct {
	Type      string   `json:"type"`
	Error     antError `json:"error"`
	RequestID string   `json:"request_id"`
}

type antError struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

type antPage struct {
	Data     []antBucket `json:"data"`
	HasMore  bool        `json:"has_more"`
	NextPage *string     `json:"next_page"`
}

type antBucket struct {
	StartingAt string `json:"starting_at"`
	EndingAt   string `json:"ending_at"`
	Results    any    `json:"results"`
}

type antMessagesDims struct {
	APIKeyID      *string `json:"api_key_id"`
	WorkspaceID   *string `json:"workspace_id"`
	Model         *string `json:"model"`
	ServiceTier   *string `json:"service_tier"`
	ContextWindow *string `json:"context_window"`
}

type antMessagesResult struct {
	UncachedInputTokens int64 `json:"uncached_input_tokens"`
	CacheCreation       struct {
		Ephemeral1h int64 `json:"ephemeral_1h_input_tokens"`
		Ephemeral5m int64 `json:"ephemeral_5m_input_tokens"`
	} `json:"cache_creation"`
	CacheReadInputTokens int64 `json:"cache_read_input_tokens"`
	OutputTokens         int64 `json:"output_tokens"`
	ServerToolUse        struct {
		WebSearchRequests int64 `json:"web_search_requests"`
	} `json:"server_tool_use"`
	antMessagesDims
}

type antCostDims struct {
	CostType      *string `json:"cost_type"`
	Description   *string `json:"description"`
	Model         *string `json:"model"`
	TokenType     *string `json:"token_type"`
	ServiceTier   *string `json:"service_tier"`
	ContextWindow *string `json:"context_window"`
	InferenceGeo  *string `json:"inference_geo"`
	WorkspaceID   *string `json:"workspace_id"`
}

type antCostResult struct {
	Amount   string `json:"amount"`
	Currency string `json:"currency"`
	antCostDims

	sum decimal.Decimal
}

var (
	antMessagesGroups = []string{"api_key_id", "workspace_id", "model", "service_tier", "context_window"}
	antCostGroups     = []string{"workspace_id", "description"}
	antVersions       = []string{"2023-06-01", "2023-01-01"}
)

func (s *Server) serveAnthropic(w http.ResponseWriter, r *http.Request) {
	reqID := s.requestID()
	w.Header().Set("request-id", reqID)
	fail := func(status int, typ, msg string) {
		writeJSON(w, status, antErrorEnvelope{Type: "error", Error: antError{Type: typ, Message: msg}, RequestID: reqID})
	}

	var serve func(http.ResponseWriter, *http.Request, string, antQuery, func(int, string, string))
	me := false
	var directory func()
	switch r.URL.Path {
	case "/v1/organizations/workspaces", "/v1/organizations/api_keys":
		me = true
		directory = func() {
			s.anthropicDirectory(w, r, r.Header.Get("x-api-key"), r.URL.Path == "/v1/organizations/workspaces", fail)
		}
	case "/v1/organizations/usage_report/messages":
		serve = s.anthropicMessages
	case "/v1/organizations/cost_report":
		serve = s.anthropicCosts
	case "/v1/organizations/me":
		me = true
	default:
		fail(http.StatusNotFound, "not_found_error", "Not found")
		return
	}

	key := r.Header.Get("x-api-key")
	n := s.count(key, !me)
	switch {
	case key == "":
		fail(http.StatusUnauthorized, "authentication_error", "x-api-key header is required")
		return
	case strings.Contains(key, "-revoked"):
		// Deliberately hostile: the whole key comes back in the message.
		fail(http.StatusUnauthorized, "authentication_error", "invalid x-api-key: "+key+" has been revoked")
		return
	case !strings.HasPrefix(key, "sk-ant-admin"):
		fail(http.StatusUnauthorized, "authentication_error", "invalid x-api-key")
		return
	}
	switch v := r.Header.Get("anthropic-version"); {
	case v == "":
		fail(http.StatusBadRequest, "invalid_request_error", "anthropic-version: header is required")
		return
	case !slices.Contains(antVersions, v):
		fail(http.StatusBadRequest, "invalid_request_error", fmt.Sprintf("anthropic-version: %q is not a valid version", v))
		return
	}
	if r.Method != http.MethodGet {
		fail(http.StatusMethodNotAllowed, "invalid_request_error", "Method not allowed")
		return
	}
	if !s.slow(r.Context(), key) {
		return
	}
	if me {
		// The organisation and directory endpoints check the key like the
		// others; the fault markers below are for the usage and cost reports.
		switch {
		case directory != nil && strings.Contains(key, "-usageonly"):
			fail(http.StatusForbidden, "permission_error", "This API key does not have permission to use the specified resource.")
		case directory != nil:
			directory()
		default:
			s.anthropicMe(w, key)
		}
		return
	}
	switch f := failureFor(key, n, 529); f.status {
	case http.StatusInternalServerError:
		fail(http.StatusInternalServerError, "api_error", "Internal server error")
		return
	case http.StatusTooManyRequests:
		f.setHeaders(w)
		fail(http.StatusTooManyRequests, "rate_limit_error", "Number of requests has exceeded your rate limit. Please try again later.")
		return
	case 529:
		fail(529, "overloaded_error", "Overloaded")
		return
	}
	if hasMore, next, ok := pagingFault(key, r.URL.Query().Get("page")); ok {
		writeData(w, r, key, antPage{Data: []antBucket{}, HasMore: hasMore, NextPage: &next})
		return
	}

	q, msg := s.parseAnthropicQuery(r)
	if msg != "" {
		fail(http.StatusBadRequest, "invalid_request_error", msg)
		return
	}
	serve(w, r, key, q, fail)
}

// antQuery is the validated shared part of a messages or cost request.
type antQuery struct {
	start, end time.Time // start snapped down to the width
	width      time.Duration
	widthName  string
	limitRaw   string
	from       time.Time
}

func (s *Server) parseAnthropicQuery(r *http.Request) (antQuery, string) {
	q := r.URL.Query()
	raw := q.Get("starting_at")
	if raw == "" {
		return antQuery{}, "starting_at: Field required"
	}
	start, err := time.Parse(time.RFC3339, raw)
	if err != nil {
		return antQuery{}, "starting_at: Input should be a valid RFC 3339 datetime"
	}
	out := antQuery{widthName: "1d", limitRaw: q.Get("limit")}
	if v := q.Get("bucket_width"); v != "" {
		out.widthName = v
	}
	width, ok := widths[out.widthName]
	if !ok {
		return antQuery{}, "bucket_width: Input should be '1m', '1h' or '1d'"
	}
	out.width = width
	out.start = start.UTC().Truncate(width)
	// Without ending_at the report runs to the end of the current bucket.
	out.end = s.now().Truncate(width).Add(width)
	if raw := q.Get("ending_at"); raw != "" {
		end, err := time.Parse(time.RFC3339, raw)
		if err != nil {
			return antQuery{}, "ending_at: Input should be a valid RFC 3339 datetime"
		}
		out.end = end.UTC()
	}
	if !out.end.After(out.start) {
		return antQuery{}, "ending_at must be after starting_at"
	}
	out.from = out.start
	if p := q.Get("page"); p != "" {
		t, ok := decodeAnthropicPage(p)
		if !ok || t.Before(out.start) || t.Add(width).After(out.end) || t.Truncate(width) != t {
			return antQuery{}, "page: invalid page token"
		}
		out.from = t
	}
	return out, ""
}

// Anthropic cursors look like page_MjAyNS0wNS0xNFQwMDowMDowMFo=: base64 of
// the next bucket's starting_at.
func encodeAnthropicPage(t time.Time) string {
	return "page_" + base64.StdEncoding.EncodeToString([]byte(t.UTC().Format(time.RFC3339)))
}

func decodeAnthropicPage(p string) (time.Time, bool) {
	raw, ok := strings.CutPrefix(p, "page_")
	if !ok {
		return time.Time{}, false
	}
	b, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, string(b))
	return t.UTC(), err == nil
}

// anthropicBuckets returns up to limit whole buckets from q.from that end on
// or before q.end ("buckets that end before ending_at").
func anthropicBuckets(q antQuery, limit int) ([]span, *string) {
	var out []span
	s := q.from
	for len(out) < limit && !s.Add(q.width).After(q.end) {
		out = append(out, span{s, s.Add(q.width)})
		s = s.Add(q.width)
	}
	if s.Add(q.width).After(q.end) {
		return out, nil
	}
	next := encodeAnthropicPage(s)
	return out, &next
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func (s *Server) anthropicMessages(w http.ResponseWriter, r *http.Request, key string, q antQuery, fail func(int, string, string)) {
	limit, msg := parseLimit(q.limitRaw, usageLimits[q.widthName])
	if msg != "" {
		fail(http.StatusBadRequest, "invalid_request_error", msg)
		return
	}
	gb, msg := groupSet(arrayParam(r, "group_by"), antMessagesGroups)
	if msg != "" {
		fail(http.StatusBadRequest, "invalid_request_error", msg)
		return
	}
	workspaces, models, keys := arrayParam(r, "workspace_ids"), arrayParam(r, "models"), arrayParam(r, "api_key_ids")
	tiers, windows := arrayParam(r, "service_tiers"), arrayParam(r, "context_window")

	spans, next := anthropicBuckets(q, limit)
	page := antPage{Data: []antBucket{}, HasMore: next != nil, NextPage: next}
	for _, b := range spans {
		g := newGroups[antMessagesResult]()
		if day, ok := s.usageDay(b); ok {
			for _, rec := range AnthropicDayAt(key, day, s.epochFor(key, day)) {
				if !filter(workspaces, rec.WorkspaceID) || !filter(models, rec.Model) || !filter(keys, rec.APIKeyID) ||
					!filter(tiers, rec.ServiceTier) || !filter(windows, rec.ContextWindow) {
					continue
				}
				dims := antMessagesDims{
					APIKeyID:      dim(gb["api_key_id"], rec.APIKeyID),
					WorkspaceID:   dim(gb["workspace_id"], rec.WorkspaceID), // default workspace → null
					Model:         dim(gb["model"], rec.Model),
					ServiceTier:   dim(gb["service_tier"], rec.ServiceTier),
					ContextWindow: dim(gb["context_window"], rec.ContextWindow),
				}
				res := g.get(dims, func() *antMessagesResult { return &antMessagesResult{antMessagesDims: dims} })
				res.UncachedInputTokens += rec.UncachedInputTokens
				res.CacheCreation.Ephemeral5m += rec.CacheCreation5mTokens
				res.CacheCreation.Ephemeral1h += rec.CacheCreation1hTokens
				res.CacheReadInputTokens += rec.CacheReadInputTokens
				res.OutputTokens += rec.OutputTokens
				res.ServerToolUse.WebSearchRequests += rec.WebSearchRequests
			}
		}
		results := g.results()
		if bad := badCount(key); bad != 0 && len(results) > 0 {
			results[0].OutputTokens = bad
		}
		page.Data = append(page.Data, antBucket{StartingAt: rfc3339(b.start), EndingAt: rfc3339(b.end), Results: results})
	}
	page.HasMore, page.NextPage = misPage(key, page.HasMore, page.NextPage)
	writeData(w, r, key, page)
}

func (s *Server) anthropicCosts(w http.ResponseWriter, r *http.Request, key string, q antQuery, fail func(int, string, string)) {
	if q.widthName != "1d" {
		fail(http.StatusBadRequest, "invalid_request_error", "bucket_width: Input should be '1d'")
		return
	}
	limit, msg := parseLimit(q.limitRaw, limitRule{def: 7, max: 31})
	if msg != "" {
		fail(http.StatusBadRequest, "invalid_request_error", msg)
		return
	}
	gb, msg := groupSet(arrayParam(r, "group_by"), antCostGroups)
	if msg != "" {
		fail(http.StatusBadRequest, "invalid_request_error", msg)
		return
	}

	spans, next := anthropicBuckets(q, limit)
	page := antPage{Data: []antBucket{}, HasMore: next != nil, NextPage: next}
	for _, b := range spans {
		g := newGroups[antCostResult]()
		if day, ok := s.usageDay(b); ok {
			for _, rec := range AnthropicDayAt(key, day, s.epochFor(key, day)) {
				for _, c := range rec.Costs {
					// Everything that describes the line is only reported
					// when grouping by description.
					byDesc := gb["description"]
					dims := antCostDims{
						CostType:    dim(byDesc, c.CostType),
						Description: dim(byDesc, c.Description),
						Model:       dim(byDesc, c.Model),
						TokenType:   dim(byDesc, c.TokenType),
						WorkspaceID: dim(gb["workspace_id"], c.WorkspaceID),
					}
					if c.CostType == "tokens" {
						dims.ServiceTier = dim(byDesc, rec.ServiceTier)
						dims.ContextWindow = dim(byDesc, rec.ContextWindow)
					}
					res := g.get(dims, func() *antCostResult { return &antCostResult{Currency: "USD", antCostDims: dims} })
					res.sum = res.sum.Add(c.AmountCents)
				}
			}
		}
		results := g.results()
		for _, res := range results {
			res.Amount = res.sum.String()
		}
		page.Data = append(page.Data, antBucket{StartingAt: rfc3339(b.start), EndingAt: rfc3339(b.end), Results: results})
	}
	page.HasMore, page.NextPage = misPage(key, page.HasMore, page.NextPage)
	writeData(w, r, key, page)
}
