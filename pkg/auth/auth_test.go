package auth_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/auth"
	"github.com/tokka-dev/tokka/pkg/authtest"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

const secret = "auth-test-secret-auth-test-secret-0123456789"

// clock is a settable time source shared by the verifier and the test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// jwksServer serves a KeySet and can be taken down.
type jwksServer struct {
	*authtest.KeySet
	url  string
	down atomic.Bool
}

func newJWKSServer(t *testing.T, keys ...*authtest.Key) *jwksServer {
	t.Helper()
	s := &jwksServer{KeySet: authtest.NewKeySet(keys...)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.down.Load() {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		s.KeySet.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL + "/auth/v1/.well-known/jwks.json"
	return s
}

func mustKey(t *testing.T, alg, kid string) *authtest.Key {
	t.Helper()
	var k *authtest.Key
	var err error
	if alg == "RS256" {
		k, err = authtest.NewRS256Key(kid)
	} else {
		k, err = authtest.NewES256Key(kid)
	}
	require.NoError(t, err)
	return k
}

func sign(t *testing.T, tok authtest.Token, k *authtest.Key) string {
	t.Helper()
	s, err := tok.Sign(k)
	require.NoError(t, err)
	return s
}

func hs(t *testing.T, tok authtest.Token, key string) string {
	t.Helper()
	s, err := tok.HS256([]byte(key))
	require.NoError(t, err)
	return s
}

func requireUnauthorized(t *testing.T, err error, msgAndArgs ...any) {
	t.Helper()
	require.Error(t, err, msgAndArgs...)
	require.Equal(t, tokka.CodeUnauthorized, tokka.ErrorCode(err), msgAndArgs...)
	require.Equal(t, "missing or invalid access token", err.(*tokka.Error).Message, "every refusal looks the same")
}

func TestVerifiesEveryConfiguredKeyType(t *testing.T) {
	t.Parallel()
	es, rs := mustKey(t, "ES256", "es-1"), mustKey(t, "RS256", "rs-1")
	js := newJWKSServer(t, es, rs)
	v, err := auth.NewVerifier(auth.Config{HS256Secret: []byte(secret), JWKSURL: js.url, Issuer: "https://ref.supabase.co/auth/v1"})
	require.NoError(t, err)
	ctx := context.Background()
	for name, tok := range map[string]func(authtest.Token) string{
		"HS256": func(tk authtest.Token) string { return hs(t, tk, secret) },
		"ES256": func(tk authtest.Token) string { return sign(t, tk, es) },
		"RS256": func(tk authtest.Token) string { return sign(t, tk, rs) },
	} {
		id := uuid.NewString()
		raw := tok(authtest.Token{Subject: strings.ToUpper(id), Email: "a@example.com", Issuer: "https://ref.supabase.co/auth/v1"})
		u, err := v.Verify(ctx, raw)
		require.NoError(t, err, name)
		require.Equal(t, id, u.ID, name)
		require.Equal(t, "a@example.com", u.Email)
		payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(raw, ".")[1])
		require.Equal(t, string(payload), string(u.Claims), "Postgres gets the signed payload byte for byte")
	}
	require.EqualValues(t, 1, js.Requests(), "one fetch serves every token")
}

// TestAlgorithmFollowsKeyType: an HS256 token never verifies against a
// public key, whatever bytes of it were used as the HMAC secret, and an
// asymmetric token never verifies without a JWKS.
func TestAlgorithmFollowsKeyType(t *testing.T) {
	t.Parallel()
	es, rs := mustKey(t, "ES256", "es-1"), mustKey(t, "RS256", "rs-1")
	js := newJWKSServer(t, es, rs)
	jwksOnly, err := auth.NewVerifier(auth.Config{JWKSURL: js.url})
	require.NoError(t, err)
	ctx := context.Background()
	for _, k := range []*authtest.Key{es, rs} {
		der, err := x509.MarshalPKIXPublicKey(k.Public())
		require.NoError(t, err)
		pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
		jwkJSON, _ := json.Marshal(k.JWK())
		for _, hmacKey := range [][]byte{der, pemBytes, jwkJSON, authtest.JWKS(k)} {
			tok := jwt.NewWithClaims(jwt.SigningMethodHS256, authtest.Token{}.Claims())
			tok.Header["kid"] = k.KID
			s, err := tok.SignedString(hmacKey)
			require.NoError(t, err)
			_, err = jwksOnly.Verify(ctx, s)
			requireUnauthorized(t, err, k.Alg)
		}
	}
	// Sanity: the same verifier accepts the real thing.
	_, err = jwksOnly.Verify(ctx, sign(t, authtest.Token{}, es))
	require.NoError(t, err)

	secretOnly, err := auth.NewVerifier(auth.Config{HS256Secret: []byte(secret)})
	require.NoError(t, err)
	_, err = secretOnly.Verify(ctx, sign(t, authtest.Token{}, es))
	requireUnauthorized(t, err)
	_, err = secretOnly.Verify(ctx, hs(t, authtest.Token{}, secret))
	require.NoError(t, err)
}

// TestJWKSCacheIsBoundedAndRateLimited drives the cache with a fake clock:
// one fetch serves many tokens, unknown kids (which anyone can send) cause
// at most one fetch per MinInterval, a rotated-in key is picked up, a
// revoked key stops verifying once the set is re-read, and keys older than
// MaxAge are not trusted when the set cannot be re-read (fail closed).
func TestJWKSCacheIsBoundedAndRateLimited(t *testing.T) {
	t.Parallel()
	k1, k2 := mustKey(t, "ES256", "k1"), mustKey(t, "RS256", "k2")
	js := newJWKSServer(t, k1)
	clk := newClock()
	v, err := auth.NewVerifier(auth.Config{JWKSURL: js.url, Now: clk.Now, JWKS: auth.JWKSOptions{
		RefreshAfter: 5 * time.Minute, MaxAge: 10 * time.Minute, MinInterval: 30 * time.Second}})
	require.NoError(t, err)
	ctx := context.Background()
	verify := func(k *authtest.Key) error {
		_, err := v.Verify(ctx, sign(t, authtest.Token{IssuedAt: clk.Now()}, k))
		return err
	}
	require.NoError(t, verify(k1))
	require.EqualValues(t, 1, js.Requests())

	// A flood of unknown kids right after a fetch fetches nothing.
	for i := 0; i < 50; i++ {
		requireUnauthorized(t, verify(mustKey(t, "ES256", "unknown-"+uuid.NewString())))
	}
	require.EqualValues(t, 1, js.Requests(), "unknown kids must not trigger a fetch within MinInterval")

	// Rotation: k2 is published; after MinInterval its first token refreshes.
	js.Set(k1, k2)
	requireUnauthorized(t, verify(k2))
	clk.Advance(31 * time.Second)
	require.NoError(t, verify(k2))
	require.EqualValues(t, 2, js.Requests())
	impostor := mustKey(t, "RS256", "k2")
	for i := 0; i < 20; i++ {
		requireUnauthorized(t, verify(impostor), "same kid, other key: the signature decides")
	}
	require.EqualValues(t, 2, js.Requests())

	// Revocation: k1 leaves the set; once the keys are stale they are
	// re-read and k1 stops verifying.
	js.Set(k2)
	clk.Advance(5 * time.Minute)
	require.Eventually(t, func() bool { return verify(k1) != nil }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, verify(k2))
	require.EqualValues(t, 3, js.Requests())

	// The Auth server goes away: keys still serve until MaxAge, then
	// nothing verifies until it is back.
	js.down.Store(true)
	clk.Advance(6 * time.Minute)
	require.NoError(t, verify(k2), "within MaxAge the last good keys are used while refreshing fails")
	clk.Advance(5 * time.Minute)
	requireUnauthorized(t, verify(k2), "keys older than MaxAge must not be trusted")
	js.down.Store(false)
	requireUnauthorized(t, verify(k2), "and the next fetch still waits for MinInterval")
	clk.Advance(31 * time.Second)
	require.NoError(t, verify(k2))
}

// TestJWKSKeepsOnlySigningKeys serves a hostile key set: a symmetric key, an
// encryption key, a sign-only key, a kid-less key, a weak RSA key and a key
// with a certificate URL. Only the signing keys verify, and nothing in the
// set makes the verifier fetch anything else.
func TestJWKSKeepsOnlySigningKeys(t *testing.T) {
	t.Parallel()
	var attackerHits atomic.Int64
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		attackerHits.Add(1)
	}))
	t.Cleanup(attacker.Close)

	good := mustKey(t, "ES256", "good")
	enc, signOnly, noKID, withX5U := mustKey(t, "ES256", "enc"), mustKey(t, "ES256", "sign-only"), mustKey(t, "ES256", ""), mustKey(t, "ES256", "x5u")
	weak := weakRSAKey(t, "weak")
	octSecret := []byte("this-is-a-symmetric-key-in-a-jwks-0123456789")
	keys := []map[string]any{
		good.JWK(),
		{"kty": "oct", "kid": "oct", "alg": "HS256", "k": base64.RawURLEncoding.EncodeToString(octSecret)},
		with(enc.JWK(), "use", "enc"),
		with(signOnly.JWK(), "key_ops", []string{"sign"}),
		with(noKID.JWK(), "kid", ""),
		weak.jwk,
		with(withX5U.JWK(), "x5u", attacker.URL+"/cert.pem"),
	}
	doc, _ := json.Marshal(map[string]any{"keys": keys})
	js := newJWKSServer(t)
	js.SetRaw(doc)
	v, err := auth.NewVerifier(auth.Config{HS256Secret: []byte(secret), JWKSURL: js.url})
	require.NoError(t, err)
	ctx := context.Background()

	_, err = v.Verify(ctx, sign(t, authtest.Token{}, good))
	require.NoError(t, err)
	octTok := jwt.NewWithClaims(jwt.SigningMethodHS256, authtest.Token{}.Claims())
	octTok.Header["kid"] = "oct"
	s, err := octTok.SignedString(octSecret)
	require.NoError(t, err)
	_, err = v.Verify(ctx, s)
	requireUnauthorized(t, err, "an oct key from a URL is never an HMAC secret")
	for _, k := range []*authtest.Key{enc, signOnly} {
		_, err = v.Verify(ctx, sign(t, authtest.Token{}, k))
		requireUnauthorized(t, err, k.KID)
	}
	// A certificate URL is ignored, never fetched: the key is what the JWK
	// itself says.
	_, err = v.Verify(ctx, sign(t, authtest.Token{}, withX5U))
	require.NoError(t, err)
	weakTok := jwt.NewWithClaims(jwt.SigningMethodRS256, authtest.Token{}.Claims())
	weakTok.Header["kid"] = "weak"
	s, err = weakTok.SignedString(weak.key)
	require.NoError(t, err)
	_, err = v.Verify(ctx, s)
	requireUnauthorized(t, err, "RSA keys under 2048 bits are refused")
	require.Zero(t, attackerHits.Load(), "no URL inside the key set may be fetched")
}

