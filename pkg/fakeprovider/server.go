// Package fakeprovider is a faithful stand-in for the OpenAI and Anthropic
// organisation usage and cost endpoints, and for the endpoints that identify
// an organisation (OpenAI GET /v1/organization/projects, Anthropic GET
// /v1/organizations/me), serving deterministic data derived from each key's
// organisation (see OrgOf, OpenAIDayAt, AnthropicDayAt, OpenAIProjects and
// AnthropicOrganization). Tests run it on httptest; cmd/fakeprovider serves
// it for local development and benchmarks.
//
// Organisations: a key with the marker -org_<name> (letters and digits)
// belongs to organisation <name>, so two different keys with the same marker
// are two admin keys of one organisation and serve the same usage, costs,
// projects and organisation id. A key without the marker is an organisation
// of its own.
//
// Key conventions (any part of the key may carry the markers). The
// organisation endpoints check the key like every other endpoint (the 401
// and 403 rows below) and honour -slow; the other fault markers apply to the
// usage and cost endpoints only, whose requests are what "odd-numbered"
// counts, so with retries each page fails once and then succeeds:
//
//	OpenAI    Bearer sk-admin-…     accepted
//	          Bearer sk-proj-…      403 "Missing scopes: api.usage.read"
//	          anything else/none    401 invalid_api_key (key masked in the message)
//	Anthropic x-api-key sk-ant-admin… accepted; anything else/none → 401 authentication_error
//	          no anthropic-version  400 invalid_request_error
//	both      …-revoked…            401 whose message echoes the WHOLE key (hostile on purpose)
//	          …-flaky…              odd-numbered requests answer 500, the others succeed
//	          …-ratelimited…        odd-numbered requests answer 429 with Retry-After: 1
//	          …-throttled…          odd-numbered requests answer 429 without Retry-After
//	          …-retryms…            odd-numbered requests answer 429 with retry-after-ms: 250 (and Retry-After: 1)
//	          …-overloaded…         odd-numbered requests answer 529 (Anthropic) / 503 (OpenAI)
//	          …-outage…             every request answers 500
//	          …-cooldown…           every request answers 429 with Retry-After: 3600
//	          …-slow…               every request waits Options.SlowDelay before answering
//	          …-malformed…          data answers are 200 with truncated JSON
//	          …-negative…           usage reports carry a negative count
//	          …-absurd…             usage reports carry a count of 4e18
//	          …-endless…            paging never ends: has_more stays true with fresh cursors
//	          …-pageloop…           paging loops: next_page repeats the same cursor
//	          …-oversize…           data answers are preceded by 17 MiB of JSON whitespace
//	          …-usageonly…          every directory endpoint (projects, workspaces, API and admin keys) answers 403; usage and costs are served
//	          …-restated…           Server.Restate revises the last few days of the key's organisation (a new epoch of OpenAIDayAt/AnthropicDayAt)
//	OpenAI    …-strings…            cost amount.value is sent as a JSON string
package fakeprovider

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultSlowDelay is how long a -slow key waits for an answer by default.
const DefaultSlowDelay = 5 * time.Second

// DefaultRestateDays is how far back a restatement reaches by default: today,
// yesterday and the day before, the same three days a default re-sync reads.
const DefaultRestateDays = 2

// OversizeBytes is the whitespace a -oversize key's answers start with: more
// than provider.DefaultMaxBodyBytes.
const OversizeBytes = 17 << 20

// Options configures a Server. The zero value is a fast server on the real clock.
type Options struct {
	Latency     time.Duration    // added to every request, for benchmarks
	Now         func() time.Time // clock for default end times, "no data in the future" and restatements; nil means time.Now
	SlowDelay   time.Duration    // what -slow keys wait; 0 means DefaultSlowDelay
	RestateDays int              // a restatement changes the days at most this many days before today; 0 means DefaultRestateDays
	// ListPageSize, when positive, caps the page size of the directory
	// listings (projects, keys, workspaces) below what the client asks
	// for, so tests page through a small directory.
	ListPageSize int
}

