package provider_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/provider"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

const testKey = "sk-admin-Zq81TopSecretKeyMaterial0042"

type testBundle struct {
	calls  atomic.Int32
	mu     sync.Mutex
	sleeps []time.Duration
	client *provider.HTTPClient
	url    string
}

// setup starts handler behind httptest and returns an HTTPClient whose sleeps
// are recorded instead of waited and whose jitter is the ceiling itself, so
// the backoff schedule is observable.
func setup(t *testing.T, handler func(n int, w http.ResponseWriter, r *http.Request)) *testBundle {
	t.Helper()
	b := &testBundle{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handler(int(b.calls.Add(1)), w, r)
	}))
	t.Cleanup(srv.Close)
	b.url = srv.URL + "/v1/thing"
	b.client = &provider.HTTPClient{
		Provider:        tokka.OpenAI,
		RequestIDHeader: "x-request-id",
		Sleep: func(ctx context.Context, d time.Duration) error {
			b.mu.Lock()
			defer b.mu.Unlock()
			b.sleeps = append(b.sleeps, d)
			return ctx.Err()
		},
		Jitter: func(ceiling time.Duration) time.Duration { return ceiling },
	}
	return b
}

func (b *testBundle) recordedSleeps() []time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]time.Duration(nil), b.sleeps...)
}

func authorize(h http.Header) { h.Set("Authorization", "Bearer "+testKey) }

func requireProviderError(t *testing.T, err error, kind provider.Kind, status int) *provider.Error {
	t.Helper()
	require.Error(t, err)
	var pe *provider.Error
	require.True(t, errors.As(err, &pe), "want *provider.Error, got %T", err)
	require.Equal(t, kind, pe.Kind)
	require.Equal(t, status, pe.Status)
	require.NotContains(t, err.Error(), "sk-admin")
	require.NotContains(t, err.Error(), "TopSecret")
	return pe
}

func TestGetRetriesServerErrorThenSucceeds(t *testing.T) {
	t.Parallel()
	b := setup(t, func(n int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("x-request-id", "req_"+string(rune('0'+n)))
		if n == 1 {
			http.Error(w, `{"error":{"message":"boom"}}`, http.StatusInternalServerError)
			return
		}
		_, _ = w.Write([]byte(`{"ok":true}`))
	})
	res, err := b.client.Get(context.Background(), b.url, authorize)
	require.NoError(t, err)
	require.Equal(t, `{"ok":true}`, string(res.Body))
	require.Equal(t, "req_2", res.RequestID)
	require.Equal(t, int32(2), b.calls.Load())
	require.Equal(t, []time.Duration{provider.DefaultBaseBackoff}, b.recordedSleeps())
}

func TestGetSendsHeadersOnEveryAttempt(t *testing.T) {
	t.Parallel()
	var seen []string
	var mu sync.Mutex
	b := setup(t, func(n int, w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization")+"|"+r.Header.Get("User-Agent")+"|"+r.Method)
		mu.Unlock()
		if n == 1 {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	_, err := b.client.Get(context.Background(), b.url, authorize)
	require.NoError(t, err)
	want := "Bearer " + testKey + "|tokka-syncer/0.1|GET"
	require.Equal(t, []string{want, want}, seen)
}

func TestGetHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []struct {
		name   string
		header map[string]string
		want   time.Duration
	}{
		{"seconds", map[string]string{"Retry-After": "2"}, 2 * time.Second},
		{"milliseconds win over seconds", map[string]string{"retry-after-ms": "150", "Retry-After": "9"}, 150 * time.Millisecond},
		{"http date", map[string]string{"Retry-After": now.Add(5 * time.Second).Format(http.TimeFormat)}, 5 * time.Second},
		{"garbage falls back to backoff", map[string]string{"Retry-After": "soon"}, provider.DefaultBaseBackoff},
		{"absent falls back to backoff", nil, provider.DefaultBaseBackoff},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, func(n int, w http.ResponseWriter, r *http.Request) {
				if n == 1 {
					for k, v := range tc.header {
						w.Header().Set(k, v)
					}
					w.WriteHeader(http.StatusTooManyRequests)
					return
				}
				w.WriteHeader(http.StatusOK)
			})
			b.client.Now = func() time.Time { return now }
			_, err := b.client.Get(context.Background(), b.url, authorize)
			require.NoError(t, err)
			require.Equal(t, int32(2), b.calls.Load())
			require.Equal(t, []time.Duration{tc.want}, b.recordedSleeps())
		})
	}
}

