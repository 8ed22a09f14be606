package auth_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/auth"
	"github.com/tokka-dev/tokka/pkg/authtest"
)

// TestSecretOfExactlyMinSecretLengthIsAccepted pins the secret-length bound
// from the accepting side (TestNewVerifierRefusesUnsafeConfig pins 31):
// scripts/mutate found "< MinSecretLength" could become "<=" unnoticed.
func TestSecretOfExactlyMinSecretLengthIsAccepted(t *testing.T) {
	t.Parallel()
	_, err := auth.NewVerifier(auth.Config{HS256Secret: []byte(strings.Repeat("x", auth.MinSecretLength))})
	require.NoError(t, err)
}

// TestLeewayOfExactlyTwoMinutesIsAccepted: the documented maximum is allowed.
func TestLeewayOfExactlyTwoMinutesIsAccepted(t *testing.T) {
	t.Parallel()
	_, err := auth.NewVerifier(auth.Config{HS256Secret: []byte(secret), Leeway: 2 * time.Minute})
	require.NoError(t, err)
	_, err = auth.NewVerifier(auth.Config{HS256Secret: []byte(secret), Leeway: 2*time.Minute + time.Nanosecond})
	require.Error(t, err)
}

// TestJWKSURLMustBeAbsoluteHTTPS: https and http URLs with a host are taken
// (the port here refuses connections, so the warm-up fetch fails quietly);
// an unparsable URL or one without a host is an error, never a panic.
func TestJWKSURLMustBeAbsoluteHTTPS(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"https://127.0.0.1:1/auth/v1/.well-known/jwks.json", "http://127.0.0.1:1/jwks.json"} {
		_, err := auth.NewVerifier(auth.Config{JWKSURL: ok})
		require.NoError(t, err, ok)
	}
	for _, bad := range []string{"https:///auth/v1/.well-known/jwks.json", "https:jwks.json", "http://[::1/jwks.json", "ftp://127.0.0.1/jwks.json"} {
		_, err := auth.NewVerifier(auth.Config{JWKSURL: bad})
		require.Error(t, err, bad)
	}
}

// TestTokenLengthLimitIsExact: a genuine token of exactly MaxTokenLength
// bytes verifies, and one a few bytes longer is refused even though its
// signature is good.
func TestTokenLengthLimitIsExact(t *testing.T) {
	t.Parallel()
	const base = "https://ref.supabase.co/auth/v1"
	// The email appears twice in the claims and the issuer once, so padding
	// both reaches every token length.
	mint := func(pad, issPad int) (string, string) {
		iss := base + strings.Repeat("x", issPad)
		return hs(t, authtest.Token{Issuer: iss, Email: strings.Repeat("a", pad) + "@example.com"}, secret), iss
	}
	var exact, exactIss, over, overIss string
	// Start near the limit: about three quarters of a token is its payload.
	for pad := auth.MaxTokenLength/4 - 200; exact == "" || over == ""; pad++ {
		for issPad := 0; issPad < 3; issPad++ {
			tok, iss := mint(pad, issPad)
			switch {
			case len(tok) == auth.MaxTokenLength && exact == "":
				exact, exactIss = tok, iss
			case len(tok) > auth.MaxTokenLength && over == "":
				over, overIss = tok, iss
			}
		}
		require.Less(t, pad, auth.MaxTokenLength, "no padding reached the limit")
	}
	ctx := context.Background()
	v, err := auth.NewVerifier(auth.Config{HS256Secret: []byte(secret), Issuer: exactIss})
	require.NoError(t, err)
	_, err = v.Verify(ctx, exact)
	require.NoError(t, err, "a token of exactly MaxTokenLength bytes")
	v, err = auth.NewVerifier(auth.Config{HS256Secret: []byte(secret), Issuer: overIss})
	require.NoError(t, err)
	_, err = v.Verify(ctx, over)
	requireUnauthorized(t, err, "a validly signed token of %d bytes", len(over))
}

// TestLifetimeLimitIsExact: with the default MaxLifetime (7 days) and
// leeway (30 s), a token whose exp is exactly that far ahead verifies and
// one a second later is refused.
func TestLifetimeLimitIsExact(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_900_000_000, 0)
	v, err := auth.NewVerifier(auth.Config{HS256Secret: []byte(secret), Now: func() time.Time { return now }})
	require.NoError(t, err)
	limit := 7*24*time.Hour + 30*time.Second
	_, err = v.Verify(context.Background(), hs(t, authtest.Token{IssuedAt: now, TTL: limit}, secret))
	require.NoError(t, err, "exp exactly MaxLifetime + leeway ahead")
	_, err = v.Verify(context.Background(), hs(t, authtest.Token{IssuedAt: now, TTL: limit + time.Second}, secret))
	requireUnauthorized(t, err, "exp a second beyond")
}

