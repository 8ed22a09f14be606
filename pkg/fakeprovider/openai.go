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

type oaiPage[R jsonAppender] struct {
	Object   string         `json:"object"`
	Data     []oaiBucket[R] `json:"data"`
	HasMore  bool           `json:"has_more"`
	NextPage *string        `json:"next_page"`
}

func (p oaiPage[R]) appendJSON(b []byte) []byte {
	b = appendString(appendKey(append(b, '{'), "object"), p.Object)
	b = append(appendKey(b, "data"), '[')
	for i, bk := range p.Data {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(appendKey(append(b, '{'), "object"), bk.Object)
		b = appendInt(b, "start_time", bk.StartTime)
		b = appendInt(b, "end_time", bk.EndTime)
		b = append(appendResults(appendKey(b, "results"), bk.Results), '}')
	}
	b = appendBool(appendKey(append(b, ']'), "has_more"), p.HasMore)
	return append(appendNullable(appendKey(b, "next_page"), p.NextPage), '}')
}

type oaiBucket[R jsonAppender] struct {
	Object    string `json:"object"`
	StartTime int64  `json:"start_time"`
	EndTime   int64  `json:"end_time"`
	Results   []R    `json:"results"`
}

// oaiFamily is one /v1/organization/usage/<family> endpoint. Its results
// carry every dimension in groups (null unless grouped by it) and every
// count in metrics, exactly like the API's result objects.
type oaiFamily struct {
	name    string
	object  string
	groups  []string          // allowed group_by values, and the dimension fields of every result
	filters map[string]string // array filter parameter → the dimension it filters
	metrics []string
	// fields are the result's fields in the order they are written
	// (sorted by name, as the API's result objects once came out of a
	// map), and dims the dimension fields among them.
	fields, dims []oaiField
}

// oaiField is one field of a usage result: the object name, the index of a
// dimension in groups, or the index of a count in metrics.
type oaiField struct {
	name  string
	kind  oaiFieldKind
	index int
}

type oaiFieldKind int

const (
	fieldObject oaiFieldKind = iota
	fieldDim
	fieldBatch // the completions' batch dimension, a boolean
	fieldMetric
)

func newOAIFamily(name, object string, groups []string, filters map[string]string, metrics ...string) *oaiFamily {
	f := &oaiFamily{name: name, object: object, groups: groups, filters: filters, metrics: metrics}
	f.fields = append(f.fields, oaiField{name: "object", kind: fieldObject})
	for i, g := range groups {
		kind := fieldDim
		if g == "batch" {
			kind = fieldBatch
		}
		f.fields = append(f.fields, oaiField{name: g, kind: kind, index: i})
	}
	for i, m := range metrics {
		f.fields = append(f.fields, oaiField{name: m, kind: fieldMetric, index: i})
	}
	slices.SortFunc(f.fields, func(a, b oaiField) int { return strings.Compare(a.name, b.name) })
	for _, fd := range f.fields {
		if fd.kind == fieldDim || fd.kind == fieldBatch {
			f.dims = append(f.dims, fd)
		}
	}
	return f
}

var (
	oaiModelGroups  = []string{"project_id", "user_id", "api_key_id", "model"}
	oaiModelFilters = map[string]string{"project_ids": "project_id", "user_ids": "user_id", "api_key_ids": "api_key_id", "models": "model"}
	oaiFamilies     = familiesByName(
		newOAIFamily("completions", "organization.usage.completions.result",
			append(slices.Clone(oaiModelGroups), "batch", "service_tier"), oaiModelFilters,
			"input_tokens", "output_tokens", "num_model_requests", "input_cached_tokens",
			"input_cache_write_tokens", "input_uncached_tokens", "input_text_tokens", "output_text_tokens",
			"input_cached_text_tokens", "input_audio_tokens", "input_cached_audio_tokens", "output_audio_tokens",
			"input_image_tokens", "input_cached_image_tokens", "output_image_tokens"),
		newOAIFamily("embeddings", "organization.usage.embeddings.result", oaiModelGroups, oaiModelFilters, "input_tokens", "num_model_requests"),
		newOAIFamily("moderations", "organization.usage.moderations.result", oaiModelGroups, oaiModelFilters, "input_tokens", "num_model_requests"),
		newOAIFamily("images", "organization.usage.images.result", append(slices.Clone(oaiModelGroups), "size", "source"),
			withFilters(oaiModelFilters, "sizes", "size", "sources", "source"), "images", "num_model_requests"),
		newOAIFamily("audio_speeches", "organization.usage.audio_speeches.result", oaiModelGroups, oaiModelFilters, "characters", "num_model_requests"),
		newOAIFamily("audio_transcriptions", "organization.usage.audio_transcriptions.result", oaiModelGroups, oaiModelFilters, "seconds", "num_model_requests"),
		newOAIFamily("vector_stores", "organization.usage.vector_stores.result", []string{"project_id"},
			map[string]string{"project_ids": "project_id"}, "usage_bytes"),
		newOAIFamily("code_interpreter_sessions", "organization.usage.code_interpreter_sessions.result", []string{"project_id"},
			map[string]string{"project_ids": "project_id"}, "num_sessions"),
		newOAIFamily("file_search_calls", "organization.usage.file_searches.result", // sic: the object is not named after the path
			[]string{"project_id", "user_id", "api_key_id", "vector_store_id"},
			map[string]string{"project_ids": "project_id", "user_ids": "user_id", "api_key_ids": "api_key_id", "vector_store_ids": "vector_store_id"},
			"num_requests"),
		newOAIFamily("web_search_calls", "organization.usage.web_searches.result", append(slices.Clone(oaiModelGroups), "context_level"),
			withFilters(oaiModelFilters, "context_levels", "context_level"), "num_model_requests", "num_requests"),
	)
)