// Server serves both providers' usage and cost endpoints. It is safe for
// concurrent use.
type Server struct {
	opts Options

	mu       sync.Mutex
	requests map[[sha256.Size]byte]int         // by SHA-256 of the key, so no plaintext key is held
	data     map[[sha256.Size]byte]int         // the same, data endpoints only: what the fault markers count
	restated map[[sha256.Size]byte][]time.Time // per organisation, the day ("today") of each restatement; epoch = index+1
	renames  map[[sha256.Size]byte]int         // per organisation, the directory's rename generation
	// addedAdmin holds, per organisation, the admin keys AddAdminKey created.
	addedAdmin map[[sha256.Size]byte][]FakeKey
	// overrides holds, per organisation and key id, times a test set
	// (AgeKey, BackdateKey).
	overrides map[[sha256.Size]byte]map[string]keyOverride

	days dayCache      // the days generated lately
	seq  atomic.Uint64 // request ids
}

// New returns a Server; it cannot fail.
func New(opts Options) *Server {
	return &Server{opts: opts, requests: make(map[[sha256.Size]byte]int), data: make(map[[sha256.Size]byte]int),
		restated: make(map[[sha256.Size]byte][]time.Time), renames: make(map[[sha256.Size]byte]int),
		addedAdmin: make(map[[sha256.Size]byte][]FakeKey), overrides: make(map[[sha256.Size]byte]map[string]keyOverride)}
}

// Requests reports how many requests presented key so far, including
// rejected ones. It never fails; an unknown key has 0.
func (s *Server) Requests(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[sha256.Sum256([]byte(key))]
}

// Restate makes the provider revise its numbers now: it moves key to the
// next restatement epoch e and returns it (1 after the first call). For a
// key with the -restated marker, the days from RestateDays days before
// today (by Options.Now) up to today are from then on served as
// OpenAIDayAt/AnthropicDayAt at epoch e — a revision is permanent, so a day
// keeps the epoch of the last restatement that covered it even after the
// clock moves on — and every other day keeps its earlier epoch (0 if none).
// Other keys count epochs but their data never changes, so ordinary keys
// stay a pure function of key and date. It never fails.
func (s *Server) Restate(key string) int {
	today := s.now().Truncate(24 * time.Hour)
	s.mu.Lock()
	defer s.mu.Unlock()
	h := sha256.Sum256([]byte(OrgOf(key)))
	s.restated[h] = append(s.restated[h], today)
	return len(s.restated[h])
}

// Epoch reports key's latest restatement epoch (0 until Restate is called).
func (s *Server) Epoch(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.restated[sha256.Sum256([]byte(OrgOf(key)))])
}

// epochFor is the epoch key's data for day is served at: the latest
// restatement whose range covers the day.
func (s *Server) epochFor(key string, day time.Time) int {
	if !strings.Contains(key, "-restated") {
		return 0
	}
	days := s.opts.RestateDays
	if days <= 0 {
		days = DefaultRestateDays
	}
	day = day.UTC().Truncate(24 * time.Hour)
	s.mu.Lock()
	defer s.mu.Unlock()
	todays := s.restated[sha256.Sum256([]byte(OrgOf(key)))]
	for e := len(todays); e > 0; e-- {
		today := todays[e-1]
		if !day.Before(today.AddDate(0, 0, -days)) && !day.After(today) {
			return e
		}
	}
	return 0
}

// count records one request for key and returns its 1-based number among
// the requests to data endpoints (usage and costs), which is what the fault
// markers' "odd-numbered" counts; a request to an organisation endpoint
// (data false) counts in Requests only.
func (s *Server) count(key string, data bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := sha256.Sum256([]byte(key))
	s.requests[h]++
	if data {
		s.data[h]++
	}
	return s.data[h]
}

func (s *Server) now() time.Time {
	if s.opts.Now != nil {
		return s.opts.Now().UTC()
	}
	return time.Now().UTC()
}

