package httpapi_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/authtest"
	"github.com/tokka-dev/tokka/pkg/httpapi"
)

func newConnBody(key string) map[string]string {
	return map[string]string{"provider": "openai", "label": "org", "api_key": key}
}

// uniqueKey returns an admin key no other call returns: the same key twice
// for one user is refused as already connected.
func uniqueKey(prefix string) string {
	return prefix + strings.ReplaceAll(uuid.NewString(), "-", "")
}

func (b *testBundle) connect(t *testing.T, u user) string {
	t.Helper()
	status, _, body := b.do(t, u, http.MethodPost, "/v1/connections", newConnBody(uniqueKey("sk-admin-security")))
	require.Equal(t, http.StatusCreated, status, string(body))
	var c struct{ ID string }
	require.NoError(t, json.Unmarshal(body, &c))
	return c.ID
}

func (b *testBundle) countConnections(t *testing.T, userID string) int {
	t.Helper()
	var n int
	require.NoError(t, b.sql.Get(&n, `SELECT count(*) FROM tokka.connections WHERE team_id = $1`, userID))
	return n
}

func requireProblem(t *testing.T, status int, h http.Header, body []byte, want int, msgAndArgs ...any) {
	t.Helper()
	require.Equal(t, want, status, append(msgAndArgs, string(body))...)
	require.Equal(t, "application/problem+json", h.Get("Content-Type"), msgAndArgs...)
	var p httpapi.Problem
	require.NoError(t, json.Unmarshal(body, &p), msgAndArgs...)
	require.Equal(t, want, p.Status, msgAndArgs...)
}

// --- token forging helpers -------------------------------------------------

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func b64JSON(v any) string {
	raw, _ := json.Marshal(v)
	return b64(raw)
}

// hmacToken signs header.claims with HMAC-SHA256 under key, by hand, so
// even an empty key works.
func hmacToken(header map[string]any, claims jwt.MapClaims, key []byte) string {
	si := b64JSON(header) + "." + b64JSON(claims)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(si))
	return si + "." + b64(m.Sum(nil))
}

// signedWith signs claims with an arbitrary header using method and key.
func signedWith(t *testing.T, method jwt.SigningMethod, header map[string]any, claims jwt.MapClaims, key any) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	tok.Header = header
	tok.Header["alg"] = method.Alg()
	s, err := tok.SignedString(key)
	require.NoError(t, err)
	return s
}

func selfSignedCert(t *testing.T, k *authtest.Key) []byte {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "attacker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k.Private())
	require.NoError(t, err)
	return der
}