func TestGetStopsWhenRetryAfterExceedsCap(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status int
		kind   provider.Kind
	}{
		{http.StatusTooManyRequests, provider.KindRateLimited},
		{http.StatusServiceUnavailable, provider.KindUnavailable},
	} {
		b := setup(t, func(n int, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "31")
			w.WriteHeader(tc.status)
		})
		_, err := b.client.Get(context.Background(), b.url, authorize)
		requireProviderError(t, err, tc.kind, tc.status)
		require.Equal(t, int32(1), b.calls.Load())
		require.Empty(t, b.recordedSleeps())
	}
}

func TestGetGivesUpAfterMaxRetriesWithGrowingBackoff(t *testing.T) {
	t.Parallel()
	b := setup(t, func(n int, w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(529) // Anthropic's "overloaded"
	})
	_, err := b.client.Get(context.Background(), b.url, authorize)
	requireProviderError(t, err, provider.KindUnavailable, 529)
	require.Equal(t, int32(1+provider.DefaultMaxRetries), b.calls.Load())
	require.Equal(t, []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second}, b.recordedSleeps())
}

func TestGetBackoffIsCapped(t *testing.T) {
	t.Parallel()
	b := setup(t, func(n int, w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusRequestTimeout)
	})
	b.client.MaxRetries = 6
	b.client.BaseBackoff = 3 * time.Millisecond
	b.client.MaxBackoff = 10 * time.Millisecond
	_, err := b.client.Get(context.Background(), b.url, authorize)
	requireProviderError(t, err, provider.KindUnavailable, http.StatusRequestTimeout)
	ms := time.Millisecond
	require.Equal(t, []time.Duration{3 * ms, 6 * ms, 10 * ms, 10 * ms, 10 * ms, 10 * ms}, b.recordedSleeps())
}

func TestGetDefaultJitterStaysUnderCeiling(t *testing.T) {
	t.Parallel()
	b := setup(t, func(n int, w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	})
	b.client.Jitter = nil
	b.client.MaxRetries = 20
	_, err := b.client.Get(context.Background(), b.url, authorize)
	requireProviderError(t, err, provider.KindUnavailable, http.StatusInternalServerError)
	sleeps := b.recordedSleeps()
	require.Len(t, sleeps, 20)
	for _, d := range sleeps {
		require.GreaterOrEqual(t, d, time.Duration(0))
		require.LessOrEqual(t, d, provider.DefaultMaxBackoff)
	}
}

func TestGetNegativeMaxRetriesMeansNone(t *testing.T) {
	t.Parallel()
	b := setup(t, func(n int, w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	})
	b.client.MaxRetries = -1
	_, err := b.client.Get(context.Background(), b.url, authorize)
	requireProviderError(t, err, provider.KindUnavailable, http.StatusInternalServerError)
	require.Equal(t, int32(1), b.calls.Load())
}

func TestGetDoesNotRetryClientErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		status int
		kind   provider.Kind
	}{
		{http.StatusUnauthorized, provider.KindAuth},
		{http.StatusForbidden, provider.KindAuth},
		{http.StatusBadRequest, provider.KindRequest},
		{http.StatusNotFound, provider.KindRequest},
	}
	for _, tc := range cases {
		b := setup(t, func(n int, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("x-request-id", "req_abc")
			w.WriteHeader(tc.status)
			// Providers echo the key in error bodies; none of it may surface.
			_, _ = w.Write([]byte(`{"error":{"message":"Incorrect API key provided: ` + testKey + `"}}`))
		})
		_, err := b.client.Get(context.Background(), b.url, authorize)
		pe := requireProviderError(t, err, tc.kind, tc.status)
		require.Equal(t, "req_abc", pe.RequestID)
		require.Equal(t, tokka.OpenAI, pe.Provider)
		require.NotContains(t, err.Error(), "Incorrect")
		require.Equal(t, int32(1), b.calls.Load(), "status %d must not be retried", tc.status)
		require.Empty(t, b.recordedSleeps())
	}
}

