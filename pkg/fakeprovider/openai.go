package fakeprovider

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"
)

// OpenAI wire types, field for field as the API reports them.

type oaiErrorEnvelope struct {
	Error oaiError `json:"error"`
}

type oaiError struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

type oaiPage struct {
	Object   string      `json:"object"`
	Data     []oaiBucket `json:"data"`
	HasMore  bool        `json:"has_more"`
	NextPage *string     `json:"next_page"`
}

type oaiBucket struct {
	Object    string `json:"object"`
	StartTime int64  `json:"start_time"`
	EndTime   int64  `json:"end_time"`
	Results   any    `json:"results"`
}

// oaiFamily is one /v1/organization/usage/<family> endpoint. Results are
// built as JSON objects with every dimension in groups (null unless grouped
// by it) and every count in metrics, exactly like the API's result objects.
type oaiFamily struct {
	object  string
	groups  []string          // allowed group_by values, and the dimension fields of every result
	filters map[string]string // array filter parameter → the dimension it filters
	metrics []string
}

var (
	oaiModelGroups  = []string{"project_id", "user_id", "api_key_id", "model"}
	oaiModelFilters = map[string]string{"project_ids": "project_id", "user_ids": "user_id", "api_key_ids": "api_key_id", "models": "model"}
	oaiFamilies     = map[string]oaiFamily{
		"completions": {
			object:  "organization.usage.completions.result",
			groups:  append(slices.Clone(oaiModelGroups), "batch", "service_tier"),
			filters: oaiModelFilters,
			metrics: []string{"input_tokens", "output_tokens", "num_model_requests", "input_cached_tokens",
				"input_cache_write_tokens", "input_uncached_tokens", "input_text_tokens", "output_text_tokens",
				"input_cached_text_tokens", "input_audio_tokens", "input_cached_audio_tokens", "output_audio_tokens",
				"input_image_tokens", "input_cached_image_tokens", "output_image_tokens"},
		},
		"embeddings":  {object: "organization.usage.embeddings.result", groups: oaiModelGroups, filters: oaiModelFilters, metrics: []string{"input_tokens", "num_model_requests"}},
		"moderations": {object: "organization.usage.moderations.result", groups: oaiModelGroups, filters: oaiModelFilters, metrics: []string{"input_tokens", "num_model_requests"}},
		"images": {
			object:  "organization.usage.images.result",
			groups:  append(slices.Clone(oaiModelGroups), "size", "source"),
			filters: withFilters(oaiModelFilters, "sizes", "size", "sources", "source"),
			metrics: []string{"images", "num_model_requests"},
		},
		"audio_speeches":       {object: "organization.usage.audio_speeches.result", groups: oaiModelGroups, filters: oaiModelFilters, metrics: []string{"characters", "num_model_requests"}},
		"audio_transcriptions": {object: "organization.usage.audio_transcriptions.result", groups: oaiModelGroups, filters: oaiModelFilters, metrics: []string{"seconds", "num_model_requests"}},
		"vector_stores": {
			object: "organization.usage.vector_stores.result", groups: []string{"project_id"},
			filters: map[string]string{"project_ids": "project_id"}, metrics: []string{"usage_bytes"},
		},
		"code_interpreter_sessions": {
			object: "organization.usage.code_interpreter_sessions.result", groups: []string{"project_id"},
			filters: map[string]string{"project_ids": "project_id"}, metrics: []string{"num_sessions"},
		},
		"file_search_calls": {
			object:  "organization.usage.file_searches.result", // sic: the object is not named after the path
			groups:  []string{"project_id", "user_id", "api_key_id", "vector_store_id"},
			filters: map[string]string{"project_ids": "project_id", "user_ids": "user_id", "api_key_ids": "api_key_id", "vector_store_ids": "vector_store_id"},
			metrics: []string{"num_requests"},
		},
		"web_search_calls": {
			object:  "organization.usage.web_searches.result",
			groups:  append(slices.Clone(oaiModelGroups), "context_level"),
			filters: withFilters(oaiModelFilters, "context_levels", "context_level"),
			metrics: []string{"num_model_requests", "num_requests"},
		},
	}
)

