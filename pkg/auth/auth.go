// Package auth verifies Supabase access tokens and turns them into the
// caller the rest of Tokka trusts, and asks the Supabase Auth server whether
// a token's session is still live.
//
// Two kinds of signing key are trusted, each only for its own algorithm:
// the project's legacy shared secret (HS256, SUPABASE_JWT_SECRET) and the
// project's asymmetric signing keys (ES256, RS256) published in its JWKS and
// selected by kid. The algorithm allow-list is tied to the key type, so an
// HS256 token is never checked against a public key (the RS/HS confusion
// attack) and "none" never verifies. Nothing in a token's header can make the
// verifier fetch anything: jku, x5u, jwk and x5c headers are refused outright.
package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// Audience and Role are the values a Supabase user access token carries;
// anon and service_role tokens are refused on user endpoints.
const (
	Audience = "authenticated"
	Role     = "authenticated"
)

// MaxTokenLength bounds the size of a token the verifier will look at. Real
// Supabase access tokens are 1–2 KB; anything far larger is an attack on the
// parser, not a credential.
const MaxTokenLength = 8 << 10

// MinSecretLength is the shortest legacy JWT secret accepted: a Supabase
// project's secret is at least 32 characters, and anything shorter could be
// brute-forced offline from a single token.
const MinSecretLength = 32

// maxKIDLength bounds the kid the verifier will look up; longer values are
// hostile input, refused before they reach the key cache.
const maxKIDLength = 128