func TestJWKSFetchIsBounded(t *testing.T) {
	t.Parallel()
	k := mustKey(t, "ES256", "k")
	var attackerHits atomic.Int64
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		attackerHits.Add(1)
		_, _ = w.Write(authtest.JWKS(k))
	}))
	t.Cleanup(attacker.Close)
	cases := map[string]http.HandlerFunc{
		"redirect": func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, attacker.URL+"/jwks.json", http.StatusFound)
		},
		"too large": func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(`{"keys":[` + strings.Repeat(" ", 2<<20) + `]}`))
		},
		"not json": func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("<html>")) },
		"error":    func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "no", http.StatusInternalServerError) },
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(h)
			t.Cleanup(srv.Close)
			v, err := auth.NewVerifier(auth.Config{JWKSURL: srv.URL})
			require.NoError(t, err)
			_, err = v.Verify(context.Background(), sign(t, authtest.Token{}, k))
			requireUnauthorized(t, err)
		})
	}
	require.Zero(t, attackerHits.Load(), "redirects are not followed")
}

func TestNewVerifierRefusesUnsafeConfig(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]auth.Config{
		"nothing":       {},
		"short secret":  {HS256Secret: []byte("secret")},
		"31 characters": {HS256Secret: []byte(strings.Repeat("x", 31))},
		"bad jwks url":  {JWKSURL: "file:///etc/passwd"},
		"relative url":  {JWKSURL: "/jwks.json"},
		"cache too long": {JWKSURL: "https://ref.supabase.co/auth/v1/.well-known/jwks.json",
			JWKS: auth.JWKSOptions{MaxAge: 11 * time.Minute}},
		"huge leeway": {HS256Secret: []byte(secret), Leeway: time.Hour},
	} {
		_, err := auth.NewVerifier(cfg)
		require.Error(t, err, name)
	}
}