// ServeHTTP routes /v1/organizations/… to the Anthropic fake and every other
// /v1/… path to the OpenAI fake; failures are written in the provider's own
// error shape.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.opts.Latency > 0 {
		t := time.NewTimer(s.opts.Latency)
		select {
		case <-r.Context().Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
	if strings.HasPrefix(r.URL.Path, "/v1/organizations/") {
		s.serveAnthropic(w, r)
		return
	}
	s.serveOpenAI(w, r)
}

// requestID returns a fresh request id in the providers' "req_…" style.
func (s *Server) requestID() string {
	return fmt.Sprintf("req_%024x", s.seq.Add(1))
}

// failure is an error answer a key's markers ask for instead of data.
type failure struct {
	status       int    // 0: no failure
	retryAfter   string // Retry-After header, "" for none
	retryAfterMS string // retry-after-ms header, "" for none
}

// failureFor returns what a key's status markers make of its request number
// n; overloaded is the provider's overload status (529 or 503).
func failureFor(key string, n int, overloaded int) failure {
	switch {
	case strings.Contains(key, "-outage"):
		return failure{status: http.StatusInternalServerError}
	case strings.Contains(key, "-cooldown"):
		return failure{status: http.StatusTooManyRequests, retryAfter: "3600"}
	}
	if n%2 == 0 {
		return failure{}
	}
	switch {
	case strings.Contains(key, "-flaky"):
		return failure{status: http.StatusInternalServerError}
	case strings.Contains(key, "-ratelimited"):
		return failure{status: http.StatusTooManyRequests, retryAfter: "1"}
	case strings.Contains(key, "-throttled"):
		return failure{status: http.StatusTooManyRequests}
	case strings.Contains(key, "-retryms"):
		return failure{status: http.StatusTooManyRequests, retryAfter: "1", retryAfterMS: "250"}
	case strings.Contains(key, "-overloaded"):
		return failure{status: overloaded}
	}
	return failure{}
}

// setHeaders sets the failure's retry headers on w.
func (f failure) setHeaders(w http.ResponseWriter) {
	if f.retryAfter != "" {
		w.Header().Set("Retry-After", f.retryAfter)
	}
	if f.retryAfterMS != "" {
		w.Header().Set("retry-after-ms", f.retryAfterMS)
	}
}