func familiesByName(fams ...*oaiFamily) map[string]*oaiFamily {
	out := make(map[string]*oaiFamily, len(fams))
	for _, f := range fams {
		out[f.name] = f
	}
	return out
}

func withFilters(base map[string]string, pairs ...string) map[string]string {
	out := maps.Clone(base)
	for i := 0; i+1 < len(pairs); i += 2 {
		out[pairs[i]] = pairs[i+1]
	}
	return out
}

// dim is the record's value of an OpenAI grouping dimension ("" for none;
// the fake's usage all comes from API keys, so user_id is always "").
func (r *OpenAIRecord) dim(name string) string {
	if p := r.field(name); p != nil {
		return *p
	}
	return ""
}

// field is the record's field that holds a grouping dimension, nil for
// user_id and unknown names.
func (r *OpenAIRecord) field(name string) *string {
	switch name {
	case "project_id":
		return &r.ProjectID
	case "api_key_id":
		return &r.APIKeyID
	case "model":
		return &r.Model
	case "service_tier":
		return &r.ServiceTier
	case "size":
		return &r.ImageSize
	case "source":
		return &r.ImageSource
	case "context_level":
		return &r.ContextLevel
	case "vector_store_id":
		return &r.VectorStoreID
	}
	return nil
}

// metric is the record's value of an OpenAI result count. The fake's chat
// usage is all text, so the audio and image splits are 0.
func (r *OpenAIRecord) metric(name string) int64 {
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

// appendFields appends the dimensions' fields, without braces.
func (d oaiCostDims) appendFields(b []byte) []byte {
	b = appendNullable(appendKey(b, "line_item"), d.LineItem)
	b = appendNullable(appendKey(b, "project_id"), d.ProjectID)
	return appendNullable(appendKey(b, "api_key_id"), d.APIKeyID)
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

	sum   decimal.Decimal
	lines int // cost lines added into sum
}

func (r *oaiCostResult) appendJSON(b []byte) []byte {
	b = appendString(appendKey(append(b, '{'), "object"), r.Object)
	b = append(appendKey(append(appendKey(b, "amount"), '{'), "value"), r.Amount.Value...)
	b = append(appendString(appendKey(b, "currency"), r.Amount.Currency), '}')
	b = r.oaiCostDims.appendFields(b)
	if r.Quantity == nil {
		b = append(appendKey(b, "quantity"), "null"...)
	} else {
		b = appendInt(b, "quantity", *r.Quantity)
	}
	return append(appendNullable(appendKey(b, "quantity_unit"), r.QuantityUnit), '}')
}

// add adds amount to the result's sum.
func (r *oaiCostResult) add(amount decimal.Decimal) {
	if r.lines == 0 {
		r.sum = amount // shared, never changed in place: decimals are values
	} else {
		r.sum = r.sum.Add(amount)
	}
	r.lines++
}

var oaiCostGroups = []string{"project_id", "line_item", "api_key_id"}

// oaiHandler serves one data endpoint (usage or costs) to an accepted key.
type oaiHandler func(w http.ResponseWriter, r *http.Request, key string, q oaiQuery)

// oaiDirectory serves one directory endpoint to an accepted key.
type oaiDirectory func(w http.ResponseWriter, r *http.Request, key string)

func (s *Server) serveOpenAI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("x-request-id", s.requestID())
	serve, directory, ok := s.openAIRoute(r)
	if !ok {
		oaiFail(w, http.StatusNotFound, "invalid_request_error", "",
			fmt.Sprintf("Invalid URL (%s %s)", r.Method, r.URL.Path), "")
		return
	}
	token, hasBearer := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	n := s.count(token, directory == nil)
	if !openAIAccepts(w, r, token, hasBearer) || !s.slow(r.Context(), token) {
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
	if openAIFault(w, r, token, n) {
		return
	}
	if q, ok := s.parseOpenAIQuery(w, r); ok {
		serve(w, r, token, q)
	}
}

// openAIRoute picks the handler of r's path: a data endpoint or a
// directory one; ok is false for a path the fake does not serve.
func (s *Server) openAIRoute(r *http.Request) (serve oaiHandler, directory oaiDirectory, ok bool) {
	keysOf, underProjects := strings.CutPrefix(r.URL.Path, "/v1/organization/projects/")
	keysOf, isKeys := strings.CutSuffix(keysOf, "/api_keys")
	isKeys = isKeys && underProjects
	switch family, isUsage := strings.CutPrefix(r.URL.Path, "/v1/organization/usage/"); {
	case r.URL.Path == "/v1/organization/costs":
		return s.openAICosts, nil, true
	case r.URL.Path == "/v1/organization/projects":
		return nil, s.openAIProjects, true
	case r.URL.Path == "/v1/organization/admin_api_keys":
		return nil, func(w http.ResponseWriter, r *http.Request, key string) { s.openAIKeys(w, r, key, "", true) }, true
	case isKeys && keysOf != "" && !strings.Contains(keysOf, "/"):
		return nil, func(w http.ResponseWriter, r *http.Request, key string) { s.openAIKeys(w, r, key, keysOf, false) }, true
	case isUsage && oaiFamilies[family] != nil:
		fam := oaiFamilies[family]
		return func(w http.ResponseWriter, r *http.Request, key string, q oaiQuery) { s.openAIUsage(w, r, key, fam, q) }, nil, true
	}
	return nil, nil, false
}

// openAIAccepts answers a request whose key OpenAI would refuse, or made
// with another method than GET, and reports whether the request may go on.
func openAIAccepts(w http.ResponseWriter, r *http.Request, token string, hasBearer bool) bool {
	switch {
	case !hasBearer || token == "":
		oaiFail(w, http.StatusUnauthorized, "invalid_request_error", "",
			"You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).", "")
		return false
	case strings.Contains(token, "-revoked"):
		// Deliberately hostile: the whole key comes back in the message, so
		// tests can prove the client never surfaces error bodies.
		oaiFail(w, http.StatusUnauthorized, "invalid_request_error", "",
			"Incorrect API key provided: "+token+". You can find your API key at https://platform.openai.com/account/api-keys.", "invalid_api_key")
		return false
	case strings.HasPrefix(token, "sk-proj-"):
		oaiFail(w, http.StatusForbidden, "invalid_request_error", "",
			"You have insufficient permissions for this operation. Missing scopes: api.usage.read. Check that you have the correct role in your organization (Reader, Writer, Owner) and project (Member, Owner), and if you're using a restricted API key, that it has the necessary scopes.", "")
		return false
	case !strings.HasPrefix(token, "sk-admin-"):
		oaiFail(w, http.StatusUnauthorized, "invalid_request_error", "",
			"Incorrect API key provided: "+maskKey(token)+". You can find your API key at https://platform.openai.com/account/api-keys.", "invalid_api_key")
		return false
	case r.Method != http.MethodGet:
		oaiFail(w, http.StatusMethodNotAllowed, "invalid_request_error", "",
			fmt.Sprintf("Invalid method for URL (%s %s)", r.Method, r.URL.Path), "")
		return false
	}
	return true
}

// openAIFault answers the n-th data request of token as its fault markers
// ask (an error status, or a page that never ends) and reports whether it
// did.
func openAIFault(w http.ResponseWriter, r *http.Request, token string, n int) bool {
	switch f := failureFor(token, n, http.StatusServiceUnavailable); f.status {
	case http.StatusInternalServerError:
		oaiFail(w, http.StatusInternalServerError, "server_error", "",
			"The server had an error while processing your request. Sorry about that!", "")
		return true
	case http.StatusTooManyRequests:
		f.setHeaders(w)
		oaiFail(w, http.StatusTooManyRequests, "requests", "",
			"Rate limit reached for requests on the organization usage API. Please try again later.", "rate_limit_exceeded")
		return true
	case http.StatusServiceUnavailable:
		oaiFail(w, http.StatusServiceUnavailable, "server_error", "",
			"The engine is currently overloaded, please try again later.", "")
		return true
	}
	if hasMore, next, ok := pagingFault(token, r.URL.Query().Get("page")); ok {
		page := oaiPage[*oaiCostResult]{Object: "page", Data: []oaiBucket[*oaiCostResult]{}, HasMore: hasMore, NextPage: &next}
		writePage(w, r, token, page)
		return true
	}
	return false
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

// oaiUsageResult is one usage result of fam: its dimensions (nil when not
// grouped by or unset: JSON null) and counts, in fam.groups and fam.metrics
// order.
type oaiUsageResult struct {
	fam     *oaiFamily
	dims    []*string
	batch   *bool // completions only
	metrics []int64
}

func (r *oaiUsageResult) appendJSON(b []byte) []byte {
	return append(r.appendFields(append(b, '{'), r.fam.fields), '}')
}

// appendFields appends fields of r (fam.fields or fam.dims).
func (r *oaiUsageResult) appendFields(b []byte, fields []oaiField) []byte {
	for _, f := range fields {
		b = appendKey(b, f.name)
		switch f.kind {
		case fieldObject:
			b = appendString(b, r.fam.object)
		case fieldDim:
			b = appendNullable(b, r.dims[f.index])
		case fieldBatch:
			if r.batch == nil {
				b = append(b, "null"...)
			} else {
				b = appendBool(b, *r.batch)
			}
		case fieldMetric:
			b = strconv.AppendInt(b, r.metrics[f.index], 10)
		}
	}
	return b
}

// groupKey is the key results are grouped and ordered by: the JSON object
// of the dimensions alone.
func (r *oaiUsageResult) groupKey(b []byte) []byte {
	return append(r.appendFields(append(b, '{'), r.fam.dims), '}')
}

// oaiUsageRequest is what a usage request asks for beyond oaiQuery.
type oaiUsageRequest struct {
	limit   int
	groupBy map[string]bool
	filters map[string][]string // dimension → the values it may have
	batch   *bool               // completions' batch filter
}

// parseOpenAIUsage reads the usage-specific parameters, answering 400
// when one is wrong.
func parseOpenAIUsage(w http.ResponseWriter, r *http.Request, fam *oaiFamily, q oaiQuery) (oaiUsageRequest, bool) {
	var req oaiUsageRequest
	var msg string
	if req.limit, msg = parseLimit(q.limitRaw, usageLimits[q.widthName]); msg != "" {
		oaiFail(w, http.StatusBadRequest, "invalid_request_error", "limit", msg, "")
		return req, false
	}
	if req.groupBy, msg = groupSet(arrayParam(r, "group_by"), fam.groups); msg != "" {
		oaiFail(w, http.StatusBadRequest, "invalid_request_error", "group_by", msg, "")
		return req, false
	}
	req.filters = map[string][]string{}
	for param, dimension := range fam.filters {
		if v := arrayParam(r, param); len(v) > 0 {
			req.filters[dimension] = v
		}
	}
	if v := r.URL.Query().Get("batch"); v != "" && fam.name == "completions" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			oaiFail(w, http.StatusBadRequest, "invalid_request_error", "batch", "Invalid value for 'batch': expected a boolean.", "")
			return req, false
		}
		req.batch = &b
	}
	return req, true
}

