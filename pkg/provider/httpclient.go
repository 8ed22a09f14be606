package provider

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// UserAgent is what Tokka tells the providers it is; Anthropic asks
// integrations to send a descriptive one.
const UserAgent = "tokka-syncer/0.1"

// Defaults for the zero fields of HTTPClient.
const (
	DefaultTimeout       = 30 * time.Second
	DefaultMaxRetries    = 3
	DefaultBaseBackoff   = 500 * time.Millisecond
	DefaultMaxBackoff    = 8 * time.Second
	DefaultMaxRetryAfter = 30 * time.Second
	DefaultMaxBodyBytes  = 16 << 20
)

// HTTPClient performs the GET requests of the provider clients: one timeout
// per attempt, retries with exponential backoff and full jitter on transient
// failures, Retry-After honoured up to a cap, a bounded response body, and
// errors that are always *Error and never contain the key or the provider's
// error text. Every zero field takes the default named after it, so the zero
// value is ready to use; tests replace Sleep, Jitter and Now to run instantly.
type HTTPClient struct {
	Provider        tokka.Provider // put into every Error
	RequestIDHeader string         // response header carrying the provider's request id ("x-request-id", "request-id")
	Client          *http.Client   // transport; nil means a plain http.Client. Redirects are never followed.
	UserAgent       string         // default UserAgent

	Timeout       time.Duration // per attempt, including reading the body; default DefaultTimeout
	MaxRetries    int           // retries after the first attempt; 0 means DefaultMaxRetries, negative means none
	BaseBackoff   time.Duration // ceiling of the first backoff; default DefaultBaseBackoff
	MaxBackoff    time.Duration // largest backoff ceiling; default DefaultMaxBackoff
	MaxRetryAfter time.Duration // longest provider-requested wait Tokka accepts; default DefaultMaxRetryAfter
	MaxBodyBytes  int64         // largest successful body; default DefaultMaxBodyBytes

	// Sleep waits d or until ctx is done, returning ctx.Err() in that case.
	// Default: a timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// Jitter picks the actual backoff in [0, ceiling]. Default: uniform random
	// ("full jitter", so replicas that failed together do not retry together).
	Jitter func(ceiling time.Duration) time.Duration
	// Now is the clock used to read an HTTP-date Retry-After. Default time.Now.
	Now func() time.Time
	// Limit, when set, caps the requests in flight to this provider across
	// every connection that shares it (one slot per attempt; backoff sleeps
	// hold none).
	Limit *Limiter
	// Observe, when set, is told each attempt's HTTP status (0 when there was
	// no response), for metrics.
	Observe func(provider tokka.Provider, status int)
}

// Limiter is a counting semaphore shared by the clients of one provider.
type Limiter struct{ slots chan struct{} }

// NewLimiter allows n concurrent requests (n < 1 means 1).
func NewLimiter(n int) *Limiter { return &Limiter{slots: make(chan struct{}, max(n, 1))} }