// TestDatesMustBeJSONNumbers: exp, iat and nbf are refused as strings (the
// JWT library alone would take "123"), and numbers at the edges of the
// digit check (a leading 0 or 9) are taken.
func TestDatesMustBeJSONNumbers(t *testing.T) {
	t.Parallel()
	v, err := auth.NewVerifier(auth.Config{HS256Secret: []byte(secret)})
	require.NoError(t, err)
	sign := func(claim string, value any) string {
		c := authtest.Token{}.Claims()
		c[claim] = value
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
		require.NoError(t, err)
		return tok
	}
	ctx := context.Background()
	for _, nbf := range []any{0, 9, 999999999} {
		_, err := v.Verify(ctx, sign("nbf", nbf))
		require.NoError(t, err, "nbf %v", nbf)
	}
	c := authtest.Token{}.Claims()
	for _, claim := range []string{"exp", "iat", "nbf"} {
		value := c["iat"].(int64)
		if claim == "exp" {
			value = c["exp"].(int64)
		}
		_, err := v.Verify(ctx, sign(claim, strconv.FormatInt(value, 10)))
		requireUnauthorized(t, err, "%s as a string", claim)
	}
}

// TestOverlongKIDsCostNoFetch: an asymmetric token whose kid is empty or
// longer than any real one is refused before the key cache is asked, so it
// cannot make the verifier fetch the JWKS even once MinInterval has passed.
func TestOverlongKIDsCostNoFetch(t *testing.T) {
	t.Parallel()
	good := mustKey(t, "ES256", "es-1")
	js := newJWKSServer(t, good)
	clk := newClock()
	v, err := auth.NewVerifier(auth.Config{JWKSURL: js.url, Now: clk.Now})
	require.NoError(t, err)
	ctx := context.Background()
	_, err = v.Verify(ctx, sign(t, authtest.Token{IssuedAt: clk.Now()}, good))
	require.NoError(t, err)
	require.EqualValues(t, 1, js.Requests())
	clk.Advance(31 * time.Second) // past MinInterval, well within RefreshAfter
	for _, kid := range []string{strings.Repeat("k", 129), ""} {
		_, err = v.Verify(ctx, sign(t, authtest.Token{IssuedAt: clk.Now()}, mustKey(t, "ES256", kid)))
		requireUnauthorized(t, err)
		require.EqualValues(t, 1, js.Requests(), "a kid of %d characters must not reach the key cache", len(kid))
	}
	// The same token with a kid of 128 characters is looked up (and, being
	// unknown, triggers the one allowed fetch).
	_, err = v.Verify(ctx, sign(t, authtest.Token{IssuedAt: clk.Now()}, mustKey(t, "ES256", strings.Repeat("k", 128))))
	requireUnauthorized(t, err)
	require.EqualValues(t, 2, js.Requests())
}

// TestKidNamingAKeyOfAnotherTypeIsRefused: a JWKS entry without an alg whose
// kid an RS256 token names, but which is an EC key (and the reverse), is
// refused by the key-type check, not trusted and not a crash.
func TestKidNamingAKeyOfAnotherTypeIsRefused(t *testing.T) {
	t.Parallel()
	ec, rs := mustKey(t, "ES256", "ec-as-rs"), mustKey(t, "RS256", "rs-as-ec")
	js := newJWKSServer(t)
	var keys []map[string]any
	for _, k := range []*authtest.Key{ec, rs} {
		jwk := k.JWK()
		delete(jwk, "alg")
		keys = append(keys, jwk)
	}
	doc, err := json.Marshal(map[string]any{"keys": keys})
	require.NoError(t, err)
	js.SetRaw(doc)
	v, err := auth.NewVerifier(auth.Config{JWKSURL: js.url})
	require.NoError(t, err)
	ctx := context.Background()
	_, err = v.Verify(ctx, sign(t, authtest.Token{}, ec))
	require.NoError(t, err, "control: the EC key verifies its own ES256 token")
	// Same kids, the other algorithm, signed by a key of that type.
	_, err = v.Verify(ctx, sign(t, authtest.Token{}, mustKey(t, "RS256", "ec-as-rs")))
	requireUnauthorized(t, err, "RS256 token naming an EC key")
	_, err = v.Verify(ctx, sign(t, authtest.Token{}, mustKey(t, "ES256", "rs-as-ec")))
	requireUnauthorized(t, err, "ES256 token naming an RSA key")
}
