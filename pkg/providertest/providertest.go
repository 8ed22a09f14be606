// Package providertest is the shared test set-up of the provider clients
// (openai, anthropic): Setup starts a recorded handler or the fake
// provider behind an HTTP policy that never really waits; golden-file
// handlers and the check of a provider.Error go with it.
package providertest

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/fakeprovider"
	"github.com/tokka-dev/tokka/pkg/provider"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// GoldenWindow is the window of the references' examples: 2026-01-01 and -02.
var GoldenWindow = tokka.Window{
	From: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
	To:   time.Date(2026, 1, 3, 0, 0, 0, 0, time.UTC),
}

// FakeNow is the fake provider's clock in round-trip tests, so the data it
// serves is the same on every run.
var FakeNow = time.Date(2026, 3, 31, 15, 4, 5, 0, time.UTC)

// Recorder is an httptest server that records every request it receives
// before handing it to its handler.
type Recorder struct {
	// URL is the server's base URL, without a trailing slash.
	URL  string
	mu   sync.Mutex
	seen []*http.Request
}

// serve starts a Recorder in front of handler, closed when the test ends.
func serve(t *testing.T, handler http.HandlerFunc) *Recorder {
	t.Helper()
	r := &Recorder{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.seen = append(r.seen, req.Clone(context.Background()))
		r.mu.Unlock()
		handler(w, req)
	}))
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

// Requests returns the requests received so far, oldest first.
func (r *Recorder) Requests() []*http.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*http.Request(nil), r.seen...)
}

// Sleeps stands in for provider.HTTPClient's Sleep: it records each wait
// asked for and returns at once (or the context's error), so retry tests
// run without waiting. The zero Sleeps is ready to use.
type Sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

// Sleep records d and returns ctx's error without waiting.
func (s *Sleeps) Sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.d = append(s.d, d)
	return ctx.Err()
}

// All returns the waits asked for so far, in order.
func (s *Sleeps) All() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

// Bundle is a provider client's test set-up: a server (a recorded handler,
// or the fake provider) at URL, and the HTTP policy a client under test
// uses, whose waits are recorded in Sleeps and never really happen.
type Bundle struct {
	// URL is the server's base URL, without a trailing slash.
	URL    string
	HTTP   provider.HTTPClient
	Sleeps *Sleeps
	// Fake is the fake provider, with its clock at FakeNow, unless Handle.
	Fake *fakeprovider.Server
	// Recorder records the requests the handler received (Handle).
	*Recorder
}

type options struct {
	handler  http.HandlerFunc
	pageSize int
}

// Option chooses what a Bundle's server serves.
type Option func(*options)

// Handle serves handler, recording every request it receives.
func Handle(handler http.HandlerFunc) Option { return func(o *options) { o.handler = handler } }

// WithPagedFake serves the fake provider whose directory listings
// (projects, keys, workspaces) answer at most pageSize elements per page,
// so a client must page through a small directory.
func WithPagedFake(pageSize int) Option { return func(o *options) { o.pageSize = pageSize } }

// Setup starts the server opts choose (the fake provider unless one is
// handed a handler) on httptest, closed when the test ends.
func Setup(t *testing.T, opts ...Option) *Bundle {
	t.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	b := &Bundle{Sleeps: &Sleeps{}}
	b.HTTP = provider.HTTPClient{Sleep: b.Sleeps.Sleep}
	if o.handler != nil {
		b.Recorder = serve(t, o.handler)
		b.URL = b.Recorder.URL
		return b
	}
	b.Fake = fakeprovider.New(fakeprovider.Options{Now: func() time.Time { return FakeNow }, ListPageSize: o.pageSize})
	srv := httptest.NewServer(b.Fake)
	t.Cleanup(srv.Close)
	b.URL = srv.URL
	return b
}

// Golden serves testdata/<file> with status for every request, naming it
// req_golden in the provider's request-id header idHeader. It fails the
// test if the file cannot be read.
func Golden(t *testing.T, idHeader string, status int, file string) http.HandlerFunc {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("testdata", file))
	require.NoError(t, err)
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(idHeader, "req_golden")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}
}

// Body serves a literal body, naming it req_inline in idHeader.
func Body(idHeader, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(idHeader, "req_inline")
		_, _ = w.Write([]byte(body))
	}
}

// DecimalStrings is m with each amount written out, so maps of money
// compare exactly and print readably in a failed assertion.
func DecimalStrings[K comparable](m map[K]decimal.Decimal) map[K]string {
	out := make(map[K]string, len(m))
	for k, v := range m {
		out[k] = v.String()
	}
	return out
}

// RequireKind fails the test unless err is a *provider.Error of kind from
// provider p, and returns it.
func RequireKind(t *testing.T, err error, p tokka.Provider, kind provider.Kind) *provider.Error {
	t.Helper()
	require.Error(t, err)
	var pe *provider.Error
	require.True(t, errors.As(err, &pe), "want *provider.Error, got %T: %v", err, err)
	require.Equal(t, kind, pe.Kind, "error: %v", err)
	require.Equal(t, p, pe.Provider)
	return pe
}