func withFilters(base map[string]string, pairs ...string) map[string]string {
	out := maps.Clone(base)
	for i := 0; i+1 < len(pairs); i += 2 {
		out[pairs[i]] = pairs[i+1]
	}
	return out
}

// dim is the record's value of an OpenAI grouping dimension ("" for none;
// the fake's usage all comes from API keys, so user_id is always "").
func (r OpenAIRecord) dim(name string) string {
	switch name {
	case "project_id":
		return r.ProjectID
	case "api_key_id":
		return r.APIKeyID
	case "model":
		return r.Model
	case "service_tier":
		return r.ServiceTier
	case "size":
		return r.ImageSize
	case "source":
		return r.ImageSource
	case "context_level":
		return r.ContextLevel
	case "vector_store_id":
		return r.VectorStoreID
	}
	return ""
}

// metric is the record's value of an OpenAI result count. The fake's chat
// usage is all text, so the audio and image splits are 0.
func (r OpenAIRecord) metric(name string) int64 {
	switch name {
	case "input_tokens", "input_text_tokens":
		return r.InputTokens
	case "output_tokens", "output_text_tokens":
		return r.OutputTokens
	case "num_model_requests":
		return r.Requests
	case "input_cached_tokens", "input_cached_text_tokens":
		return r.InputCachedTokens
	case "input_cache_write_tokens":
		return r.InputCacheWriteTokens
	case "input_uncached_tokens":
		return r.InputUncachedTokens()
	case "images":
		return r.Images
	case "characters":
		return r.Characters
	case "seconds":
		return r.Seconds
	case "usage_bytes":
		return r.UsageBytes
	case "num_sessions":
		return r.Sessions
	case "num_requests":
		return r.ToolCalls
	}
	return 0
}

type oaiCostDims struct {
	LineItem  *string `json:"line_item"`
	ProjectID *string `json:"project_id"`
	APIKeyID  *string `json:"api_key_id"`
}

type oaiCostResult struct {
	Object string `json:"object"`
	Amount struct {
		Value    json.RawMessage `json:"value"`
		Currency string          `json:"currency"`
	} `json:"amount"`
	oaiCostDims
	Quantity     *int64  `json:"quantity"`
	QuantityUnit *string `json:"quantity_unit"`

	sum decimal.Decimal
}

var oaiCostGroups = []string{"project_id", "line_item", "api_key_id"}