// TestClaimsAreChecked covers the claim rules at the verifier level; the
// HTTP attack suite in pkg/httpapi repeats them end to end.
func TestClaimsAreChecked(t *testing.T) {
	t.Parallel()
	clk := newClock()
	const iss = "https://ref.supabase.co/auth/v1"
	v, err := auth.NewVerifier(auth.Config{HS256Secret: []byte(secret), Issuer: iss, Now: clk.Now})
	require.NoError(t, err)
	now := clk.Now()
	claims := func(mod func(jwt.MapClaims)) string {
		c := authtest.Token{Issuer: iss, IssuedAt: now}.Claims()
		mod(c)
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
		require.NoError(t, err)
		return s
	}
	ok := claims(func(jwt.MapClaims) {})
	_, err = v.Verify(context.Background(), ok)
	require.NoError(t, err)
	bad := map[string]func(jwt.MapClaims){
		"no exp":         func(c jwt.MapClaims) { delete(c, "exp") },
		"expired":        func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() },
		"exp in 10y":     func(c jwt.MapClaims) { c["exp"] = now.AddDate(10, 0, 0).Unix() },
		"nbf later":      func(c jwt.MapClaims) { c["nbf"] = now.Add(5 * time.Minute).Unix() },
		"iat later":      func(c jwt.MapClaims) { c["iat"] = now.Add(5 * time.Minute).Unix() },
		"no iat":         func(c jwt.MapClaims) { delete(c, "iat") },
		"aud anon":       func(c jwt.MapClaims) { c["aud"] = "anon" },
		"no aud":         func(c jwt.MapClaims) { delete(c, "aud") },
		"aud array":      func(c jwt.MapClaims) { c["aud"] = []string{"anon", "service"} },
		"other project":  func(c jwt.MapClaims) { c["iss"] = "https://other.supabase.co/auth/v1" },
		"http iss":       func(c jwt.MapClaims) { c["iss"] = "http://ref.supabase.co/auth/v1" },
		"iss slash":      func(c jwt.MapClaims) { c["iss"] = iss + "/" },
		"no iss":         func(c jwt.MapClaims) { delete(c, "iss") },
		"anon role":      func(c jwt.MapClaims) { c["role"] = "anon" },
		"service role":   func(c jwt.MapClaims) { c["role"] = "service_role" },
		"no role":        func(c jwt.MapClaims) { delete(c, "role") },
		"no sub":         func(c jwt.MapClaims) { delete(c, "sub") },
		"sub not uuid":   func(c jwt.MapClaims) { c["sub"] = "admin" },
		"sub urn uuid":   func(c jwt.MapClaims) { c["sub"] = "urn:uuid:" + uuid.NewString() },
		"sub braced":     func(c jwt.MapClaims) { c["sub"] = "{" + uuid.NewString() + "}" },
		"exp as string":  func(c jwt.MapClaims) { c["exp"] = "9999999999" },
		"role not str":   func(c jwt.MapClaims) { c["role"] = []string{"authenticated"} },
		"sub as number":  func(c jwt.MapClaims) { c["sub"] = 12345 },
		"nbf far future": func(c jwt.MapClaims) { c["nbf"] = now.AddDate(1, 0, 0).Unix() },
	}
	for name, mod := range bad {
		_, err := v.Verify(context.Background(), claims(mod))
		requireUnauthorized(t, err, name)
	}
	// Leeway: 20 seconds of skew either way is tolerated, a minute is not.
	_, err = v.Verify(context.Background(), claims(func(c jwt.MapClaims) { c["iat"] = now.Add(20 * time.Second).Unix() }))
	require.NoError(t, err)
	clk.Advance(time.Hour + 20*time.Second)
	_, err = v.Verify(context.Background(), ok)
	require.NoError(t, err, "exp 20s ago is within leeway")
	clk.Advance(time.Minute)
	_, err = v.Verify(context.Background(), ok)
	requireUnauthorized(t, err)
}

func with(m map[string]any, k string, v any) map[string]any {
	m[k] = v
	if k == "kid" && v == "" {
		delete(m, "kid")
	}
	return m
}

type weakKey struct {
	key *rsa.PrivateKey
	jwk map[string]any
}

// weakRSAKey is a 1024-bit RSA key: usable, but below what the verifier
// accepts.
func weakRSAKey(t *testing.T, kid string) weakKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 1024)
	require.NoError(t, err)
	b64 := base64.RawURLEncoding.EncodeToString
	return weakKey{key: k, jwk: map[string]any{"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
		"n": b64(k.N.Bytes()), "e": "AQAB"}}
}
