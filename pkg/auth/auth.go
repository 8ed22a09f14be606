// Package auth verifies Supabase access tokens and turns them into the
// caller the rest of Tokka trusts.
package auth

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// Audience and Role are the values a Supabase user access token carries;
// anon and service_role tokens are refused on user endpoints.
const (
	Audience = "authenticated"
	Role     = "authenticated"
)

// Config says which tokens to trust.
type Config struct {
	// HS256Secret is the project's legacy JWT secret (SUPABASE_JWT_SECRET).
	HS256Secret []byte
	// Issuer, when set, must equal the token's iss (SUPABASE_JWT_ISSUER).
	Issuer string
	// Leeway tolerates clock skew on exp/nbf/iat; default 30s.
	Leeway time.Duration
}

// Verifier checks access tokens. It is safe for concurrent use.
type Verifier struct {
	cfg    Config
	parser *jwt.Parser
}

// NewVerifier returns a Verifier, or an error when no way to verify tokens
// is configured or the secret is too weak to be a real project secret.
func NewVerifier(cfg Config) (*Verifier, error) {
	if len(cfg.HS256Secret) == 0 {
		return nil, errors.New("auth: SUPABASE_JWT_SECRET is required to verify tokens")
	}
	if len(cfg.HS256Secret) < 32 {
		return nil, errors.New("auth: SUPABASE_JWT_SECRET is shorter than 32 characters")
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = 30 * time.Second
	}
	opts := []jwt.ParserOption{
		// The allow-list is tied to the key type: only HMAC verifies against
		// the shared secret, so "none" or an RS/ES token can never pass here.
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithAudience(Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	return &Verifier{cfg: cfg, parser: jwt.NewParser(opts...)}, nil
}

// Claims is the part of a Supabase access token Tokka reads.
type Claims struct {
	jwt.RegisteredClaims
	Email       string `json:"email"`
	Role        string `json:"role"`
	SessionID   string `json:"session_id"`
	IsAnonymous bool   `json:"is_anonymous"`
}

// errUnauthorized is the only error a caller ever sees for a bad token: the
// reason is not revealed (it would help an attacker tune a forgery).
var errUnauthorized = &tokka.Error{Code: tokka.CodeUnauthorized, Message: "missing or invalid access token"}

// Verify checks token's signature and claims and returns the caller. Every
// failure is a CodeUnauthorized *tokka.Error with the same message.
func (v *Verifier) Verify(_ context.Context, token string) (tokka.User, error) {
	var c Claims
	parsed, err := v.parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		if _, ok := t.Method.(*jwt.SigningMethodHMAC); !ok {
			return nil, errors.New("unexpected signing method")
		}
		return v.cfg.HS256Secret, nil
	})
	if err != nil || !parsed.Valid {
		return tokka.User{}, errUnauthorized
	}
	if _, err := uuid.Parse(c.Subject); err != nil || len(c.Subject) != 36 {
		return tokka.User{}, errUnauthorized
	}
	if c.Role != Role {
		return tokka.User{}, errUnauthorized
	}
	// The verified payload itself goes to Postgres as request.jwt.claims,
	// byte for byte what the Auth server signed, as PostgREST does.
	parts := strings.Split(token, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return tokka.User{}, errUnauthorized
	}
	return tokka.User{ID: strings.ToLower(c.Subject), Email: c.Email, Claims: payload, SessionID: c.SessionID}, nil
}