// TestJWTAttackSuite runs every forged-token case of the reference (C3,
// J1–J14) against /v1/me and POST /v1/connections: each is a 401 problem,
// nothing is stored, nothing panics, no token reaches the logs, and no
// token header makes the API fetch anything (an attacker's listener must
// receive zero requests).
func TestJWTAttackSuite(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var attackerHits atomic.Int64
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		attackerHits.Add(1)
		_, _ = w.Write(authtest.JWKS(evilES, evilRS))
	}))
	t.Cleanup(attacker.Close)

	victim := uuid.NewString()
	now := time.Now()
	claims := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		c := authtest.Token{Subject: victim, Issuer: issuer, IssuedAt: now}.Claims()
		if mod != nil {
			mod(c)
		}
		return c
	}
	hdr := func(alg string, kv ...any) map[string]any {
		h := map[string]any{"alg": alg, "typ": "JWT"}
		for i := 0; i+1 < len(kv); i += 2 {
			h[kv[i].(string)] = kv[i+1]
		}
		return h
	}
	hsGood := hmacToken(hdr("HS256"), claims(nil), []byte(jwtSecret))
	esGood := signedWith(t, jwt.SigningMethodES256, hdr("ES256", "kid", "es-1"), claims(nil), esKey.Private())
	rsGood := signedWith(t, jwt.SigningMethodRS256, hdr("RS256", "kid", "rs-1"), claims(nil), rsKey.Private())
	for name, tok := range map[string]string{"HS256": hsGood, "ES256": esGood, "RS256": rsGood} {
		status, _, body := b.do(t, bearer(tok), http.MethodGet, "/v1/me", nil)
		require.Equal(t, http.StatusOK, status, "control %s must pass: %s", name, body)
	}
	split := func(tok string) []string { return strings.Split(tok, ".") }
	hsParts, esParts := split(hsGood), split(esGood)

	type attack struct {
		name  string
		token string   // sent as "Bearer <token>" unless raw is set
		raw   []string // Authorization header values as sent
		query string   // appended to the path
		extra []string // other headers
	}
	var cases []attack
	add := func(name, tok string) { cases = append(cases, attack{name: name, token: tok}) }

	// J1: alg none in every casing, signature empty or kept.
	for _, alg := range []string{"none", "None", "NONE", "nOnE"} {
		unsigned := b64JSON(hdr(alg)) + "." + b64JSON(claims(nil))
		add("J1 alg "+alg+" empty sig", unsigned+".")
		add("J1 alg "+alg+" kept sig", unsigned+"."+hsParts[2])
		add("J1 alg "+alg+" no sig part", unsigned)
	}
	// J2: null signature.
	add("J2 HS256 null signature", hsParts[0]+"."+hsParts[1]+".")
	add("J2 ES256 null signature", esParts[0]+"."+esParts[1]+".")
	// J3: HS/RS and HS/ES key confusion with every encoding of the public key.
	for _, k := range []*authtest.Key{rsKey, esKey} {
		der, err := x509.MarshalPKIXPublicKey(k.Public())
		require.NoError(t, err)
		pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
		jwkJSON, _ := json.Marshal(k.JWK())
		secrets := map[string][]byte{"PEM": pemBytes, "PEM no newline": bytes.TrimSpace(pemBytes), "DER": der,
			"JWK": jwkJSON, "JWKS": authtest.JWKS(k)}
		if rk, ok := k.Public().(*rsa.PublicKey); ok {
			secrets["modulus"] = rk.N.Bytes()
			secrets["PKCS1"] = x509.MarshalPKCS1PublicKey(rk)
		}
		if ek, ok := k.Public().(*ecdsa.PublicKey); ok {
			raw, _ := ek.Bytes()
			secrets["point"] = raw
		}
		for enc, secret := range secrets {
			add("J3 HS256 with "+k.Alg+" public key as "+enc, hmacToken(hdr("HS256", "kid", k.KID), claims(nil), secret))
			add("J3 HS256 with "+k.Alg+" public key as "+enc+", no kid", hmacToken(hdr("HS256"), claims(nil), secret))
		}
	}
	// J4: weak and well-known secrets.
	for _, weak := range []string{"", "secret", "password", "your-256-bit-secret",
		"super-secret-jwt-token-with-at-least-32-characters-long", jwtSecret[:31], jwtSecret + " "} {
		add(fmt.Sprintf("J4 HS256 with %q", weak), hmacToken(hdr("HS256"), claims(nil), []byte(weak)))
	}
	// J5: the token names its own key: embedded jwk, jku, x5u, x5c.
	evilJWK := evilES.JWK()
	add("J5 embedded jwk, known kid", signedWith(t, jwt.SigningMethodES256, hdr("ES256", "kid", "es-1", "jwk", evilJWK), claims(nil), evilES.Private()))
	add("J5 embedded jwk, own kid", signedWith(t, jwt.SigningMethodES256, hdr("ES256", "kid", "evil", "jwk", evilJWK), claims(nil), evilES.Private()))
	add("J5 embedded jwk, no kid", signedWith(t, jwt.SigningMethodES256, hdr("ES256", "jwk", evilJWK), claims(nil), evilES.Private()))
	add("J5 jku", signedWith(t, jwt.SigningMethodES256, hdr("ES256", "kid", "evil", "jku", attacker.URL+"/jwks.json"), claims(nil), evilES.Private()))
	add("J5 jku, known kid", signedWith(t, jwt.SigningMethodES256, hdr("ES256", "kid", "es-1", "jku", attacker.URL+"/jwks.json"), claims(nil), evilES.Private()))
	add("J5 x5u", signedWith(t, jwt.SigningMethodRS256, hdr("RS256", "kid", "evil-rs", "x5u", attacker.URL+"/cert.pem"), claims(nil), evilRS.Private()))
	add("J5 x5c", signedWith(t, jwt.SigningMethodES256, hdr("ES256", "x5c", []string{base64.StdEncoding.EncodeToString(selfSignedCert(t, evilES))}), claims(nil), evilES.Private()))
	add("J5 jku on a validly signed token", signedWith(t, jwt.SigningMethodES256, hdr("ES256", "kid", "es-1", "jku", attacker.URL+"/jwks.json"), claims(nil), esKey.Private()))
	// J6: hostile kid values.
	for name, kid := range map[string]any{"path": "../../../../dev/null", "sql": "' OR '1'='1", "unknown": "nope",
		"long": strings.Repeat("k", 4000), "number": 7, "null": nil, "array": []string{"es-1"}, "url": attacker.URL} {
		add("J6 ES256 kid "+name, signedWith(t, jwt.SigningMethodES256, hdr("ES256", "kid", kid), claims(nil), evilES.Private()))
		add("J6 HS256 empty key kid "+name, hmacToken(hdr("HS256", "kid", kid), claims(nil), nil))
	}
	add("J6 ES256 kid too long", signedWith(t, jwt.SigningMethodES256, hdr("ES256", "kid", strings.Repeat("k", 9000)), claims(nil), esKey.Private()))
	// J7: psychic signature (r = s = 0), raw and DER.
	add("J7 ES256 r=s=0", esParts[0]+"."+esParts[1]+"."+b64(make([]byte, 64)))
	add("J7 ES256 r=s=0 DER", esParts[0]+"."+esParts[1]+"."+b64([]byte{0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00}))
	add("J7 ES256 wrong length", esParts[0]+"."+esParts[1]+"."+b64(make([]byte, 63)))
	// J8: time claims.
	for name, mod := range map[string]func(jwt.MapClaims){
		"exp missing":    func(c jwt.MapClaims) { delete(c, "exp") },
		"exp past":       func(c jwt.MapClaims) { c["exp"] = now.Add(-5 * time.Minute).Unix() },
		"exp far future": func(c jwt.MapClaims) { c["exp"] = now.AddDate(50, 0, 0).Unix() },
		"nbf future":     func(c jwt.MapClaims) { c["nbf"] = now.Add(10 * time.Minute).Unix() },
		"iat future":     func(c jwt.MapClaims) { c["iat"] = now.Add(10 * time.Minute).Unix() },
		"exp string":     func(c jwt.MapClaims) { c["exp"] = strconv.FormatInt(now.Add(time.Hour).Unix(), 10) },
	} {
		add("J8 HS256 "+name, hmacToken(hdr("HS256"), claims(mod), []byte(jwtSecret)))
		add("J8 ES256 "+name, signedWith(t, jwt.SigningMethodES256, hdr("ES256", "kid", "es-1"), claims(mod), esKey.Private()))
	}
	// J9: audience.
	for name, aud := range map[string]any{"anon": "anon", "missing": nil, "array without": []string{"anon", "service"},
		"empty": "", "case": "Authenticated"} {
		mod := func(c jwt.MapClaims) {
			if aud == nil {
				delete(c, "aud")
			} else {
				c["aud"] = aud
			}
		}
		add("J9 aud "+name, hmacToken(hdr("HS256"), claims(mod), []byte(jwtSecret)))
	}
	// J10: issuer.
	for name, iss := range map[string]any{"other project": "https://otherproject.supabase.co/auth/v1",
		"http": "http://tokka-test.supabase.co/auth/v1", "trailing slash": issuer + "/", "missing": nil,
		"legacy supabase": "supabase"} {
		mod := func(c jwt.MapClaims) {
			if iss == nil {
				delete(c, "iss")
			} else {
				c["iss"] = iss
			}
		}
		add("J10 iss "+name, hmacToken(hdr("HS256"), claims(mod), []byte(jwtSecret)))
		add("J10 ES256 iss "+name, signedWith(t, jwt.SigningMethodES256, hdr("ES256", "kid", "es-1"), claims(mod), esKey.Private()))
	}
	// J11: the project's anon and service_role API keys, and user-shaped
	// tokens with those roles.
	for _, role := range []string{"anon", "service_role", "supabase_admin", "postgres", ""} {
		apiKey := jwt.MapClaims{"iss": "supabase", "ref": "tokka-test", "role": role, "iat": now.Unix(), "exp": now.AddDate(10, 0, 0).Unix()}
		add("J11 "+role+" API key", hmacToken(hdr("HS256"), apiKey, []byte(jwtSecret)))
		withRole := func(c jwt.MapClaims) { c["role"] = role }
		add("J11 user token with role "+role, hmacToken(hdr("HS256"), claims(withRole), []byte(jwtSecret)))
		add("J11 ES256 user token with role "+role, signedWith(t, jwt.SigningMethodES256, hdr("ES256", "kid", "es-1"), claims(withRole), esKey.Private()))
	}
	add("J11 sub not a uuid", hmacToken(hdr("HS256"), claims(func(c jwt.MapClaims) { c["sub"] = "admin" }), []byte(jwtSecret)))
	// J13: tampered payloads keep the original signature; tokens outside the
	// Authorization header are not looked at.
	tampered := map[string]jwt.MapClaims{
		"sub":  claims(func(c jwt.MapClaims) { c["sub"] = uuid.NewString() }),
		"role": claims(func(c jwt.MapClaims) { c["role"] = "service_role" }),
		"exp":  claims(func(c jwt.MapClaims) { c["exp"] = now.Add(24 * time.Hour).Unix() }),
	}
	for name, c := range tampered {
		add("J13 tampered "+name+" (HS256)", hsParts[0]+"."+b64JSON(c)+"."+hsParts[2])
		add("J13 tampered "+name+" (ES256)", esParts[0]+"."+b64JSON(c)+"."+esParts[2])
	}
	rawPayload, _ := base64.RawURLEncoding.DecodeString(hsParts[1])
	dup := strings.TrimSuffix(string(rawPayload), "}") + `,"role":"service_role","sub":"` + uuid.NewString() + `"}`
	add("J13 duplicate claims appended", hsParts[0]+"."+b64([]byte(dup))+"."+hsParts[2])
	add("J13 padded payload", hsParts[0]+"."+hsParts[1]+"=."+hsParts[2])
	add("J13 header swapped to RS256", b64JSON(hdr("RS256", "kid", "rs-1"))+"."+hsParts[1]+"."+hsParts[2])
	cases = append(cases,
		attack{name: "J13 token in query string", query: "?access_token=" + hsGood},
		attack{name: "J13 token in apikey query", query: "?apikey=" + hsGood},
		attack{name: "J13 token in cookie", extra: []string{"Cookie", "sb-access-token=" + hsGood}},
		attack{name: "J13 token in apikey header", extra: []string{"apikey", hsGood}},
		attack{name: "J13 token in X-Access-Token", extra: []string{"X-Access-Token", hsGood}},
	)
	// J14: malformed Authorization headers. The scheme's case is not among
	// them: RFC 9110 makes "bearer" and "BEARER" the same scheme
	// (TestBearerSchemeIsCaseInsensitiveAndEvery401SaysBearer).
	for name, vals := range map[string][]string{
		"two spaces":         {"Bearer  " + hsGood},
		"tab":                {"Bearer\t" + hsGood},
		"no space":           {"Bearer" + hsGood},
		"scheme only":        {"Bearer"},
		"scheme and space":   {"Bearer "},
		"two tokens":         {"Bearer " + hsGood + " " + esGood},
		"two tokens, comma":  {"Bearer " + hsGood + "," + esGood},
		"two headers":        {"Bearer " + hsGood, "Bearer " + esGood},
		"basic":              {"Basic " + base64.StdEncoding.EncodeToString([]byte("user:"+hsGood))},
		"token scheme":       {"Token " + hsGood},
		"raw token":          {hsGood},
		"over 8 KB":          {"Bearer " + hsGood + strings.Repeat("A", 8200)},
		"100 KB":             {"Bearer " + strings.Repeat("A", 100<<10)},
		"non-ASCII":          {"Bearer " + hsGood[:20] + "é" + hsGood[20:]},
		"quoted":             {`Bearer "` + hsGood + `"`},
		"four parts":         {"Bearer " + hsGood + ".AAAA"},
		"two parts":          {"Bearer " + hsParts[0] + "." + hsParts[1]},
		"empty":              {""},
		"dots only":          {"Bearer .."},
		"garbage":            {"Bearer not-a-token"},
		"base64 std":         {"Bearer " + hsGood[:len(hsGood)-1] + "+"},
		"base64 padding":     {"Bearer " + hsGood + "="},
		"header not json":    {"Bearer " + b64([]byte("{alg:HS256")) + "." + hsParts[1] + "." + hsParts[2]},
		"payload not object": {"Bearer " + hmacToken(hdr("HS256"), nil, []byte(jwtSecret))},
	} {
		cases = append(cases, attack{name: "J14 " + name, raw: vals})
	}

	var sent []string
	for _, tc := range cases {
		for _, target := range []struct{ method, path string }{{http.MethodGet, "/v1/me"}, {http.MethodPost, "/v1/connections"}} {
			extra := append([]string(nil), tc.extra...)
			for _, v := range tc.raw {
				extra = append(extra, "Authorization", v)
			}
			var body any
			if target.method == http.MethodPost {
				body = newConnBody("sk-admin-attack0123456789abcdef")
			}
			status, h, resp := b.do(t, bearer(tc.token), target.method, target.path+tc.query, body, extra...)
			requireProblem(t, status, h, resp, http.StatusUnauthorized, tc.name+" "+target.method)
			require.Contains(t, string(resp), "missing or invalid access token", tc.name)
		}
		sent = append(sent, tc.token)
		sent = append(sent, tc.raw...)
	}
	require.Zero(t, b.countConnections(t, victim), "no forged token may store anything")
	require.Zero(t, attackerHits.Load(), "no token header may make the API fetch anything")
	require.LessOrEqual(t, b.jwks.Requests(), int64(2), "hostile kids must not drive JWKS fetches")

	logs := b.logs.String()
	require.NotContains(t, logs, "panic")
	for _, tok := range append(sent, hsGood, esGood, rsGood) {
		for _, part := range strings.Split(strings.TrimPrefix(tok, "Bearer "), ".") {
			if len(part) >= 16 {
				require.NotContains(t, logs, part, "tokens must never be logged")
			}
		}
	}
}

