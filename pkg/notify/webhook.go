// Package notify delivers budget alerts: signed webhooks, Slack incoming
// webhooks and email over SMTP. A failed send is a *SendError that says
// whether another attempt could succeed, so the caller decides on retries.
package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tokka-dev/tokka/pkg/egress"
	"github.com/tokka-dev/tokka/pkg/secret"
)

// Webhook headers. The signature is
//
//	X-Tokka-Signature: v1=<hex(HMAC-SHA256(secret, "<timestamp>.<body>"))>
//
// where <timestamp> is the X-Tokka-Timestamp header (Unix seconds) and the
// HMAC key is the budget's webhook secret string (whsec_…) as bytes.
// Receivers should recompute it, compare in constant time, and reject
// timestamps more than a few minutes old (VerifySignature does all three).
const (
	HeaderSignature = "X-Tokka-Signature"
	HeaderTimestamp = "X-Tokka-Timestamp"
	HeaderEvent     = "X-Tokka-Event"
	HeaderDelivery  = "X-Tokka-Delivery"
)

// SendError is a failed delivery; Reason is safe to store and show (it never
// carries the URL, an address, a secret or the receiver's response body).
type SendError struct {
	Reason    string
	Status    int  // the last HTTP status, 0 when there was none
	Retryable bool // whether another attempt could succeed
	// RetryAfter is how long the receiver asked to be left alone (its
	// Retry-After header on a 429 or 503), 0 when it did not say.
	RetryAfter time.Duration
}

func (e *SendError) Error() string { return "notify: " + e.Reason }

// Sign returns the X-Tokka-Signature value for body sent at ts.
func Sign(key []byte, ts int64, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(strconv.FormatInt(ts, 10)))
	m.Write([]byte("."))
	m.Write(body)
	return "v1=" + hex.EncodeToString(m.Sum(nil))
}

// VerifySignature checks a received webhook: the signature header must be a
// v1 HMAC of "timestamp.body" under key, and the timestamp within tolerance
// of now. It returns an error saying which check failed.
func VerifySignature(key []byte, signature, timestamp string, body []byte, now time.Time, tolerance time.Duration) error {
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return errors.New("notify: malformed timestamp")
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return errors.New("notify: timestamp outside tolerance")
	}
	want := Sign(key, ts, body)
	if !hmac.Equal([]byte(want), []byte(signature)) {
		return errors.New("notify: signature mismatch")
	}
	return nil
}

// WebhookConfig tunes a Webhook sender; zero values take the defaults.
type WebhookConfig struct {
	Guard *egress.Guard
	// RootCAs replaces the system roots (tests); nil = system roots.
	RootCAs *x509.CertPool
	// Timeout bounds one attempt; default 10s.
	Timeout time.Duration
	// Attempts is the most tries per delivery; default 3.
	Attempts int
	// Backoff is the wait before the first retry; it doubles (with up to 20%
	// jitter) after each, capped at a minute. Default 2s.
	Backoff time.Duration
	// Now is the clock for the signature timestamp; default time.Now.
	Now func() time.Time
	// SlackOrigin, for tests only, replaces https://hooks.slack.com in the
	// URLs Slack messages are sent to (the URL itself must still be a Slack
	// one); the destination is still checked by the egress.Guard. Empty (always,
	// outside tests) sends to Slack.
	SlackOrigin string
}

// MaxRetryAfter caps how long a receiver's Retry-After may delay the next
// attempt; the whole delivery must stay well within the evaluator's claim.
const MaxRetryAfter = time.Minute

// Webhook posts signed JSON to webhook URLs, and Slack messages to Slack
// incoming webhooks, through the egress.Guard: no proxy, no redirects followed,
// every connection to a checked public address.
type Webhook struct {
	cfg    WebhookConfig
	client *http.Client
	// after waits between attempts; time.After, replaced in tests to see
	// the waits without taking them.
	after func(time.Duration) <-chan time.Time
}