func (l *Limiter) acquire(ctx context.Context) error {
	if l == nil {
		return nil
	}
	select {
	case l.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *Limiter) release() {
	if l != nil {
		<-l.slots
	}
}

// Response is a successful (2xx) answer.
type Response struct {
	Status    int
	Body      []byte
	RequestID string
}

// Get fetches url. authorize is called on every attempt to set the key header,
// so the caller reads the key's bytes only at that moment. Get returns a
// *Error: KindAuth for 401/403 (never retried), KindRequest for other 4xx and
// redirects, KindRateLimited or KindUnavailable once retries are exhausted or
// the provider asks to wait longer than MaxRetryAfter, KindBadResponse when the
// body exceeds MaxBodyBytes, and KindUnavailable when ctx ends first.
func (c *HTTPClient) Get(ctx context.Context, url string, authorize func(http.Header)) (*Response, error) {
	retries := c.MaxRetries
	switch {
	case retries == 0:
		retries = DefaultMaxRetries
	case retries < 0:
		retries = 0
	}
	for attempt := 0; ; attempt++ {
		res, out := c.attempt(ctx, url, authorize)
		if out == nil {
			return res, nil
		}
		if !out.retry || attempt >= retries {
			return nil, out.err
		}
		wait := c.backoff(attempt)
		if out.retryAfter > 0 {
			if out.retryAfter > c.maxRetryAfter() {
				// Waiting that long would hold a sync slot for minutes; give
				// up now and let the scheduler try again later.
				out.err.Reason += fmt.Sprintf("; it asked to wait %s, longer than Tokka waits", out.retryAfter.Round(time.Second))
				out.err.RetryAfter = out.retryAfter
				return nil, out.err
			}
			wait = out.retryAfter
		}
		if err := c.sleep(ctx, wait); err != nil {
			return nil, c.fail(KindUnavailable, 0, "the request was cancelled before the provider answered", out.err.RequestID)
		}
	}
}

// outcome is a failed attempt.
type outcome struct {
	err        *Error
	retry      bool
	retryAfter time.Duration // what the provider asked for, 0 when it did not
}

func (c *HTTPClient) attempt(ctx context.Context, url string, authorize func(http.Header)) (*Response, *outcome) {
	if err := c.Limit.acquire(ctx); err != nil {
		return nil, &outcome{err: c.fail(KindUnavailable, 0, "the request was cancelled before the provider answered", "")}
	}
	defer c.Limit.release()
	actx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()

	req, err := http.NewRequestWithContext(actx, http.MethodGet, url, nil)
	if err != nil {
		// Only a malformed base URL gets here; the URL never holds the key,
		// but the message is still not copied, to keep Reason predictable.
		return nil, &outcome{err: c.fail(KindRequest, 0, "the provider URL is invalid", "")}
	}
	req.Header.Set("User-Agent", c.userAgent())
	req.Header.Set("Accept", "application/json")
	authorize(req.Header)

	hc := *c.client()
	// The key travels in a header; following a redirect could hand it to
	// another host (net/http only strips Authorization, not x-api-key).
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	resp, err := hc.Do(req)
	if err != nil {
		c.observe(0)
		return nil, c.transportFailure(ctx, actx, err, "")
	}
	defer resp.Body.Close()
	c.observe(resp.StatusCode)
	reqID := resp.Header.Get(c.requestIDHeader())

	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		limit := c.maxBodyBytes()
		body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
		if err != nil {
			return nil, c.transportFailure(ctx, actx, err, reqID)
		}
		if int64(len(body)) > limit {
			return nil, &outcome{err: c.fail(KindBadResponse, resp.StatusCode,
				fmt.Sprintf("the provider's response was larger than %d bytes", limit), reqID)}
		}
		return &Response{Status: resp.StatusCode, Body: body, RequestID: reqID}, nil
	}

	// The error body is read only so the connection can be reused; it is
	// never put into an error, because providers echo the key in it.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return nil, c.statusFailure(resp, reqID)
}

func (c *HTTPClient) statusFailure(resp *http.Response, reqID string) *outcome {
	st := resp.StatusCode
	switch {
	case st == http.StatusUnauthorized || st == http.StatusForbidden:
		return &outcome{err: c.fail(KindAuth, st,
			"the provider rejected the key; check that it is an active admin key with permission to read usage and costs", reqID)}
	case st == http.StatusTooManyRequests:
		return &outcome{
			err:        c.fail(KindRateLimited, st, "the provider is rate limiting this organisation's requests", reqID),
			retry:      true,
			retryAfter: c.retryAfter(resp.Header),
		}
	case st == http.StatusRequestTimeout || st >= 500:
		return &outcome{
			err:        c.fail(KindUnavailable, st, "the provider is temporarily unavailable", reqID),
			retry:      true,
			retryAfter: c.retryAfter(resp.Header),
		}
	case st >= 300 && st < 400:
		return &outcome{err: c.fail(KindRequest, st, "the provider answered with a redirect, which Tokka does not follow; check the base URL", reqID)}
	default:
		return &outcome{err: c.fail(KindRequest, st, "the provider did not accept Tokka's request; check the base URL or report a Tokka bug", reqID)}
	}
}