// TestEveryStatusCarriesSecurityHeaders covers the statuses the older
// header test does not reach: 413, 429, and a 500 from a panicking handler
// (a test-only route on the returned *echo.Echo), plus 200/401/404/405.
func TestEveryStatusCarriesSecurityHeaders(t *testing.T) {
	t.Parallel()
	b := setup(t, configured(httpapi.Config{RateLimits: httpapi.RateLimits{PerUser: 1, Window: 24 * time.Hour}}))
	const leak = "SECRET-PANIC-VALUE"
	b.e.GET("/v1/test-panic", func(echo.Context) error { panic(leak) })
	b.e.GET("/test-panic", func(echo.Context) error { panic(leak) })
	alice := b.newUser(t)
	b.connect(t, alice) // spends alice's budget of one

	cases := []struct {
		name         string
		client       *http.Client
		method, path string
		token        string
		body         any
		status       int
	}{
		{"200", b.client, http.MethodGet, "/healthz", "", nil, 200},
		{"200 v1", b.client, http.MethodGet, "/v1/me", alice.token, nil, 200},
		{"401", b.client, http.MethodGet, "/v1/me", "", nil, 401},
		{"404 route", b.client, http.MethodGet, "/nope", "", nil, 404},
		{"404 v1", b.client, http.MethodGet, "/v1/connections/" + uuid.NewString(), alice.token, nil, 404},
		{"405", b.client, http.MethodPut, "/v1/connections", alice.token, nil, 405},
		{"413", b.client, http.MethodPost, "/v1/connections", alice.token, `{"label":"` + strings.Repeat("x", 70000) + `"}`, 413},
		{"429", b.client, http.MethodPost, "/v1/connections", alice.token, newConnBody("sk-admin-ratelimited0123456789"), 429},
		{"500", b.plain, http.MethodGet, "/test-panic", "", nil, 500},
		{"500 v1", b.plain, http.MethodGet, "/v1/test-panic", "", nil, 500},
		{"metrics not here", b.client, http.MethodGet, "/metrics", "", nil, 404},
	}
	for _, tc := range cases {
		status, h, body := b.call(t, tc.client, bearer(tc.token), tc.method, tc.path, tc.body)
		require.Equal(t, tc.status, status, tc.name+" "+string(body))
		require.Equal(t, "default-src 'none'; frame-ancestors 'none'", h.Get("Content-Security-Policy"), tc.name)
		require.Equal(t, "DENY", h.Get("X-Frame-Options"), tc.name)
		hsts := h.Get("Strict-Transport-Security")
		require.Contains(t, hsts, "includeSubDomains", tc.name)
		var maxAge int
		_, err := fmt.Sscanf(hsts, "max-age=%d", &maxAge)
		require.NoError(t, err, tc.name)
		require.GreaterOrEqual(t, maxAge, 365*24*3600, tc.name)
		require.Equal(t, "no-referrer", h.Get("Referrer-Policy"), tc.name)
		require.Equal(t, "nosniff", h.Get("X-Content-Type-Options"), tc.name)
		require.NotEmpty(t, h.Get("X-Request-Id"), tc.name)
		if strings.HasPrefix(tc.path, "/v1/") {
			require.Equal(t, "no-store", h.Get("Cache-Control"), tc.name)
		}
		if status >= 400 {
			require.Equal(t, "application/problem+json", h.Get("Content-Type"), tc.name)
		}
		if status == 500 {
			require.NotContains(t, string(body), leak, "a 500 never carries internal text")
			require.Contains(t, string(body), h.Get("X-Request-Id"))
		}
		if status == 429 {
			require.NotEmpty(t, h.Get("Retry-After"))
			require.Equal(t, "0", h.Get("RateLimit-Remaining"))
		}
	}
	require.NotContains(t, b.logs.String(), leak, "the panic value is not logged either")
}