// NewWebhook returns a sender. A nil egress.Guard means a strict one (no loopback).
func NewWebhook(cfg WebhookConfig) *Webhook {
	if cfg.Guard == nil {
		cfg.Guard = &egress.Guard{}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 3
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 2 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	transport := &http.Transport{
		// No proxy: a proxy would connect to the destination on our behalf,
		// past the address check in DialContext.
		Proxy:                 nil,
		DialContext:           cfg.Guard.DialContext,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: cfg.RootCAs},
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   cfg.Timeout,
		ResponseHeaderTimeout: cfg.Timeout,
		MaxIdleConns:          10,
		IdleConnTimeout:       30 * time.Second,
	}
	return &Webhook{cfg: cfg, after: time.After, client: &http.Client{
		Transport: transport,
		Timeout:   cfg.Timeout,
		// A redirect could point anywhere, internal addresses included; the
		// receiver must answer at the URL it registered.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// WebhookMessage is one notification to post.
type WebhookMessage struct {
	URL        string
	Secret     *secret.Key // the budget's signing secret; only borrowed
	Event      string      // e.g. budget.threshold
	DeliveryID string      // stable across retries, for receivers to de-duplicate
	Body       []byte      // JSON
}

// Send posts m, retrying transport failures, 408, 429 and 5xx answers up to
// the configured attempts with exponential backoff (or longer, when a 429 or
// 503 carries a Retry-After, up to MaxRetryAfter). Each attempt is signed
// afresh with the current timestamp. It returns the attempts made and nil on
// a 2xx answer; otherwise a *egress.RefusedError (the destination is not allowed;
// never retried) or a *SendError.
func (w *Webhook) Send(ctx context.Context, m WebhookMessage) (attempts int, status int, err error) {
	// The destination is checked here too (scheme, port, host form), not
	// only in the dialer, so a URL saved under older rules is refused
	// before any connection is made.
	u, err := w.cfg.Guard.CheckURL(ctx, m.URL)
	if err != nil {
		return 0, 0, err
	}
	return w.retry(ctx, func() (int, error) {
		return w.post(ctx, u.String(), m.Body, "receiver", func(h http.Header) {
			ts := w.cfg.Now().Unix()
			h.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
			h.Set(HeaderSignature, Sign(m.Secret.Bytes(), ts, m.Body))
			h.Set(HeaderEvent, m.Event)
			h.Set(HeaderDelivery, m.DeliveryID)
		})
	})
}

// retry makes attempts until one succeeds, fails for good, or the
// configured attempts are used up, waiting in between.
func (w *Webhook) retry(ctx context.Context, attempt func() (int, error)) (attempts int, status int, err error) {
	wait := w.cfg.Backoff
	for attempts = 1; ; attempts++ {
		status, err = attempt()
		if err == nil {
			return attempts, status, nil
		}
		var se *SendError
		if !errors.As(err, &se) || !se.Retryable || attempts >= w.cfg.Attempts {
			return attempts, status, err
		}
		pause := wait + time.Duration(rand.Int64N(int64(wait)/5+1))
		pause = max(pause, min(se.RetryAfter, MaxRetryAfter))
		select {
		case <-ctx.Done():
			return attempts, status, &SendError{Reason: "delivery interrupted", Status: status}
		case <-w.after(pause):
		}
		wait = min(2*wait, time.Minute)
	}
}

// post makes one attempt; who names the receiver in reasons ("receiver",
// "Slack") and header adds the attempt's own headers.
func (w *Webhook) post(ctx context.Context, url string, body []byte, who string, header func(http.Header)) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, &SendError{Reason: "the webhook URL is not usable"}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Tokka-Webhook/1")
	header(req.Header)
	resp, err := w.client.Do(req)
	if err != nil {
		return 0, transportError(err)
	}
	// The body is drained (bounded) for connection reuse and never kept:
	// it is the receiver's text, not ours to store or show. Only Slack's
	// own error codes (channel_not_found, …) are repeated.
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	code := resp.StatusCode
	what := fmt.Sprintf("%s answered HTTP %d", who, code)
	if who == "Slack" && slackErrorCode.Match(bytes.TrimSpace(answer)) {
		what += " (" + string(bytes.TrimSpace(answer)) + ")"
	}
	switch {
	case code >= 200 && code < 300:
		return code, nil
	case code >= 300 && code < 400:
		return code, &SendError{Status: code, Reason: what + " (a redirect, which is not followed)"}
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		se := &SendError{Status: code, Retryable: true, Reason: what}
		if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
			se.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), time.Now())
		}
		return code, se
	}
	return code, &SendError{Status: code, Reason: what}
}

// retryAfter reads a Retry-After header, delay-seconds or an HTTP date; 0
// when it is absent or malformed.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 {
			return 0
		}
		return time.Duration(min(n, int(MaxRetryAfter/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// transportError classifies a client error without quoting it: Go's errors
// carry the URL (which can itself be a bearer secret, as Slack's are).
func transportError(err error) error {
	var re *egress.RefusedError
	if errors.As(err, &re) {
		return re
	}
	var certErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var netErr net.Error
	switch {
	case errors.As(err, &certErr), errors.As(err, &unknownAuth), errors.As(err, &hostErr):
		return &SendError{Reason: "the receiver's TLS certificate is not trusted"}
	case errors.Is(err, context.Canceled):
		return &SendError{Reason: "delivery interrupted"}
	case errors.As(err, &netErr) && netErr.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return &SendError{Reason: "the receiver did not answer in time", Retryable: true}
	case strings.Contains(err.Error(), "tls:"):
		return &SendError{Reason: "the TLS handshake with the receiver failed", Retryable: true}
	}
	return &SendError{Reason: "could not connect to the receiver", Retryable: true}
}

// Reason returns a caller-safe description of err: the refusal reason for a
// refused destination, the reason of a *SendError, otherwise a generic phrase.
func Reason(err error) string {
	var re *egress.RefusedError
	var se *SendError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &re):
		return re.Error()
	case errors.As(err, &se):
		return se.Reason
	}
	return "delivery failed"
}
