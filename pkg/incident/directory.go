package incident

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
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
// http(s) URL, when the key is missing, or when it is a JWT the Auth server
// would refuse (another role than service_role, or a sub naming a user).
func NewAuthDirectory(cfg AuthConfig) (*AuthDirectory, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" {
		return nil, errors.New("SUPABASE_AUTH_URL must be an absolute http(s) URL like https://<project-ref>.supabase.co/auth/v1")
	}
	if cfg.ServiceRoleKey == nil || cfg.ServiceRoleKey.Len() == 0 {
		return nil, errors.New("SUPABASE_SERVICE_ROLE_KEY is required to read users' email addresses from the Auth server")
	}
	if err := checkServiceKey(cfg.ServiceRoleKey.Bytes()); err != nil {
		return nil, err
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
	case rt.status == http.StatusForbidden && rt.errorCode == "user_not_found":
		return "", errors.New("auth admin: the Auth server refused the service-role key (403 user_not_found): it names a user the Auth server does not know; " +
			"check SUPABASE_SERVICE_ROLE_KEY (a service key carries no sub; see `devtoken -role service_role`)")
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

// checkServiceKey refuses a service key that the Auth server would refuse
// anyway, with a line that says why, before any lookup. Only a JWT is read
// (unverified: the Auth server verifies it); other key formats pass.
// GoTrue loads the user named by a token's sub before it looks at the role,
// so a "service key" with a sub is refused with 403 user_not_found unless
// that user exists; Supabase's own service keys carry no sub.
func checkServiceKey(key []byte) error {
	parts := bytes.Split(key, []byte("."))
	if len(parts) != 3 {
		return nil
	}
	payload, err := base64.RawURLEncoding.DecodeString(string(parts[1]))
	if err != nil {
		return nil
	}
	var claims struct {
		Role string `json:"role"`
		Sub  string `json:"sub"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return nil
	}
	if claims.Role != "service_role" && claims.Role != "supabase_admin" {
		return errors.New("SUPABASE_SERVICE_ROLE_KEY is not a service_role key (its role claim says otherwise); use the project's service_role key")
	}
	if claims.Sub != "" {
		return errors.New("SUPABASE_SERVICE_ROLE_KEY carries a sub claim (a user id), and the Auth server refuses such a key unless that user exists; " +
			"use the project's service_role key, or mint one with `devtoken -role service_role`")
	}
	return nil
}

// statusTransport adds the call's context (gotrue-go takes none) and keeps
// the response status (gotrue-go hides it in an error string) and, for a
// 403, GoTrue's error_code (never the message, which could quote input).
type statusTransport struct {
	ctx       context.Context
	base      http.RoundTripper
	status    int
	errorCode string
}

func (t *statusTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(r.WithContext(t.ctx))
	if err != nil {
		return resp, err
	}
	t.status = resp.StatusCode
	if resp.StatusCode == http.StatusForbidden {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
		_ = resp.Body.Close()
		var answer struct {
			ErrorCode string `json:"error_code"`
		}
		if json.Unmarshal(body, &answer) == nil && errorCodePattern.MatchString(answer.ErrorCode) {
			t.errorCode = answer.ErrorCode
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
	}
	return resp, nil
}

// errorCodePattern is what a GoTrue error_code looks like; anything else is
// ignored rather than carried into a message.
var errorCodePattern = regexp.MustCompile(`^[a-z_]{1,64}$`)