func TestCORSOnlyForConfiguredOrigins(t *testing.T) {
	t.Parallel()
	const allowed = "https://app.example.com"
	b := setup(t, configured(httpapi.Config{CORSAllowedOrigins: []string{allowed, "http://localhost:3000"}}))
	preflight := func(origin string) (int, http.Header) {
		status, h, _ := b.call(t, b.plain, user{}, http.MethodOptions, "/v1/connections", nil,
			"Origin", origin, "Access-Control-Request-Method", "POST",
			"Access-Control-Request-Headers", "authorization,content-type")
		return status, h
	}
	status, h := preflight(allowed)
	require.Equal(t, http.StatusNoContent, status)
	require.Equal(t, allowed, h.Get("Access-Control-Allow-Origin"))
	require.Contains(t, h.Get("Access-Control-Allow-Methods"), "POST")
	require.Contains(t, strings.ToLower(h.Get("Access-Control-Allow-Headers")), "authorization")
	require.Empty(t, h.Get("Access-Control-Allow-Credentials"), "tokens travel in a header, never cookies")
	require.Equal(t, "DENY", h.Get("X-Frame-Options"), "preflights carry the security headers too")

	for _, evil := range []string{"https://evil.example.com", "https://app.example.com.evil.com", "http://app.example.com",
		"https://app.example.co", "null", "https://APP.example.com", allowed + ":443"} {
		_, h := preflight(evil)
		require.Empty(t, h.Get("Access-Control-Allow-Origin"), evil)
		require.Empty(t, h.Get("Access-Control-Allow-Methods"), evil)
	}

	alice := b.newUser(t)
	_, h, _ = b.do(t, alice, http.MethodGet, "/v1/me", nil, "Origin", allowed)
	require.Equal(t, allowed, h.Get("Access-Control-Allow-Origin"))
	require.Contains(t, h.Get("Access-Control-Expose-Headers"), "RateLimit-Remaining")
	_, h, _ = b.do(t, alice, http.MethodGet, "/v1/me", nil, "Origin", "https://evil.example.com")
	require.Empty(t, h.Get("Access-Control-Allow-Origin"))

	// Without configured origins there is no CORS at all.
	none := setup(t)
	_, h, _ = none.call(t, none.plain, user{}, http.MethodOptions, "/v1/connections", nil,
		"Origin", allowed, "Access-Control-Request-Method", "POST")
	require.Empty(t, h.Get("Access-Control-Allow-Origin"))
}