func TestGetAuthReasonIsActionable(t *testing.T) {
	t.Parallel()
	b := setup(t, func(n int, w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
	})
	_, err := b.client.Get(context.Background(), b.url, authorize)
	pe := requireProviderError(t, err, provider.KindAuth, http.StatusUnauthorized)
	require.Contains(t, pe.Reason, "admin key")
	require.Contains(t, err.Error(), "HTTP 401")
}

func TestGetDoesNotFollowRedirects(t *testing.T) {
	t.Parallel()
	var leaked atomic.Bool
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked.Store(true)
	}))
	t.Cleanup(other.Close)
	b := setup(t, func(n int, w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL, http.StatusFound)
	})
	_, err := b.client.Get(context.Background(), b.url, func(h http.Header) { h.Set("x-api-key", testKey) })
	requireProviderError(t, err, provider.KindRequest, http.StatusFound)
	require.False(t, leaked.Load(), "the key header must not follow a redirect")
}

func TestGetLimitsBodySize(t *testing.T) {
	t.Parallel()
	b := setup(t, func(n int, w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(strings.Repeat("x", 101)))
	})
	b.client.MaxBodyBytes = 100
	_, err := b.client.Get(context.Background(), b.url, authorize)
	requireProviderError(t, err, provider.KindBadResponse, http.StatusOK)
	require.Equal(t, int32(1), b.calls.Load())

	b2 := setup(t, func(n int, w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(strings.Repeat("x", 100)))
	})
	b2.client.MaxBodyBytes = 100
	res, err := b2.client.Get(context.Background(), b2.url, authorize)
	require.NoError(t, err)
	require.Len(t, res.Body, 100)
}

func TestGetRetriesAttemptTimeouts(t *testing.T) {
	t.Parallel()
	b := setup(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			<-r.Context().Done() // hang until the client gives up on this attempt
			return
		}
		_, _ = w.Write([]byte("late but fine"))
	})
	// Long enough that the second attempt, answered at once, is never cut
	// off too on a loaded machine (that made a third call); the first
	// attempt waits this long for nothing, which is all the test costs.
	b.client.Timeout = time.Second
	res, err := b.client.Get(context.Background(), b.url, authorize)
	require.NoError(t, err)
	require.Equal(t, "late but fine", string(res.Body))
	require.Equal(t, int32(2), b.calls.Load())
}

func TestGetTimeoutsExhausted(t *testing.T) {
	t.Parallel()
	b := setup(t, func(n int, w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	b.client.Timeout = 20 * time.Millisecond
	b.client.MaxRetries = 1
	// Attempts are counted on the client side: on a loaded machine an
	// attempt can time out before its request ever reaches the server.
	var attempts atomic.Int32
	b.client.Observe = func(_ tokka.Provider, status int) {
		require.Zero(t, status)
		attempts.Add(1)
	}
	_, err := b.client.Get(context.Background(), b.url, authorize)
	pe := requireProviderError(t, err, provider.KindUnavailable, 0)
	require.Contains(t, pe.Reason, "did not answer")
	require.Equal(t, int32(2), attempts.Load(), "one attempt and one retry, each cut at the timeout")
	require.LessOrEqual(t, b.calls.Load(), int32(2))
}

func TestGetRetriesRefusedConnections(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more
	var sleeps atomic.Int32
	c := &provider.HTTPClient{
		Provider: tokka.Anthropic,
		Sleep:    func(context.Context, time.Duration) error { sleeps.Add(1); return nil },
	}
	_, err := c.Get(context.Background(), url, authorize)
	requireProviderError(t, err, provider.KindUnavailable, 0)
	require.Equal(t, int32(provider.DefaultMaxRetries), sleeps.Load())
}

func TestGetStopsWhenContextIsCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	b := setup(t, func(n int, w http.ResponseWriter, r *http.Request) {
		cancel()
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	_, err := b.client.Get(ctx, b.url, authorize)
	pe := requireProviderError(t, err, provider.KindUnavailable, 0)
	require.Contains(t, pe.Reason, "cancelled")
	require.Equal(t, int32(1), b.calls.Load())
}

func TestGetDefaultSleepHonoursContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "20") // would block for 20s with a real sleep
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	t.Cleanup(srv.Close)
	c := &provider.HTTPClient{Provider: tokka.OpenAI}
	start := time.Now()
	_, err := c.Get(ctx, srv.URL, authorize)
	requireProviderError(t, err, provider.KindUnavailable, 0)
	require.Less(t, time.Since(start), 5*time.Second)
}