func (s *Server) serveOpenAI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("x-request-id", s.requestID())

	var serve func(http.ResponseWriter, *http.Request, string, oaiQuery)
	var directory func(w http.ResponseWriter, r *http.Request, key string)
	keysOf, underProjects := strings.CutPrefix(r.URL.Path, "/v1/organization/projects/")
	keysOf, isKeys := strings.CutSuffix(keysOf, "/api_keys")
	isKeys = isKeys && underProjects
	switch family, ok := strings.CutPrefix(r.URL.Path, "/v1/organization/usage/"); {
	case r.URL.Path == "/v1/organization/costs":
		serve = s.openAICosts
	case r.URL.Path == "/v1/organization/projects":
		directory = s.openAIProjects
	case r.URL.Path == "/v1/organization/admin_api_keys":
		directory = func(w http.ResponseWriter, r *http.Request, key string) { s.openAIKeys(w, r, key, "", true) }
	case isKeys && keysOf != "" && !strings.Contains(keysOf, "/"):
		directory = func(w http.ResponseWriter, r *http.Request, key string) { s.openAIKeys(w, r, key, keysOf, false) }
	case ok && oaiFamilies[family].object != "":
		serve = func(w http.ResponseWriter, r *http.Request, key string, q oaiQuery) {
			s.openAIUsage(w, r, key, family, q)
		}
	default:
		oaiFail(w, http.StatusNotFound, "invalid_request_error", "",
			fmt.Sprintf("Invalid URL (%s %s)", r.Method, r.URL.Path), "")
		return
	}

	token, hasBearer := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	n := s.count(token, directory == nil)
	switch {
	case !hasBearer || token == "":
		oaiFail(w, http.StatusUnauthorized, "invalid_request_error", "",
			"You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).", "")
		return
	case strings.Contains(token, "-revoked"):
		// Deliberately hostile: the whole key comes back in the message, so
		// tests can prove the client never surfaces error bodies.
		oaiFail(w, http.StatusUnauthorized, "invalid_request_error", "",
			"Incorrect API key provided: "+token+". You can find your API key at https://platform.openai.com/account/api-keys.", "invalid_api_key")
		return
	case strings.HasPrefix(token, "sk-proj-"):
		oaiFail(w, http.StatusForbidden, "invalid_request_error", "",
			"You have insufficient permissions for this operation. Missing scopes: api.usage.read. Check that you have the correct role in your organization (Reader, Writer, Owner) and project (Member, Owner), and if you're using a restricted API key, that it has the necessary scopes.", "")
		return
	case !strings.HasPrefix(token, "sk-admin-"):
		oaiFail(w, http.StatusUnauthorized, "invalid_request_error", "",
			"Incorrect API key provided: "+maskKey(token)+". You can find your API key at https://platform.openai.com/account/api-keys.", "invalid_api_key")
		return
	}
	if r.Method != http.MethodGet {
		oaiFail(w, http.StatusMethodNotAllowed, "invalid_request_error", "",
			fmt.Sprintf("Invalid method for URL (%s %s)", r.Method, r.URL.Path), "")
		return
	}
	if !s.slow(r.Context(), token) {
		return
	}
	if directory != nil {
		// The directory endpoints check the key like the others; the
		// fault markers below are for the usage and cost reports.
		if strings.Contains(token, "-usageonly") {
			oaiFail(w, http.StatusForbidden, "invalid_request_error", "",
				"You have insufficient permissions for this operation. Missing scopes: api.management.read.", "")
			return
		}
		directory(w, r, token)
		return
	}
	switch f := failureFor(token, n, http.StatusServiceUnavailable); f.status {
	case http.StatusInternalServerError:
		oaiFail(w, http.StatusInternalServerError, "server_error", "",
			"The server had an error while processing your request. Sorry about that!", "")
		return
	case http.StatusTooManyRequests:
		f.setHeaders(w)
		oaiFail(w, http.StatusTooManyRequests, "requests", "",
			"Rate limit reached for requests on the organization usage API. Please try again later.", "rate_limit_exceeded")
		return
	case http.StatusServiceUnavailable:
		oaiFail(w, http.StatusServiceUnavailable, "server_error", "",
			"The engine is currently overloaded, please try again later.", "")
		return
	}
	if hasMore, next, ok := pagingFault(token, r.URL.Query().Get("page")); ok {
		writeData(w, r, token, oaiPage{Object: "page", Data: []oaiBucket{}, HasMore: hasMore, NextPage: &next})
		return
	}

	q, ok := s.parseOpenAIQuery(w, r)
	if !ok {
		return
	}
	serve(w, r, token, q)
}

// maskKey mimics OpenAI's partial echo of an unknown key.
func maskKey(k string) string {
	if len(k) <= 12 {
		return strings.Repeat("*", len(k))
	}
	return k[:3] + strings.Repeat("*", len(k)-7) + k[len(k)-4:]
}

func oaiFail(w http.ResponseWriter, status int, typ, param, msg, code string) {
	e := oaiError{Message: msg, Type: typ}
	if param != "" {
		e.Param = &param
	}
	if code != "" {
		e.Code = &code
	}
	writeJSON(w, status, oaiErrorEnvelope{Error: e})
}

// oaiQuery is the validated shared part of a usage or costs request.
type oaiQuery struct {
	start, end time.Time
	width      time.Duration
	widthName  string
	limitRaw   string
	from       time.Time // start, or where the page cursor resumes
}