// keeps reports whether rec passes the request's filters.
func (req oaiUsageRequest) keeps(rec *OpenAIRecord) bool {
	if req.batch != nil && *req.batch != rec.Batch {
		return false
	}
	for dimension, allowed := range req.filters {
		if !slices.Contains(allowed, rec.dim(dimension)) {
			return false
		}
	}
	return true
}

func (s *Server) openAIUsage(w http.ResponseWriter, r *http.Request, key string, fam *oaiFamily, q oaiQuery) {
	req, ok := parseOpenAIUsage(w, r, fam, q)
	if !ok {
		return
	}
	spans, next := openAIBuckets(q, req.limit)
	page := oaiPage[*oaiUsageResult]{Object: "page", Data: make([]oaiBucket[*oaiUsageResult], 0, len(spans)), HasMore: next != nil, NextPage: next}
	bad := badCount(key)
	for _, b := range spans {
		results := s.openAIUsageResults(key, fam, req, b)
		if bad != 0 && len(results) > 0 {
			results[0].metrics[0] = bad
		}
		page.Data = append(page.Data, oaiBucket[*oaiUsageResult]{Object: "bucket", StartTime: b.start.Unix(), EndTime: b.end.Unix(), Results: results})
	}
	page.HasMore, page.NextPage = misPage(key, page.HasMore, page.NextPage)
	writePage(w, r, key, page)
}

