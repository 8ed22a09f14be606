package auth

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/supabase-community/gotrue-go"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// SessionChecker asks the Supabase Auth server whether an access token's
// session still exists. Signature checks alone keep accepting a token until
// it expires, even after the user signed out; changing a key must not.
type SessionChecker struct {
	authURL string
	anonKey string
	timeout time.Duration
	base    http.RoundTripper
	now     func() time.Time
	log     zerolog.Logger
}

// SessionConfig configures a SessionChecker.
type SessionConfig struct {
	// AuthURL is the Auth server's root (SUPABASE_AUTH_URL), e.g.
	// https://<ref>.supabase.co/auth/v1 or http://127.0.0.1:9999.
	AuthURL string
	// AnonKey goes in the apikey header, which the Supabase gateway requires
	// (SUPABASE_ANON_KEY); a bare Auth server ignores it.
	AnonKey string
	// Timeout bounds one check; default 5 seconds.
	Timeout time.Duration
	// Transport carries the requests; default http.DefaultTransport.
	Transport http.RoundTripper
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Log receives unexpected answers (status only, never the token);
	// default discards.
	Log *zerolog.Logger
}

// NewSessionChecker returns a SessionChecker, or an error when AuthURL is
// not an absolute http(s) URL.
func NewSessionChecker(cfg SessionConfig) (*SessionChecker, error) {
	u, err := url.Parse(cfg.AuthURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, errors.New("auth: the Auth server URL must be an absolute http(s) URL")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Transport == nil {
		cfg.Transport = http.DefaultTransport
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := zerolog.Nop()
	if cfg.Log != nil {
		log = *cfg.Log
	}
	return &SessionChecker{authURL: strings.TrimRight(cfg.AuthURL, "/"), anonKey: cfg.AnonKey,
		timeout: cfg.Timeout, base: cfg.Transport, now: cfg.Now, log: log}, nil
}

// ErrSessionEnded is returned when the Auth server no longer recognises the
// token's session (signed out, revoked, user deleted or banned).
var ErrSessionEnded = &tokka.Error{Code: tokka.CodeUnauthorized, Message: "your session has ended; sign in again"}

// ErrSessionUnknown is returned when the Auth server cannot be asked; the
// check fails closed.
var ErrSessionUnknown = &tokka.Error{Code: tokka.CodeUnavailable, Message: "cannot confirm your session right now; try again shortly"}

// CheckSession is Live without the answer: nil, ErrSessionEnded or
// ErrSessionUnknown.
func (s *SessionChecker) CheckSession(ctx context.Context, u tokka.User, token string) error {
	_, err := s.Live(ctx, u, token)
	return err
}

// LiveSession is what the Auth server says about the user of a live
// session.
type LiveSession struct {
	// Email is the user's current address on the Auth server (which may
	// differ from the token's if it changed since the token was issued).
	Email string
	// EmailConfirmed is whether the Auth server has a confirmation time for
	// Email (gotrue-go's EmailConfirmedAt).
	EmailConfirmed bool
}

// Live confirms through GET /user (gotrue-go GetUser) that token's session
// is live and belongs to u, and returns the user's address and whether it
// is confirmed. It fails with ErrSessionEnded (the Auth server refused the
// token with 400/403/404, or answered for another user), or
// ErrSessionUnknown (unreachable, timed out, 401, 429, 5xx or an unreadable
// answer: fail closed). A 401 comes from the Supabase gateway when
// SUPABASE_ANON_KEY is wrong — the Auth server itself answers a dead
// session with 403 — so it is treated as a misconfiguration, not a sign-out.
func (s *SessionChecker) Live(ctx context.Context, u tokka.User, token string) (LiveSession, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	// gotrue-go takes no context and hides the status in an error string;
	// a per-call transport adds the context and records the status.
	rt := &callTransport{ctx: ctx, base: s.base}
	client := gotrue.New("tokka", s.anonKey).
		WithCustomGoTrueURL(s.authURL).
		WithClient(http.Client{Transport: rt, Timeout: s.timeout, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}}).
		WithToken(token)
	user, err := client.GetUser()
	switch {
	case rt.status == 0:
		s.log.Warn().Msg("auth: session check: the Auth server did not answer")
		return LiveSession{}, ErrSessionUnknown
	case rt.status == http.StatusUnauthorized || rt.status == http.StatusTooManyRequests || rt.status >= 500:
		s.log.Warn().Int("status", rt.status).Msg("auth: session check: the Auth server could not answer (check SUPABASE_ANON_KEY on 401)")
		return LiveSession{}, ErrSessionUnknown
	case rt.status >= 400:
		return LiveSession{}, ErrSessionEnded // 403 session_not_found, bad_jwt, user_not_found …
	case err != nil || user == nil:
		s.log.Warn().Int("status", rt.status).Msg("auth: session check: unreadable answer from the Auth server")
		return LiveSession{}, ErrSessionUnknown
	}
	if !strings.EqualFold(user.ID.String(), u.ID) {
		return LiveSession{}, ErrSessionEnded
	}
	if user.BannedUntil != nil && user.BannedUntil.After(s.now()) {
		return LiveSession{}, ErrSessionEnded
	}
	confirmed := user.EmailConfirmedAt != nil && !user.EmailConfirmedAt.IsZero()
	return LiveSession{Email: user.Email, EmailConfirmed: confirmed}, nil
}

type callTransport struct {
	ctx    context.Context
	base   http.RoundTripper
	status int
}

func (t *callTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(r.WithContext(t.ctx))
	if err == nil {
		t.status = resp.StatusCode
	}
	return resp, err
}
