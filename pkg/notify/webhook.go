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
	Guard *Guard
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
}

// Webhook posts signed JSON to webhook URLs through the Guard: no proxy, no
// redirects followed, every connection to a checked public address.
type Webhook struct {
	cfg    WebhookConfig
	client *http.Client
}

// NewWebhook returns a sender. A nil Guard means a strict one (no loopback).
func NewWebhook(cfg WebhookConfig) *Webhook {
	if cfg.Guard == nil {
		cfg.Guard = &Guard{}
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
	return &Webhook{cfg: cfg, client: &http.Client{
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
// the configured attempts with exponential backoff. Each attempt is signed
// afresh with the current timestamp. It returns the attempts made and nil on
// a 2xx answer; otherwise a *RefusedError (the destination is not allowed;
// never retried) or a *SendError.
func (w *Webhook) Send(ctx context.Context, m WebhookMessage) (attempts int, status int, err error) {
	// The destination is checked here too (scheme, port, host form), not
	// only in the dialer, so a URL saved under older rules is refused
	// before any connection is made.
	u, err := w.cfg.Guard.CheckURL(ctx, m.URL)
	if err != nil {
		return 0, 0, err
	}
	wait := w.cfg.Backoff
	for attempts = 1; ; attempts++ {
		status, err = w.post(ctx, u.String(), m)
		if err == nil {
			return attempts, status, nil
		}
		var se *SendError
		if !errors.As(err, &se) || !se.Retryable || attempts >= w.cfg.Attempts {
			return attempts, status, err
		}
		jitter := time.Duration(rand.Int64N(int64(wait)/5 + 1))
		select {
		case <-ctx.Done():
			return attempts, status, &SendError{Reason: "delivery interrupted", Status: status}
		case <-time.After(wait + jitter):
		}
		wait = min(2*wait, time.Minute)
	}
}

func (w *Webhook) post(ctx context.Context, url string, m WebhookMessage) (int, error) {
	ts := w.cfg.Now().Unix()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(m.Body))
	if err != nil {
		return 0, &SendError{Reason: "the webhook URL is not usable"}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Tokka-Webhook/1")
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, Sign(m.Secret.Bytes(), ts, m.Body))
	req.Header.Set(HeaderEvent, m.Event)
	req.Header.Set(HeaderDelivery, m.DeliveryID)
	resp, err := w.client.Do(req)
	if err != nil {
		return 0, transportError(err)
	}
	// The body is drained (bounded) for connection reuse and never kept:
	// it is the receiver's text, not ours to store or show.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return resp.StatusCode, nil
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return resp.StatusCode, &SendError{Status: resp.StatusCode,
			Reason: fmt.Sprintf("receiver answered HTTP %d (a redirect, which is not followed)", resp.StatusCode)}
	case resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return resp.StatusCode, &SendError{Status: resp.StatusCode, Retryable: true,
			Reason: fmt.Sprintf("receiver answered HTTP %d", resp.StatusCode)}
	}
	return resp.StatusCode, &SendError{Status: resp.StatusCode,
		Reason: fmt.Sprintf("receiver answered HTTP %d", resp.StatusCode)}
}

// transportError classifies a client error without quoting it: Go's errors
// carry the URL (which can itself be a bearer secret, as Slack's are).
func transportError(err error) error {
	var re *RefusedError
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