// openAIUsageResults adds up the records of fam in bucket b by the
// request's grouping, in the order of their dimensions. The results point
// into the day's (cached, read-only) records for their dimensions.
func (s *Server) openAIUsageResults(key string, fam *oaiFamily, req oaiUsageRequest, b span) []*oaiUsageResult {
	g := newGroups[oaiUsageResult]()
	day, ok := s.usageDay(b)
	if !ok {
		return g.results()
	}
	recs := s.openAIDay(key, day)
	dims := &oaiUsageResult{fam: fam, dims: make([]*string, len(fam.groups))}
	var k []byte
	for i := range recs {
		rec := &recs[i]
		if rec.Family != fam.name || !req.keeps(rec) {
			continue
		}
		dims.batch = nil
		for j, d := range fam.groups {
			switch {
			case d == "batch" && req.groupBy[d]:
				dims.batch = &rec.Batch
			case d != "batch":
				dims.dims[j] = dimOf(req.groupBy[d], rec.field(d))
			}
		}
		k = dims.groupKey(k[:0])
		res, ok := g.find(k)
		if !ok {
			res = &oaiUsageResult{fam: fam, dims: slices.Clone(dims.dims), batch: dims.batch, metrics: make([]int64, len(fam.metrics))}
			g.add(k, res)
		}
		for j, m := range fam.metrics {
			res.metrics[j] += rec.metric(m)
		}
	}
	return g.results()
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
	page := oaiPage[*oaiCostResult]{Object: "page", Data: make([]oaiBucket[*oaiCostResult], 0, len(spans)), HasMore: next != nil, NextPage: next}
	for _, b := range spans {
		results := s.openAICostResults(key, gb, projects, keys, b)
		for _, res := range results {
			// Printed straight from the decimal, so no float rounding ever
			// touches the amount on the wire.
			res.Amount.Value = json.RawMessage(res.sum.String())
			if asString {
				res.Amount.Value = appendString(nil, res.sum.String())
			}
		}
		page.Data = append(page.Data, oaiBucket[*oaiCostResult]{Object: "bucket", StartTime: b.start.Unix(), EndTime: b.end.Unix(), Results: results})
	}
	page.HasMore, page.NextPage = misPage(key, page.HasMore, page.NextPage)
	writePage(w, r, key, page)
}