// transportFailure classifies an error from sending the request or reading
// the body. Only the kind of failure is reported: the error text names the
// URL and host, which is harmless, but Reason stays a fixed vocabulary.
func (c *HTTPClient) transportFailure(parent, attemptCtx context.Context, err error, reqID string) *outcome {
	if parent.Err() != nil {
		return &outcome{err: c.fail(KindUnavailable, 0, "the request was cancelled before the provider answered", reqID)}
	}
	var ne net.Error
	if attemptCtx.Err() != nil || (errors.As(err, &ne) && ne.Timeout()) {
		return &outcome{err: c.fail(KindUnavailable, 0,
			fmt.Sprintf("the provider did not answer within %s", c.timeout()), reqID), retry: true}
	}
	// Refused or reset connections and DNS blips are as transient as a 503.
	return &outcome{err: c.fail(KindUnavailable, 0, "could not reach the provider", reqID), retry: true}
}

func (c *HTTPClient) fail(kind Kind, status int, reason, reqID string) *Error {
	return &Error{Provider: c.Provider, Kind: kind, Status: status, Reason: reason, RequestID: reqID}
}

// retryAfter reads retry-after-ms (the providers' SDKs prefer it) and then
// Retry-After as seconds or an HTTP date. It returns 0 when neither is usable.
func (c *HTTPClient) retryAfter(h http.Header) time.Duration {
	if v := strings.TrimSpace(h.Get("retry-after-ms")); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms > 0 {
			return seconds(ms / 1000)
		}
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil {
		return seconds(s)
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(c.now()); d > 0 {
			return d
		}
	}
	return 0
}

// seconds converts a provider-supplied number of seconds, saturating instead
// of overflowing so an absurd value still counts as "longer than the cap".
func seconds(s float64) time.Duration {
	switch {
	case s <= 0 || math.IsNaN(s):
		return 0
	case s >= float64(math.MaxInt64/int64(time.Second)):
		return math.MaxInt64
	}
	return time.Duration(s * float64(time.Second))
}

// backoff is the wait before retry number attempt+1: full jitter over an
// exponentially growing, capped ceiling.
func (c *HTTPClient) backoff(attempt int) time.Duration {
	base, limit := c.BaseBackoff, c.MaxBackoff
	if base <= 0 {
		base = DefaultBaseBackoff
	}
	if limit <= 0 {
		limit = DefaultMaxBackoff
	}
	ceiling := base
	for i := 0; i < attempt && ceiling < limit; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, limit)
	if c.Jitter != nil {
		return c.Jitter(ceiling)
	}
	return rand.N(ceiling + 1)
}

func (c *HTTPClient) sleep(ctx context.Context, d time.Duration) error {
	if c.Sleep != nil {
		return c.Sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (c *HTTPClient) client() *http.Client {
	if c.Client != nil {
		return c.Client
	}
	return &http.Client{}
}

func (c *HTTPClient) userAgent() string {
	if c.UserAgent != "" {
		return c.UserAgent
	}
	return UserAgent
}

func (c *HTTPClient) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

func (c *HTTPClient) maxRetryAfter() time.Duration {
	if c.MaxRetryAfter > 0 {
		return c.MaxRetryAfter
	}
	return DefaultMaxRetryAfter
}

func (c *HTTPClient) observe(status int) {
	if c.Observe != nil {
		c.Observe(c.Provider, status)
	}
}

func (c *HTTPClient) maxBodyBytes() int64 {
	if c.MaxBodyBytes > 0 {
		return c.MaxBodyBytes
	}
	return DefaultMaxBodyBytes
}

func (c *HTTPClient) requestIDHeader() string {
	if c.RequestIDHeader != "" {
		return c.RequestIDHeader
	}
	return "x-request-id"
}

func (c *HTTPClient) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}