func (s *Server) parseOpenAIQuery(w http.ResponseWriter, r *http.Request) (oaiQuery, bool) {
	q := r.URL.Query()
	bad := func(param, msg string) (oaiQuery, bool) {
		oaiFail(w, http.StatusBadRequest, "invalid_request_error", param, msg, "")
		return oaiQuery{}, false
	}
	raw := q.Get("start_time")
	if raw == "" {
		oaiFail(w, http.StatusBadRequest, "invalid_request_error", "start_time",
			"Missing required parameter: 'start_time'.", "missing_required_parameter")
		return oaiQuery{}, false
	}
	st, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || st < 0 {
		return bad("start_time", "Invalid value for 'start_time': expected a Unix timestamp in seconds.")
	}
	out := oaiQuery{start: time.Unix(st, 0).UTC(), end: s.now(), widthName: "1d", limitRaw: q.Get("limit")}
	if raw := q.Get("end_time"); raw != "" {
		et, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || et < 0 {
			return bad("end_time", "Invalid value for 'end_time': expected a Unix timestamp in seconds.")
		}
		out.end = time.Unix(et, 0).UTC()
	}
	if !out.end.After(out.start) {
		return bad("end_time", "Invalid value for 'end_time': must be after 'start_time'.")
	}
	if v := q.Get("bucket_width"); v != "" {
		out.widthName = v
	}
	width, ok := widths[out.widthName]
	if !ok {
		return bad("bucket_width", "Invalid value for 'bucket_width': must be one of 1m, 1h, 1d.")
	}
	out.width = width
	out.from = out.start
	if p := q.Get("page"); p != "" {
		t, ok := decodeOpenAIPage(p)
		if !ok || t.Before(out.start) || !t.Before(out.end) || t.Truncate(width) != t {
			return bad("page", "Invalid value for 'page': the cursor does not belong to this query.")
		}
		out.from = t
	}
	return out, true
}

// OpenAI cursors look like page_AAAAAGdG…: base64 of the next bucket's start
// as an 8-byte big-endian Unix time.
func encodeOpenAIPage(t time.Time) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(t.Unix()))
	return "page_" + base64.StdEncoding.EncodeToString(b[:])
}

func decodeOpenAIPage(p string) (time.Time, bool) {
	raw, ok := strings.CutPrefix(p, "page_")
	if !ok {
		return time.Time{}, false
	}
	b, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(b) != 8 {
		return time.Time{}, false
	}
	return time.Unix(int64(binary.BigEndian.Uint64(b)), 0).UTC(), true
}

// openAIBuckets returns up to limit buckets from q.from: the first may start
// off the width grid and runs to the next boundary, the rest are aligned, and
// the last stops at end.
func openAIBuckets(q oaiQuery, limit int) ([]span, *string) {
	var out []span
	s := q.from
	for len(out) < limit && s.Before(q.end) {
		e := s.Truncate(q.width).Add(q.width)
		if e.After(q.end) {
			e = q.end
		}
		out = append(out, span{s, e})
		s = e
	}
	if !s.Before(q.end) {
		return out, nil
	}
	next := encodeOpenAIPage(s)
	return out, &next
}

// oaiResult is one usage result object under construction.
type oaiResult map[string]any

func (s *Server) openAIUsage(w http.ResponseWriter, r *http.Request, key, family string, q oaiQuery) {
	fam := oaiFamilies[family]
	limit, msg := parseLimit(q.limitRaw, usageLimits[q.widthName])
	if msg != "" {
		oaiFail(w, http.StatusBadRequest, "invalid_request_error", "limit", msg, "")
		return
	}
	gb, msg := groupSet(arrayParam(r, "group_by"), fam.groups)
	if msg != "" {
		oaiFail(w, http.StatusBadRequest, "invalid_request_error", "group_by", msg, "")
		return
	}
	filters := map[string][]string{}
	for param, dimension := range fam.filters {
		if v := arrayParam(r, param); len(v) > 0 {
			filters[dimension] = v
		}
	}
	var batch *bool
	if v := r.URL.Query().Get("batch"); v != "" && family == "completions" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			oaiFail(w, http.StatusBadRequest, "invalid_request_error", "batch", "Invalid value for 'batch': expected a boolean.", "")
			return
		}
		batch = &b
	}

	spans, next := openAIBuckets(q, limit)
	page := oaiPage{Object: "page", Data: []oaiBucket{}, HasMore: next != nil, NextPage: next}
	for _, b := range spans {
		g := map[string]oaiResult{}
		var order []string
		if day, ok := s.usageDay(b); ok {
			for _, rec := range OpenAIDayAt(key, day, s.epochFor(key, day)) {
				if rec.Family != family || (batch != nil && *batch != rec.Batch) {
					continue
				}
				keep := true
				for dimension, allowed := range filters {
					keep = keep && slices.Contains(allowed, rec.dim(dimension))
				}
				if !keep {
					continue
				}
				dims := oaiResult{}
				for _, d := range fam.groups {
					switch {
					case d == "batch" && gb[d]:
						dims[d] = rec.Batch
					case d == "batch":
						dims[d] = nil
					default:
						dims[d] = dim(gb[d], rec.dim(d))
					}
				}
				k, _ := json.Marshal(dims)
				res, ok := g[string(k)]
				if !ok {
					res = dims
					res["object"] = fam.object
					for _, m := range fam.metrics {
						res[m] = int64(0)
					}
					g[string(k)] = res
					order = append(order, string(k))
				}
				for _, m := range fam.metrics {
					res[m] = res[m].(int64) + rec.metric(m)
				}
			}
		}
		slices.Sort(order)
		results := make([]oaiResult, 0, len(order))
		for _, k := range order {
			results = append(results, g[k])
		}
		if bad := badCount(key); bad != 0 && len(results) > 0 {
			results[0][fam.metrics[0]] = bad
		}
		page.Data = append(page.Data, oaiBucket{Object: "bucket", StartTime: b.start.Unix(), EndTime: b.end.Unix(), Results: results})
	}
	page.HasMore, page.NextPage = misPage(key, page.HasMore, page.NextPage)
	writeData(w, r, key, page)
}