// openAICostResults adds up the cost lines in bucket b that pass the
// project and key filters, by the grouping gb, in the order of their
// dimensions; the amounts are left in sum.
func (s *Server) openAICostResults(key string, gb map[string]bool, projects, keys []string, b span) []*oaiCostResult {
	g := newGroups[oaiCostResult]()
	day, ok := s.usageDay(b)
	if !ok {
		return g.results()
	}
	recs := s.openAIDay(key, day)
	var k []byte
	for i := range recs {
		for j := range recs[i].Costs {
			c := &recs[i].Costs[j]
			if !filter(projects, c.ProjectID) || !filter(keys, c.APIKeyID) {
				continue
			}
			dims := oaiCostDims{
				LineItem:  dimOf(gb["line_item"], &c.LineItem),
				ProjectID: dimOf(gb["project_id"], &c.ProjectID),
				APIKeyID:  dimOf(gb["api_key_id"], &c.APIKeyID),
			}
			k = append(dims.appendFields(append(k[:0], '{')), '}')
			res, ok := g.find(k)
			if !ok {
				res = &oaiCostResult{Object: "organization.costs.result", oaiCostDims: dims}
				res.Amount.Currency = "usd"
				if gb["line_item"] {
					res.Quantity, res.QuantityUnit = new(int64), &c.Unit
				}
				g.add(k, res)
			}
			res.add(c.Amount)
			if res.Quantity != nil {
				*res.Quantity += c.Quantity
			}
		}
	}
	return g.results()
}