// TestBodiesAreDecodedStrictly: duplicate keys (also differing only in
// case, which encoding/json would merge), unknown fields, mass-assignable
// fields and trailing data are all 400, on create and on update, and
// nothing is stored or changed.
func TestBodiesAreDecodedStrictly(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice := b.newUser(t)
	id := b.connect(t, alice)
	const canary = "sk-admin-CANARYstrict0123456789abcdef"
	const other = "sk-admin-CANARYother0123456789abcdef"
	post := []struct{ name, body, field string }{
		{"duplicate provider", `{"provider":"anthropic","provider":"openai","api_key":"` + canary + `"}`, "provider"},
		{"duplicate api_key", `{"provider":"openai","api_key":"` + other + `","api_key":"` + canary + `"}`, "api_key"},
		{"duplicate by case", `{"provider":"openai","api_key":"` + canary + `","API_KEY":"` + other + `"}`, "API_KEY"},
		{"duplicate by folding", `{"provider":"openai","label":"a","LABEL":"b","api_key":"` + canary + `"}`, "LABEL"},
		{"duplicate by kelvin sign", `{"provider":"openai","api_key":"` + canary + `","api_\u212aey":"` + other + `"}`, "api_\u212aey"},
		{"trailing object", `{"provider":"openai","api_key":"` + canary + `"}{"status":"active"}`, ""},
		{"trailing garbage", `{"provider":"openai","api_key":"` + canary + `"} x`, ""},
		{"unknown field", `{"provider":"openai","api_key":"` + canary + `","admin":true}`, ""}, // not a Tokka name: never echoed
		{"user_id", `{"provider":"openai","api_key":"` + canary + `","user_id":"` + uuid.NewString() + `"}`, "user_id"},
		{"team_id", `{"provider":"openai","api_key":"` + canary + `","team_id":"` + uuid.NewString() + `"}`, "team_id"},
		{"status", `{"provider":"openai","api_key":"` + canary + `","status":"active"}`, "status"},
		{"sealed_key", `{"provider":"openai","api_key":"` + canary + `","sealed_key":"v2:00"}`, "sealed_key"},
		{"created_at", `{"provider":"openai","api_key":"` + canary + `","created_at":"2020-01-01T00:00:00Z"}`, "created_at"},
		{"id", `{"provider":"openai","api_key":"` + canary + `","id":"` + id + `"}`, "id"},
		{"key_hint", `{"provider":"openai","api_key":"` + canary + `","key_hint":"sk-admin-…0000"}`, "key_hint"},
		{"deeply nested", `{"provider":"openai","api_key":"` + canary + `","label":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, ""},
	}
	for _, tc := range post {
		status, h, body := b.do(t, alice, http.MethodPost, "/v1/connections", tc.body)
		requireProblem(t, status, h, body, http.StatusBadRequest, tc.name)
		var p httpapi.Problem
		require.NoError(t, json.Unmarshal(body, &p))
		require.Equal(t, tc.field, p.Field, tc.name)
		require.NotContains(t, string(body), "CANARY", tc.name)
	}
	require.Equal(t, 1, b.countConnections(t, alice.id), "no rejected body may store anything")

	patch := []struct{ name, body string }{
		{"user_id", `{"label":"x","user_id":"` + uuid.NewString() + `"}`},
		{"team_id", `{"label":"x","team_id":"` + uuid.NewString() + `"}`},
		{"status", `{"status":"active"}`},
		{"sealed_key", `{"sealed_key":"v2:00"}`},
		{"created_at", `{"created_at":"2020-01-01T00:00:00Z"}`},
		{"provider", `{"provider":"anthropic"}`},
		{"duplicate label", `{"label":"one","label":"two"}`},
		{"duplicate api_key", `{"api_key":"` + canary + `","Api_Key":"` + other + `"}`},
		{"trailing", `{"label":"x"} {"label":"y"}`},
	}
	var before string
	require.NoError(t, b.sql.Get(&before, `SELECT label || key_hint || status || updated_at::text FROM tokka.connections WHERE id = $1`, id))
	for _, tc := range patch {
		status, h, body := b.do(t, alice, http.MethodPatch, "/v1/connections/"+id, tc.body)
		requireProblem(t, status, h, body, http.StatusBadRequest, "PATCH "+tc.name)
		require.NotContains(t, string(body), "CANARY")
	}
	var after string
	require.NoError(t, b.sql.Get(&after, `SELECT label || key_hint || status || updated_at::text FROM tokka.connections WHERE id = $1`, id))
	require.Equal(t, before, after, "no rejected PATCH may change anything")
	require.NotContains(t, b.logs.String(), "CANARY")
}
