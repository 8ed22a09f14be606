package incident

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/supabase-community/gotrue-go"
	"github.com/supabase-community/gotrue-go/types"

	"github.com/tokka-dev/tokka/pkg/secret"
)

// ErrNoAddress means the Auth server has no such user (deleted since) or the
// user has no email address: there is no one to write to.
var ErrNoAddress = errors.New("the Auth server knows no email address for this user")

// AuthConfig says how to reach the Auth server's admin API.
type AuthConfig struct {
	// URL is the Auth server's root: http://auth:9999 for a self-hosted
	// GoTrue, https://<ref>.supabase.co/auth/v1 behind Supabase's gateway.
	URL string
	// ServiceRoleKey is a JWT with role service_role (the project's
	// service_role key): the admin API refuses anything less. It is sent as
	// the bearer token and, unless APIKey is set, as the gateway's apikey.
	ServiceRoleKey *secret.Key
	// APIKey, when set, is sent as apikey instead (the anon key).
	APIKey string
	// Timeout bounds one lookup; default 10s.
	Timeout time.Duration
	// Transport replaces http.DefaultTransport (tests).
	Transport http.RoundTripper
}

// AuthDirectory looks up users' email addresses through the Auth server's
// admin API (GET /admin/users/{id}, gotrue-go's AdminGetUser). The
// service-role key never appears in an error or log line.
type AuthDirectory struct {
	cfg AuthConfig
}

// NewAuthDirectory checks cfg; it fails when the URL is not an absolute
// http(s) URL or the key is missing.
func NewAuthDirectory(cfg AuthConfig) (*AuthDirectory, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" {
		return nil, errors.New("SUPABASE_AUTH_URL must be an absolute http(s) URL like https://<project-ref>.supabase.co/auth/v1")
	}
	if cfg.ServiceRoleKey == nil || cfg.ServiceRoleKey.Len() == 0 {
		return nil, errors.New("SUPABASE_SERVICE_ROLE_KEY is required to read users' email addresses from the Auth server")
	}
	cfg.URL = strings.TrimRight(cfg.URL, "/")
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Transport == nil {
		cfg.Transport = http.DefaultTransport
	}
	return &AuthDirectory{cfg: cfg}, nil
}

// Email returns userID's email address. It fails with ErrNoAddress when the
// Auth server has no such user or no address for it, and with an error that
// names the HTTP status (never the response body, which gotrue-go would
// quote) when the Auth server cannot answer.
func (d *AuthDirectory) Email(ctx context.Context, userID string) (string, error) {
	id, err := uuid.Parse(userID)
	if err != nil {
		return "", fmt.Errorf("auth admin: %q is not a user id", userID)
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	rt := &statusTransport{ctx: ctx, base: d.cfg.Transport}
	key := string(d.cfg.ServiceRoleKey.Bytes())
	apiKey := d.cfg.APIKey
	if apiKey == "" {
		apiKey = key
	}
	client := gotrue.New("tokka", apiKey).
		WithCustomGoTrueURL(d.cfg.URL).
		WithClient(http.Client{Transport: rt, Timeout: d.cfg.Timeout, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}}).
		WithToken(key)
	user, err := client.AdminGetUser(types.AdminGetUserRequest{UserID: id})
	switch {
	case rt.status == 0:
		return "", errors.New("auth admin: the Auth server did not answer")
	case rt.status == http.StatusNotFound:
		return "", ErrNoAddress
	case rt.status == http.StatusUnauthorized || rt.status == http.StatusForbidden:
		return "", fmt.Errorf("auth admin: the Auth server refused the service-role key (%d); check SUPABASE_SERVICE_ROLE_KEY", rt.status)
	case rt.status < 200 || rt.status >= 300:
		return "", fmt.Errorf("auth admin: the Auth server answered %d", rt.status)
	case err != nil || user == nil:
		return "", errors.New("auth admin: unreadable answer from the Auth server")
	case !strings.EqualFold(user.ID.String(), userID):
		return "", errors.New("auth admin: the Auth server answered for another user")
	case user.Email == "":
		return "", ErrNoAddress
	}
	return user.Email, nil
}

// statusTransport adds the call's context (gotrue-go takes none) and keeps
// the response status (gotrue-go hides it in an error string).
type statusTransport struct {
	ctx    context.Context
	base   http.RoundTripper
	status int
}

func (t *statusTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(r.WithContext(t.ctx))
	if err == nil {
		t.status = resp.StatusCode
	}
	return resp, err
}