// slow makes a -slow key's request wait SlowDelay, or until the client gives
// up; it reports whether the client is still there.
func (s *Server) slow(ctx context.Context, key string) bool {
	if !strings.Contains(key, "-slow") {
		return true
	}
	d := s.opts.SlowDelay
	if d <= 0 {
		d = DefaultSlowDelay
	}
	return sleep(ctx, d)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Paging markers: cursors the fake hands to -endless and -pageloop keys.
const (
	endlessCursorPrefix = "page_endless_"
	loopCursor          = "page_loop"
)

// pagingFault returns the page a -endless or -pageloop key gets for cursor
// instead of data, or ok=false when the request is an ordinary one.
func pagingFault(key, cursor string) (hasMore bool, next string, ok bool) {
	switch {
	case strings.Contains(key, "-endless") && strings.HasPrefix(cursor, endlessCursorPrefix):
		n, _ := strconv.Atoi(strings.TrimPrefix(cursor, endlessCursorPrefix))
		return true, endlessCursorPrefix + strconv.Itoa(n+1), true
	case strings.Contains(key, "-pageloop") && cursor == loopCursor:
		return true, loopCursor, true
	}
	return false, "", false
}

// misPage rewrites an ordinary page's paging for -endless and -pageloop keys.
func misPage(key string, hasMore bool, next *string) (bool, *string) {
	switch {
	case strings.Contains(key, "-endless") && !hasMore:
		c := endlessCursorPrefix + "1"
		return true, &c
	case strings.Contains(key, "-pageloop"):
		c := loopCursor
		return true, &c
	}
	return hasMore, next
}

// badCount is the count a -negative or -absurd key's usage reports carry, or
// 0 for an ordinary key.
func badCount(key string) int64 {
	switch {
	case strings.Contains(key, "-negative"):
		return -42
	case strings.Contains(key, "-absurd"):
		return 4_000_000_000_000_000_000
	}
	return 0
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

// pad is the whitespace -oversize answers are padded with, a chunk at a time.
var pad = bytes.Repeat([]byte(" "), 64<<10)

// writeData writes a successful answer, the JSON b, damaged as key's
// -malformed or -oversize marker asks.
func writeData(w http.ResponseWriter, r *http.Request, key string, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	switch {
	case strings.Contains(key, "-malformed"):
		b = b[:len(b)/2]
	case strings.Contains(key, "-oversize"):
		for n := 0; n < OversizeBytes; n += len(pad) {
			if r.Context().Err() != nil {
				return
			}
			if _, err := w.Write(pad); err != nil {
				return
			}
		}
	}
	_, _ = w.Write(append(b, '\n'))
}

// arrayParam reads an array query parameter in both the bracket form the
// SDKs send (k[]=a&k[]=b) and the repeated form (k=a&k=b).
func arrayParam(r *http.Request, name string) []string {
	q := r.URL.Query()
	var out []string
	for _, v := range append(q[name+"[]"], q[name]...) {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// widths are the bucket widths both providers accept.
var widths = map[string]time.Duration{"1m": time.Minute, "1h": time.Hour, "1d": 24 * time.Hour}

// limitRule is the default and maximum number of buckets per page for a width.
type limitRule struct{ def, max int }

var usageLimits = map[string]limitRule{"1m": {60, 1440}, "1h": {24, 168}, "1d": {7, 31}}

// parseLimit returns the page size or an error message for the client.
func parseLimit(raw string, rule limitRule) (int, string) {
	if raw == "" {
		return rule.def, ""
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 || n > rule.max {
		return 0, fmt.Sprintf("limit must be an integer between 1 and %d for this bucket width", rule.max)
	}
	return n, ""
}

// span is one bucket, [start, end).
type span struct{ start, end time.Time }

// usageDay returns the day whose records fall into b. The fake books a whole
// day's usage at its 00:00 UTC, so a bucket holds a day's data exactly when it
// contains that midnight (a partial first bucket starting later that day is
// empty, and no usage is double counted), and days after now have none.
func (s *Server) usageDay(b span) (time.Time, bool) {
	m := b.start.Truncate(24 * time.Hour)
	if m.Before(b.start) {
		m = m.Add(24 * time.Hour)
	}
	return m, m.Before(b.end) && !m.After(s.now())
}

// filter reports whether v passes an optional array filter.
func filter(allowed []string, v string) bool {
	return len(allowed) == 0 || slices.Contains(allowed, v)
}

// groupSet validates group_by values against the endpoint's allowed set.
func groupSet(values, allowed []string) (map[string]bool, string) {
	set := make(map[string]bool, len(values))
	for _, v := range values {
		if !slices.Contains(allowed, v) {
			return nil, fmt.Sprintf("invalid group_by value %q; allowed: %s", v, strings.Join(allowed, ", "))
		}
		set[v] = true
	}
	return set, ""
}

// dimOf returns the field p when its dimension is grouped and it is set,
// else nil (JSON null). The result shares p, which is read only.
func dimOf(grouped bool, p *string) *string {
	if !grouped || p == nil || *p == "" {
		return nil
	}
	return p
}

// groups aggregates results of type T by a key made of their grouping
// dimensions (their JSON object), keeping a stable (sorted) output order.
type groups[T any] struct {
	m map[string]*T
}

func newGroups[T any]() *groups[T] { return &groups[T]{m: map[string]*T{}} }

// find returns the aggregate for key k, if there is one.
func (g *groups[T]) find(k []byte) (*T, bool) {
	v, ok := g.m[string(k)]
	return v, ok
}

// add keeps v as the aggregate for key k.
func (g *groups[T]) add(k []byte, v *T) { g.m[string(k)] = v }

// results returns the aggregates sorted by key, as a non-nil slice so an
// empty bucket encodes as "results": [].
func (g *groups[T]) results() []*T {
	keys := make([]string, 0, len(g.m))
	for k := range g.m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]*T, 0, len(keys))
	for _, k := range keys {
		out = append(out, g.m[k])
	}
	return out
}
