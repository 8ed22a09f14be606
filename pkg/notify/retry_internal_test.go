package notify

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/egress"
)

// TestRetryAfterIsHonoured: a 429 (or 503) that says how long to wait
// delays the next attempt by that much, capped at MaxRetryAfter; without
// one, the backoff applies. The waits are recorded, not taken.
func TestRetryAfterIsHonoured(t *testing.T) {
	t.Parallel()
	answers := []struct {
		status int
		after  string
	}{{429, "7"}, {503, "3600"}, {429, ""}, {429, "soon"}}
	var mu sync.Mutex
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if n < len(answers) {
			if answers[n].after != "" {
				w.Header().Set("Retry-After", answers[n].after)
			}
			w.WriteHeader(answers[n].status)
		}
		n++
	}))
	t.Cleanup(srv.Close)

	w := NewWebhook(WebhookConfig{Guard: &egress.Guard{AllowLoopback: true}, Attempts: 5, Backoff: time.Millisecond,
		SlackOrigin: srv.URL})
	var waits []time.Duration
	w.after = func(d time.Duration) <-chan time.Time {
		waits = append(waits, d)
		c := make(chan time.Time, 1)
		c <- time.Now()
		return c
	}
	attempts, status, err := w.SendSlack(context.Background(), SlackMessage{
		URL: "https://hooks.slack.com/services/T1/B1/tokentoken"})
	require.NoError(t, err)
	require.Equal(t, 5, attempts)
	require.Equal(t, 200, status)
	require.Len(t, waits, 4)
	require.Equal(t, 7*time.Second, waits[0], "Retry-After in seconds")
	require.Equal(t, MaxRetryAfter, waits[1], "capped")
	require.Less(t, waits[2], time.Second, "no Retry-After: the backoff")
	require.Less(t, waits[3], time.Second, "a malformed Retry-After is ignored")
}