func (s *Server) openAICosts(w http.ResponseWriter, r *http.Request, key string, q oaiQuery) {
	if q.widthName != "1d" {
		oaiFail(w, http.StatusBadRequest, "invalid_request_error", "bucket_width", "Invalid value for 'bucket_width': costs only support '1d'.", "")
		return
	}
	limit, msg := parseLimit(q.limitRaw, limitRule{def: 7, max: 180})
	if msg != "" {
		oaiFail(w, http.StatusBadRequest, "invalid_request_error", "limit", msg, "")
		return
	}
	gb, msg := groupSet(arrayParam(r, "group_by"), oaiCostGroups)
	if msg != "" {
		oaiFail(w, http.StatusBadRequest, "invalid_request_error", "group_by", msg, "")
		return
	}
	projects, keys := arrayParam(r, "project_ids"), arrayParam(r, "api_key_ids")
	asString := strings.Contains(key, "-strings")

	spans, next := openAIBuckets(q, limit)
	page := oaiPage{Object: "page", Data: []oaiBucket{}, HasMore: next != nil, NextPage: next}
	for _, b := range spans {
		g := newGroups[oaiCostResult]()
		if day, ok := s.usageDay(b); ok {
			for _, rec := range OpenAIDayAt(key, day, s.epochFor(key, day)) {
				for _, c := range rec.Costs {
					if !filter(projects, c.ProjectID) || !filter(keys, c.APIKeyID) {
						continue
					}
					dims := oaiCostDims{
						LineItem:  dim(gb["line_item"], c.LineItem),
						ProjectID: dim(gb["project_id"], c.ProjectID),
						APIKeyID:  dim(gb["api_key_id"], c.APIKeyID),
					}
					res := g.get(dims, func() *oaiCostResult {
						res := &oaiCostResult{Object: "organization.costs.result", oaiCostDims: dims}
						res.Amount.Currency = "usd"
						if gb["line_item"] {
							res.Quantity, res.QuantityUnit = new(int64), new(c.Unit)
						}
						return res
					})
					res.sum = res.sum.Add(c.Amount)
					if res.Quantity != nil {
						*res.Quantity += c.Quantity
					}
				}
			}
		}
		results := g.results()
		for _, res := range results {
			// Printed straight from the decimal, so no float rounding ever
			// touches the amount on the wire.
			res.Amount.Value = json.RawMessage(res.sum.String())
			if asString {
				res.Amount.Value, _ = json.Marshal(res.sum.String())
			}
		}
		page.Data = append(page.Data, oaiBucket{Object: "bucket", StartTime: b.start.Unix(), EndTime: b.end.Unix(), Results: results})
	}
	page.HasMore, page.NextPage = misPage(key, page.HasMore, page.NextPage)
	writeData(w, r, key, page)
}
