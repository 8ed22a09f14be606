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

type antPage[R jsonAppender] struct {
	Data     []antBucket[R] `json:"data"`
	HasMore  bool           `json:"has_more"`
	NextPage *string        `json:"next_page"`
}

func (p antPage[R]) appendJSON(b []byte) []byte {
	b = append(appendKey(append(b, '{'), "data"), '[')
	for i, bk := range p.Data {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(appendKey(append(b, '{'), "starting_at"), bk.StartingAt)
		b = appendString(appendKey(b, "ending_at"), bk.EndingAt)
		b = append(appendResults(appendKey(b, "results"), bk.Results), '}')
	}
	b = appendBool(appendKey(append(b, ']'), "has_more"), p.HasMore)
	return append(appendNullable(appendKey(b, "next_page"), p.NextPage), '}')
}

type antBucket[R jsonAppender] struct {
	StartingAt string `json:"starting_at"`
	EndingAt   string `json:"ending_at"`
	Results    []R    `json:"results"`
}

type antMessagesDims struct {
	APIKeyID      *string `json:"api_key_id"`
	WorkspaceID   *string `json:"workspace_id"`
	Model         *string `json:"model"`
	ServiceTier   *string `json:"service_tier"`
	ContextWindow *string `json:"context_window"`
}

// appendFields appends the dimensions' fields, without braces.
func (d antMessagesDims) appendFields(b []byte) []byte {
	b = appendNullable(appendKey(b, "api_key_id"), d.APIKeyID)
	b = appendNullable(appendKey(b, "workspace_id"), d.WorkspaceID)
	b = appendNullable(appendKey(b, "model"), d.Model)
	b = appendNullable(appendKey(b, "service_tier"), d.ServiceTier)
	return appendNullable(appendKey(b, "context_window"), d.ContextWindow)
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

func (r *antMessagesResult) appendJSON(b []byte) []byte {
	b = appendInt(append(b, '{'), "uncached_input_tokens", r.UncachedInputTokens)
	b = appendInt(append(appendKey(b, "cache_creation"), '{'), "ephemeral_1h_input_tokens", r.CacheCreation.Ephemeral1h)
	b = append(appendInt(b, "ephemeral_5m_input_tokens", r.CacheCreation.Ephemeral5m), '}')
	b = appendInt(b, "cache_read_input_tokens", r.CacheReadInputTokens)
	b = appendInt(b, "output_tokens", r.OutputTokens)
	b = append(appendInt(append(appendKey(b, "server_tool_use"), '{'), "web_search_requests", r.ServerToolUse.WebSearchRequests), '}')
	return append(r.antMessagesDims.appendFields(b), '}')
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

// appendFields appends the dimensions' fields, without braces.
func (d antCostDims) appendFields(b []byte) []byte {
	b = appendNullable(appendKey(b, "cost_type"), d.CostType)
	b = appendNullable(appendKey(b, "description"), d.Description)
	b = appendNullable(appendKey(b, "model"), d.Model)
	b = appendNullable(appendKey(b, "token_type"), d.TokenType)
	b = appendNullable(appendKey(b, "service_tier"), d.ServiceTier)
	b = appendNullable(appendKey(b, "context_window"), d.ContextWindow)
	b = appendNullable(appendKey(b, "inference_geo"), d.InferenceGeo)
	return appendNullable(appendKey(b, "workspace_id"), d.WorkspaceID)
}

type antCostResult struct {
	Amount   string `json:"amount"`
	Currency string `json:"currency"`
	antCostDims

	sum   decimal.Decimal
	lines int // cost lines added into sum
}

// add adds cents to the result's sum.
func (r *antCostResult) add(cents decimal.Decimal) {
	if r.lines == 0 {
		r.sum = cents
	} else {
		r.sum = r.sum.Add(cents)
	}
	r.lines++
}

func (r *antCostResult) appendJSON(b []byte) []byte {
	b = appendString(appendKey(append(b, '{'), "amount"), r.Amount)
	b = appendString(appendKey(b, "currency"), r.Currency)
	return append(r.antCostDims.appendFields(b), '}')
}

var (
	antMessagesGroups = []string{"api_key_id", "workspace_id", "model", "service_tier", "context_window"}
	antCostGroups     = []string{"workspace_id", "description"}
	antVersions       = []string{"2023-06-01", "2023-01-01"}
)

// antFail writes an Anthropic error answer.
type antFail func(status int, typ, msg string)

// antHandler serves one report endpoint to an accepted key.
type antHandler func(w http.ResponseWriter, r *http.Request, key string, q antQuery, fail antFail)

func (s *Server) serveAnthropic(w http.ResponseWriter, r *http.Request) {
	reqID := s.requestID()
	w.Header().Set("request-id", reqID)
	fail := func(status int, typ, msg string) {
		writeJSON(w, status, antErrorEnvelope{Type: "error", Error: antError{Type: typ, Message: msg}, RequestID: reqID})
	}
	serve, me, ok := s.anthropicRoute(r)
	if !ok {
		fail(http.StatusNotFound, "not_found_error", "Not found")
		return
	}
	key := r.Header.Get("x-api-key")
	n := s.count(key, me == nil)
	if !anthropicAccepts(r, key, fail) || !s.slow(r.Context(), key) {
		return
	}
	if me != nil {
		// The organisation and directory endpoints check the key like the
		// others; the fault markers below are for the usage and cost reports.
		me(w, r, key, fail)
		return
	}
	if anthropicFault(w, r, key, n, fail) {
		return
	}
	q, msg := s.parseAnthropicQuery(r)
	if msg != "" {
		fail(http.StatusBadRequest, "invalid_request_error", msg)
		return
	}
	serve(w, r, key, q, fail)
}

// antMe serves one organisation or directory endpoint to an accepted key.
type antMe func(w http.ResponseWriter, r *http.Request, key string, fail antFail)

// anthropicRoute picks the handler of r's path: a report, or an endpoint
// about the organisation (me); ok is false for a path the fake does not
// serve.
func (s *Server) anthropicRoute(r *http.Request) (serve antHandler, me antMe, ok bool) {
	switch r.URL.Path {
	case "/v1/organizations/workspaces", "/v1/organizations/api_keys":
		return nil, func(w http.ResponseWriter, r *http.Request, key string, fail antFail) {
			if strings.Contains(key, "-usageonly") {
				fail(http.StatusForbidden, "permission_error", "This API key does not have permission to use the specified resource.")
				return
			}
			s.anthropicDirectory(w, r, key, r.URL.Path == "/v1/organizations/workspaces", fail)
		}, true
	case "/v1/organizations/usage_report/messages":
		return s.anthropicMessages, nil, true
	case "/v1/organizations/cost_report":
		return s.anthropicCosts, nil, true
	case "/v1/organizations/me":
		return nil, func(w http.ResponseWriter, _ *http.Request, key string, _ antFail) { s.anthropicMe(w, key) }, true
	}
	return nil, nil, false
}

// anthropicAccepts answers a request whose key or version Anthropic would
// refuse, or made with another method than GET, and reports whether the
// request may go on.
func anthropicAccepts(r *http.Request, key string, fail antFail) bool {
	switch {
	case key == "":
		fail(http.StatusUnauthorized, "authentication_error", "x-api-key header is required")
		return false
	case strings.Contains(key, "-revoked"):
		// Deliberately hostile: the whole key comes back in the message.
		fail(http.StatusUnauthorized, "authentication_error", "invalid x-api-key: "+key+" has been revoked")
		return false
	case !strings.HasPrefix(key, "sk-ant-admin"):
		fail(http.StatusUnauthorized, "authentication_error", "invalid x-api-key")
		return false
	}
	switch v := r.Header.Get("anthropic-version"); {
	case v == "":
		fail(http.StatusBadRequest, "invalid_request_error", "anthropic-version: header is required")
		return false
	case !slices.Contains(antVersions, v):
		fail(http.StatusBadRequest, "invalid_request_error", fmt.Sprintf("anthropic-version: %q is not a valid version", v))
		return false
	}
	if r.Method != http.MethodGet {
		fail(http.StatusMethodNotAllowed, "invalid_request_error", "Method not allowed")
		return false
	}
	return true
}

// anthropicFault answers the n-th report request of key as its fault
// markers ask (an error status, or a page that never ends) and reports
// whether it did.
func anthropicFault(w http.ResponseWriter, r *http.Request, key string, n int, fail antFail) bool {
	switch f := failureFor(key, n, 529); f.status {
	case http.StatusInternalServerError:
		fail(http.StatusInternalServerError, "api_error", "Internal server error")
		return true
	case http.StatusTooManyRequests:
		f.setHeaders(w)
		fail(http.StatusTooManyRequests, "rate_limit_error", "Number of requests has exceeded your rate limit. Please try again later.")
		return true
	case 529:
		fail(529, "overloaded_error", "Overloaded")
		return true
	}
	if hasMore, next, ok := pagingFault(key, r.URL.Query().Get("page")); ok {
		page := antPage[*antCostResult]{Data: []antBucket[*antCostResult]{}, HasMore: hasMore, NextPage: &next}
		writePage(w, r, key, page)
		return true
	}
	return false
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

func (s *Server) anthropicMessages(w http.ResponseWriter, r *http.Request, key string, q antQuery, fail antFail) {
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
	f := antMessagesFilter{workspaces: arrayParam(r, "workspace_ids"), models: arrayParam(r, "models"), keys: arrayParam(r, "api_key_ids"),
		tiers: arrayParam(r, "service_tiers"), windows: arrayParam(r, "context_window")}

	spans, next := anthropicBuckets(q, limit)
	page := antPage[*antMessagesResult]{Data: make([]antBucket[*antMessagesResult], 0, len(spans)), HasMore: next != nil, NextPage: next}
	bad := badCount(key)
	for _, b := range spans {
		results := s.anthropicMessagesResults(key, gb, f, b)
		if bad != 0 && len(results) > 0 {
			results[0].OutputTokens = bad
		}
		page.Data = append(page.Data, antBucket[*antMessagesResult]{StartingAt: rfc3339(b.start), EndingAt: rfc3339(b.end), Results: results})
	}
	page.HasMore, page.NextPage = misPage(key, page.HasMore, page.NextPage)
	writePage(w, r, key, page)
}

// antMessagesFilter is the messages report's array filters.
type antMessagesFilter struct{ workspaces, models, keys, tiers, windows []string }

func (f antMessagesFilter) keeps(rec *AnthropicRecord) bool {
	return filter(f.workspaces, rec.WorkspaceID) && filter(f.models, rec.Model) && filter(f.keys, rec.APIKeyID) &&
		filter(f.tiers, rec.ServiceTier) && filter(f.windows, rec.ContextWindow)
}

// anthropicMessagesResults adds up the records in bucket b that pass f by
// the grouping gb, in the order of their dimensions.
func (s *Server) anthropicMessagesResults(key string, gb map[string]bool, f antMessagesFilter, b span) []*antMessagesResult {
	g := newGroups[antMessagesResult]()
	day, ok := s.usageDay(b)
	if !ok {
		return g.results()
	}
	recs := s.anthropicDay(key, day)
	var k []byte
	for i := range recs {
		rec := &recs[i]
		if !f.keeps(rec) {
			continue
		}
		dims := antMessagesDims{
			APIKeyID:      dimOf(gb["api_key_id"], &rec.APIKeyID),
			WorkspaceID:   dimOf(gb["workspace_id"], &rec.WorkspaceID), // default workspace → null
			Model:         dimOf(gb["model"], &rec.Model),
			ServiceTier:   dimOf(gb["service_tier"], &rec.ServiceTier),
			ContextWindow: dimOf(gb["context_window"], &rec.ContextWindow),
		}
		k = append(dims.appendFields(append(k[:0], '{')), '}')
		res, ok := g.find(k)
		if !ok {
			res = &antMessagesResult{antMessagesDims: dims}
			g.add(k, res)
		}
		res.UncachedInputTokens += rec.UncachedInputTokens
		res.CacheCreation.Ephemeral5m += rec.CacheCreation5mTokens
		res.CacheCreation.Ephemeral1h += rec.CacheCreation1hTokens
		res.CacheReadInputTokens += rec.CacheReadInputTokens
		res.OutputTokens += rec.OutputTokens
		res.ServerToolUse.WebSearchRequests += rec.WebSearchRequests
	}
	return g.results()
}

func (s *Server) anthropicCosts(w http.ResponseWriter, r *http.Request, key string, q antQuery, fail antFail) {
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
	page := antPage[*antCostResult]{Data: make([]antBucket[*antCostResult], 0, len(spans)), HasMore: next != nil, NextPage: next}
	for _, b := range spans {
		results := s.anthropicCostResults(key, gb, b)
		for _, res := range results {
			res.Amount = res.sum.String()
		}
		page.Data = append(page.Data, antBucket[*antCostResult]{StartingAt: rfc3339(b.start), EndingAt: rfc3339(b.end), Results: results})
	}
	page.HasMore, page.NextPage = misPage(key, page.HasMore, page.NextPage)
	writePage(w, r, key, page)
}

// anthropicCostResults adds up the cost lines in bucket b by the grouping
// gb, in the order of their dimensions; the amounts are left in sum.
func (s *Server) anthropicCostResults(key string, gb map[string]bool, b span) []*antCostResult {
	g := newGroups[antCostResult]()
	day, ok := s.usageDay(b)
	if !ok {
		return g.results()
	}
	// Everything that describes the line is only reported when grouping
	// by description.
	byDesc := gb["description"]
	recs := s.anthropicDay(key, day)
	var k []byte
	for i := range recs {
		rec := &recs[i]
		for j := range rec.Costs {
			c := &rec.Costs[j]
			dims := antCostDims{
				CostType:    dimOf(byDesc, &c.CostType),
				Description: dimOf(byDesc, &c.Description),
				Model:       dimOf(byDesc, &c.Model),
				TokenType:   dimOf(byDesc, &c.TokenType),
				WorkspaceID: dimOf(gb["workspace_id"], &c.WorkspaceID),
			}
			if c.CostType == "tokens" {
				dims.ServiceTier = dimOf(byDesc, &rec.ServiceTier)
				dims.ContextWindow = dimOf(byDesc, &rec.ContextWindow)
			}
			k = append(dims.appendFields(append(k[:0], '{')), '}')
			res, ok := g.find(k)
			if !ok {
				res = &antCostResult{Currency: "USD", antCostDims: dims}
				g.add(k, res)
			}
			res.add(c.AmountCents)
		}
	}
	return g.results()
}