// Config says which tokens to trust.
type Config struct {
	// HS256Secret is the project's legacy JWT secret (SUPABASE_JWT_SECRET);
	// optional when JWKSURL is set.
	HS256Secret []byte
	// JWKSURL is where the project publishes its asymmetric signing keys
	// (SUPABASE_JWKS_URL); optional when HS256Secret is set.
	JWKSURL string
	// Issuer, when set, must equal the token's iss (SUPABASE_JWT_ISSUER).
	Issuer string
	// Leeway tolerates clock skew on exp/nbf/iat; default 30s, at most 2m.
	Leeway time.Duration
	// MaxLifetime refuses tokens whose exp lies further in the future than
	// this; default 7 days, the longest JWT expiry Supabase allows.
	MaxLifetime time.Duration
	// JWKS tunes the key cache; zero values take the defaults documented on
	// JWKSOptions.
	JWKS JWKSOptions
	// HTTPClient fetches the JWKS; default a client with a 5s timeout that
	// never follows redirects.
	HTTPClient *http.Client
	// AllowAnonymous accepts tokens of Supabase anonymous sign-ins
	// (is_anonymous: true; ALLOW_ANONYMOUS_USERS); by default they are
	// refused with ErrAnonymous.
	AllowAnonymous bool
	// Log receives JWKS refresh failures and, at debug level, why a token
	// was refused (never a token or a claim value); default discards.
	Log *zerolog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Verifier checks access tokens. It is safe for concurrent use.
type Verifier struct {
	secret         []byte
	jwks           *jwksCache
	parser         *jwt.Parser
	maxLifetime    time.Duration
	leeway         time.Duration
	allowAnonymous bool
	now            func() time.Time
	log            zerolog.Logger
	verified       verifiedTokens
}

// NewVerifier returns a Verifier, or an error when no way to verify tokens
// is configured, the secret is too weak to be a real project secret, or the
// JWKS URL or cache options are unusable.
func NewVerifier(cfg Config) (*Verifier, error) {
	if len(cfg.HS256Secret) == 0 && cfg.JWKSURL == "" {
		return nil, errors.New("auth: SUPABASE_JWT_SECRET or a JWKS URL is required to verify tokens")
	}
	if len(cfg.HS256Secret) > 0 && len(cfg.HS256Secret) < MinSecretLength {
		return nil, fmt.Errorf("auth: SUPABASE_JWT_SECRET is shorter than %d characters", MinSecretLength)
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = 30 * time.Second
	}
	if cfg.Leeway < 0 || cfg.Leeway > 2*time.Minute {
		return nil, errors.New("auth: leeway must be between 0 and 2 minutes")
	}
	if cfg.MaxLifetime == 0 {
		cfg.MaxLifetime = 7 * 24 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := zerolog.Nop()
	if cfg.Log != nil {
		log = *cfg.Log
	}
	v := &Verifier{secret: cfg.HS256Secret, maxLifetime: cfg.MaxLifetime, leeway: cfg.Leeway,
		allowAnonymous: cfg.AllowAnonymous, now: cfg.Now, log: log}

	// The allow-list follows the configured keys: HS256 only with a secret,
	// ES256/RS256 only with a JWKS. Every other alg (none in any casing,
	// HS384, PS256, EdDSA …) is refused before any key is looked up.
	var methods []string
	if len(cfg.HS256Secret) > 0 {
		methods = append(methods, jwt.SigningMethodHS256.Alg())
	}
	if cfg.JWKSURL != "" {
		u, err := url.Parse(cfg.JWKSURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, errors.New("auth: the JWKS URL must be an absolute http(s) URL")
		}
		c, err := newJWKSCache(cfg.JWKSURL, cfg.JWKS, cfg.HTTPClient, cfg.Now, log)
		if err != nil {
			return nil, err
		}
		v.jwks = c
		methods = append(methods, jwt.SigningMethodES256.Alg(), jwt.SigningMethodRS256.Alg())
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(methods),
		jwt.WithAudience(Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithStrictDecoding(),
		jwt.WithTimeFunc(cfg.Now),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

// Claims is the part of a Supabase access token Tokka reads through the JWT
// library. checkPayload makes sure each of these names appears exactly once
// and spelt exactly so, which encoding/json alone would not.
type Claims struct {
	jwt.RegisteredClaims
	Email       string `json:"email"`
	Role        string `json:"role"`
	SessionID   string `json:"session_id"`
	IsAnonymous bool   `json:"is_anonymous"`
}

// errUnauthorized is the only error a caller ever sees for a bad token: the
// reason is not revealed (it would help an attacker tune a forgery); it goes
// to the debug log instead.
var errUnauthorized = &tokka.Error{Code: tokka.CodeUnauthorized, Message: "missing or invalid access token"}

// ErrAnonymous is returned for a valid token of a Supabase anonymous
// sign-in (is_anonymous: true) unless Config.AllowAnonymous is set.
var ErrAnonymous = &tokka.Error{Code: tokka.CodeForbidden,
	Message: "anonymous sign-ins cannot use Tokka; sign in with an account"}

// Verify checks token's signature and claims and returns the caller. Every
// failure is a CodeUnauthorized *tokka.Error with the same message, except
// ErrAnonymous (CodeForbidden) for a valid token of an anonymous user when
// those are not allowed. Why a token was refused is logged at debug level,
// as a fixed phrase: never the token, never a claim value.
func (v *Verifier) Verify(ctx context.Context, token string) (tokka.User, error) {
	if u, ok := v.verified.lookup(ctx, token, v.now(), v.jwks); ok {
		return u, nil
	}
	u, reason := v.verify(ctx, token)
	if reason != "" {
		v.log.Debug().Str("reason", reason).Msg("auth: access token refused")
		if reason == reasonAnonymous {
			return tokka.User{}, ErrAnonymous
		}
		return tokka.User{}, errUnauthorized
	}
	return u, nil
}

const reasonAnonymous = "anonymous sign-in (set ALLOW_ANONYMOUS_USERS to accept)"

// verify returns the caller, or a non-empty reason for refusing the token.
func (v *Verifier) verify(ctx context.Context, token string) (tokka.User, string) {
	if len(token) > MaxTokenLength || strings.Count(token, ".") != 2 {
		return tokka.User{}, "malformed: not three parts or too long"
	}
	var c Claims
	var keys uint64 // the JWKS generation of the key, for an ES256/RS256 token
	parsed, err := v.parser.ParseWithClaims(token, &c, v.keyfunc(ctx, &keys))
	if err != nil || !parsed.Valid {
		return tokka.User{}, parseFailure(err, &c)
	}
	// The verified payload itself goes to Postgres as request.jwt.claims,
	// byte for byte what the Auth server signed, as PostgREST does; it must
	// say to Postgres exactly what it said to the JWT library above.
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[1])
	if err != nil {
		return tokka.User{}, "malformed: payload is not base64url"
	}
	pc, err := checkPayload(payload)
	if err != nil {
		return tokka.User{}, "ambiguous claims: " + err.Error()
	}
	// Supabase always sets iat; without it a token's age is unknowable.
	if c.IssuedAt == nil || c.ExpiresAt == nil {
		return tokka.User{}, "required claim missing: iat or exp"
	}
	// A far-future exp is a forged or misissued token: no Supabase project
	// issues tokens living longer than MaxLifetime.
	if c.ExpiresAt.Sub(v.now()) > v.maxLifetime+v.leeway {
		return tokka.User{}, "exp lies further ahead than the longest token lifetime"
	}
	if _, err := uuid.Parse(c.Subject); err != nil || len(c.Subject) != 36 {
		return tokka.User{}, "sub is not a user id"
	}
	if c.Role != Role {
		return tokka.User{}, "role is not authenticated"
	}
	u := tokka.User{ID: strings.ToLower(c.Subject), Email: c.Email, Claims: payload, SessionID: c.SessionID,
		EmailVerified: pc.emailVerified}
	if c.IsAnonymous && !v.allowAnonymous {
		return u, reasonAnonymous
	}
	v.verified.remember(token, u, c.ExpiresAt.Add(v.leeway), keys, v.now())
	return u, ""
}

// parseFailure names why the JWT library refused a token, in fixed words:
// its error text may quote the token's header values, which are not logged.
// c is what the library decoded before refusing, to say which required
// claim was missing.
func parseFailure(err error, c *Claims) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return "no usable key: algorithm, kid or header refused"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "bad signature or algorithm not allowed"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "not valid yet (nbf)"
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "issued in the future (iat)"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "wrong or missing issuer"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "wrong or missing audience"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		switch {
		case c.ExpiresAt == nil:
			return "required claim missing: exp"
		case len(c.Audience) == 0:
			return "wrong or missing audience"
		case c.Issuer == "":
			return "wrong or missing issuer"
		}
		return "required claim missing"
	}
	return "invalid claims"
}

// refusedHeaders are JOSE header parameters that would let a token name its
// own key or demand extensions. Supabase never sets them; a token that does
// is forged, and the verifier must not so much as look at their values.
var refusedHeaders = []string{"jku", "jwk", "x5u", "x5c", "x5t", "x5t#S256", "crit"}

// keyfunc picks the key for a token strictly by algorithm family: the shared
// secret for HMAC, a JWKS public key of the matching type for ECDSA/RSA,
// whose key set's generation it stores in keys.
func (v *Verifier) keyfunc(ctx context.Context, keys *uint64) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		for _, h := range refusedHeaders {
			if _, ok := t.Header[h]; ok {
				return nil, fmt.Errorf("header %q is not accepted", h)
			}
		}
		if typ, ok := t.Header["typ"]; ok {
			if s, _ := typ.(string); !strings.EqualFold(s, "JWT") {
				return nil, errors.New("unexpected typ")
			}
		}
		switch t.Method.(type) {
		case *jwt.SigningMethodHMAC:
			// Like the Auth server, HS256 tokens are checked against the
			// legacy secret whatever their kid says: symmetric keys are
			// never published, so a kid cannot select one.
			if t.Method.Alg() != jwt.SigningMethodHS256.Alg() || len(v.secret) == 0 {
				return nil, errors.New("HS256 is not configured")
			}
			return v.secret, nil
		case *jwt.SigningMethodECDSA, *jwt.SigningMethodRSA:
			if v.jwks == nil {
				return nil, errors.New("no JWKS configured")
			}
			kid, ok := t.Header["kid"].(string)
			if !ok || kid == "" || len(kid) > maxKIDLength {
				return nil, errors.New("asymmetric tokens need a kid")
			}
			key, gen, err := v.jwks.key(ctx, t, kid)
			if err != nil {
				return nil, err
			}
			*keys = gen
			return checkKeyType(t.Method.Alg(), key)
		}
		return nil, errors.New("unsupported signing method")
	}
}

// checkKeyType returns key only if it is the type alg requires: a P-256
// public key for ES256, an RSA public key of at least 2048 bits for RS256.
// Anything else (a []byte from an "oct" JWK, a key of another curve) fails,
// so a JWKS entry can never turn into an HMAC secret.
func checkKeyType(alg string, key any) (any, error) {
	switch alg {
	case jwt.SigningMethodES256.Alg():
		if k, ok := key.(*ecdsa.PublicKey); ok && k.Curve == elliptic.P256() {
			return k, nil
		}
	case jwt.SigningMethodRS256.Alg():
		if k, ok := key.(*rsa.PublicKey); ok && k.N.BitLen() >= 2048 {
			return k, nil
		}
	}
	return nil, errors.New("key type does not match alg")
}
