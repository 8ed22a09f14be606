// Package fakeprovider is a faithful stand-in for the OpenAI and Anthropic
// organisation usage and cost endpoints, serving deterministic data derived
// from each key (see OpenAIDay and AnthropicDay). Tests run it on httptest;
// cmd/fakeprovider serves it for local development and benchmarks.
//
// Key conventions (any part of the key may carry the markers):
//
//	OpenAI    Bearer sk-admin-…     accepted
//	          Bearer sk-proj-…      403 "Missing scopes: api.usage.read"
//	          anything else/none    401 invalid_api_key (key masked in the message)
//	Anthropic x-api-key sk-ant-admin… accepted; anything else/none → 401 authentication_error
//	          no anthropic-version  400 invalid_request_error
//	both      …-revoked…            401 whose message echoes the WHOLE key (hostile on purpose)
//	          …-flaky…              odd-numbered requests of that key answer 500
//	          …-ratelimited…        odd-numbered requests answer 429 with Retry-After: 1
//	          …-overloaded…         odd-numbered requests answer 529 (Anthropic) / 503 (OpenAI)
//	OpenAI    …-strings…            cost amount.value is sent as a JSON string
package fakeprovider

import (
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

// Options configures a Server. The zero value is a fast server on the real clock.
type Options struct {
	Latency time.Duration    // added to every request, for benchmarks
	Now     func() time.Time // clock for default end times and "no data in the future"; nil means time.Now
}

// Server serves both providers' usage and cost endpoints. It is safe for
// concurrent use.
type Server struct {
	opts Options

	mu       sync.Mutex
	requests map[[sha256.Size]byte]int // by SHA-256 of the key, so no plaintext key is held

	seq atomic.Uint64 // request ids
}

// New returns a Server; it cannot fail.
func New(opts Options) *Server {
	return &Server{opts: opts, requests: make(map[[sha256.Size]byte]int)}
}

// Requests reports how many requests presented key so far, including
// rejected ones. It never fails; an unknown key has 0.
func (s *Server) Requests(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[sha256.Sum256([]byte(key))]
}

// count records one request for key and returns its 1-based number.
func (s *Server) count(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := sha256.Sum256([]byte(key))
	s.requests[h]++
	return s.requests[h]
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

// failureMode returns the status a -flaky/-ratelimited/-overloaded key gets on
// request number n, or 0.
func failureMode(key string, n int, overloaded int) int {
	if n%2 == 0 {
		return 0
	}
	switch {
	case strings.Contains(key, "-flaky"):
		return http.StatusInternalServerError
	case strings.Contains(key, "-ratelimited"):
		return http.StatusTooManyRequests
	case strings.Contains(key, "-overloaded"):
		return overloaded
	}
	return 0
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
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

// dim returns v when its dimension is grouped and v is set, else nil (JSON null).
func dim(grouped bool, v string) *string {
	if !grouped || v == "" {
		return nil
	}
	return &v
}

// groups aggregates results of type T by a key made of their grouping
// dimensions, keeping a stable (sorted) output order.
type groups[T any] struct {
	m map[string]*T
}

func newGroups[T any]() *groups[T] { return &groups[T]{m: map[string]*T{}} }

// get returns the aggregate for dims, creating it with init when new.
func (g *groups[T]) get(dims any, init func() *T) *T {
	b, _ := json.Marshal(dims)
	k := string(b)
	if v, ok := g.m[k]; ok {
		return v
	}
	v := init()
	g.m[k] = v
	return v
}

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
