package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/authtest"
	"github.com/tokka-dev/tokka/pkg/httpapi"
	"github.com/tokka-dev/tokka/pkg/logtest"
	"github.com/tokka-dev/tokka/pkg/pgtest"
	"github.com/tokka-dev/tokka/pkg/postgres"
	"github.com/tokka-dev/tokka/pkg/seal"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const (
	testSecret            = "run-test-secret-run-test-secret-run-test-0123"
	testFingerprintSecret = "run-test-fingerprint-secret-0123456789abcdef"
)

// publicKey returns a fresh ENCRYPTION_PUBLIC_KEY value. It is generated
// here rather than with package keyring, which the api must not link.
func publicKey(t *testing.T) string {
	t.Helper()
	kem, _, _ := seal.Suite()
	sk, err := kem.GenerateKey()
	require.NoError(t, err)
	pk, err := seal.NewPublicKey(sk.PublicKey().Bytes())
	require.NoError(t, err)
	return pk.String()
}

func envFrom(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func baseEnv(t *testing.T) map[string]string {
	return map[string]string{
		"DATABASE_URL":           "postgres://127.0.0.1:1/never-reached",
		"ENCRYPTION_PUBLIC_KEY":  publicKey(t),
		"SUPABASE_JWT_SECRET":    testSecret,
		"KEY_FINGERPRINT_SECRET": testFingerprintSecret,
	}
}

func jwtWithRole(role string) string {
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	p := base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"supabase","ref":"abc","role":"` + role + `","iat":1,"exp":2}`))
	return h + "." + p + ".c2ln"
}

// TestConfigFailsFastWithOneClearLine runs the api with each broken
// environment: it must stop before touching anything, with one line that
// names the variable.
func TestConfigFailsFastWithOneClearLine(t *testing.T) {
	t.Parallel()
	certFile, keyFile := writeCert(t)
	cases := []struct {
		name string
		set  map[string]string
		want string
	}{
		{"syncer secret", map[string]string{"ENCRYPTION_KEY": "x"}, "ENCRYPTION_KEY is set in the api's environment"},
		{"no database", map[string]string{"DATABASE_URL": ""}, "DATABASE_URL is required"},
		{"no public key", map[string]string{"ENCRYPTION_PUBLIC_KEY": ""}, "ENCRYPTION_PUBLIC_KEY is required"},
		{"bad public key", map[string]string{"ENCRYPTION_PUBLIC_KEY": "tpk2:00"}, "ENCRYPTION_PUBLIC_KEY:"},
		{"no way to verify", map[string]string{"SUPABASE_JWT_SECRET": ""}, "SUPABASE_JWT_SECRET or SUPABASE_URL (or SUPABASE_AUTH_URL / SUPABASE_JWKS_URL) is required"},
		{"weak secret", map[string]string{"SUPABASE_JWT_SECRET": "secret"}, "SUPABASE_JWT_SECRET is shorter than 32 characters"},
		{"url without anon key", map[string]string{"SUPABASE_URL": "https://ref.supabase.co"}, "SUPABASE_ANON_KEY is required with SUPABASE_URL"},
		{"url not a url", map[string]string{"SUPABASE_URL": "ref.supabase.co", "SUPABASE_ANON_KEY": "a"}, "SUPABASE_URL must be an absolute http(s) URL"},
		{"auth url scheme", map[string]string{"SUPABASE_AUTH_URL": "ftp://auth"}, "SUPABASE_AUTH_URL must be an absolute http(s) URL"},
		{"jwks url with query", map[string]string{"SUPABASE_JWKS_URL": "https://x/jwks?a=b"}, "SUPABASE_JWKS_URL must be an absolute http(s) URL"},
		{"url with credentials", map[string]string{"SUPABASE_AUTH_URL": "https://user:pw@auth.example.com"}, "SUPABASE_AUTH_URL must be"},
		{"service role as anon key", map[string]string{"SUPABASE_AUTH_URL": "http://127.0.0.1:9999", "SUPABASE_ANON_KEY": jwtWithRole("service_role")}, "SUPABASE_ANON_KEY holds a service_role"},
		{"secret key as anon key", map[string]string{"SUPABASE_AUTH_URL": "http://127.0.0.1:9999", "SUPABASE_ANON_KEY": "sb_secret_abc"}, "SUPABASE_ANON_KEY holds a service_role"},
		{"cert without key", map[string]string{"TLS_CERT_FILE": certFile}, "TLS_CERT_FILE and TLS_KEY_FILE must be set together"},
		{"key without cert", map[string]string{"TLS_KEY_FILE": keyFile}, "TLS_CERT_FILE and TLS_KEY_FILE must be set together"},
		{"missing cert", map[string]string{"TLS_CERT_FILE": certFile + ".missing", "TLS_KEY_FILE": keyFile}, "TLS_CERT_FILE/TLS_KEY_FILE:"},
		{"swapped cert and key", map[string]string{"TLS_CERT_FILE": keyFile, "TLS_KEY_FILE": certFile}, "TLS_CERT_FILE/TLS_KEY_FILE:"},
		{"zero rate", map[string]string{"RATE_LIMIT_MUTATIONS_PER_MINUTE": "0"}, "RATE_LIMIT_MUTATIONS_PER_MINUTE must be a whole number"},
		{"text rate", map[string]string{"RATE_LIMIT_MUTATIONS_PER_MINUTE": "lots"}, "RATE_LIMIT_MUTATIONS_PER_MINUTE must be a whole number"},
		{"negative ip rate", map[string]string{"RATE_LIMIT_IP_MUTATIONS_PER_MINUTE": "-5"}, "RATE_LIMIT_IP_MUTATIONS_PER_MINUTE must be a whole number"},
		{"cors wildcard", map[string]string{"CORS_ALLOWED_ORIGINS": "*"}, "CORS_ALLOWED_ORIGINS must list origins"},
		{"cors pattern", map[string]string{"CORS_ALLOWED_ORIGINS": "https://*.example.com"}, "CORS_ALLOWED_ORIGINS:"},
		{"cors path", map[string]string{"CORS_ALLOWED_ORIGINS": "https://app.example.com/"}, "CORS_ALLOWED_ORIGINS:"},
		{"bad proxy", map[string]string{"TRUSTED_PROXIES": "10.0.0.0/33"}, "TRUSTED_PROXIES:"},
		{"pprof on every interface", map[string]string{"PPROF_ADDR": ":6060"}, "PPROF_ADDR:"},
		{"pprof on a public address", map[string]string{"PPROF_ADDR": "0.0.0.0:6060"}, "PPROF_ADDR:"},
		{"bad log level", map[string]string{"LOG_LEVEL": "loud"}, "LOG_LEVEL:"},
		{"zero pool", map[string]string{"DATABASE_MAX_CONNS": "0"}, "DATABASE_MAX_CONNS must be a whole number from 1 to 1000"},
		{"text pool", map[string]string{"DATABASE_MAX_CONNS": "ten"}, "DATABASE_MAX_CONNS must be a whole number from 1 to 1000"},
		{"no timeout unit", map[string]string{"DATABASE_STATEMENT_TIMEOUT": "5"}, "DATABASE_STATEMENT_TIMEOUT:"},
		{"timeout too short", map[string]string{"DATABASE_STATEMENT_TIMEOUT": "10ms"}, "DATABASE_STATEMENT_TIMEOUT:"},
		{"timeout off", map[string]string{"DATABASE_STATEMENT_TIMEOUT": "0s"}, "DATABASE_STATEMENT_TIMEOUT:"},
		{"read window off", map[string]string{"DATABASE_READ_AFTER_WRITE": "0s"}, "DATABASE_READ_AFTER_WRITE:"},
		{"read window unitless", map[string]string{"DATABASE_READ_AFTER_WRITE": "5"}, "DATABASE_READ_AFTER_WRITE:"},
		{"sync interval too long", map[string]string{"SYNC_REQUEST_INTERVAL": "9000h"}, "SYNC_REQUEST_INTERVAL:"},
		{"bad readiness delay", map[string]string{"SHUTDOWN_READINESS_DELAY": "soon"}, "SHUTDOWN_READINESS_DELAY:"},
		{"negative readiness delay", map[string]string{"SHUTDOWN_READINESS_DELAY": "-1s"}, "SHUTDOWN_READINESS_DELAY:"},
		{"no grace", map[string]string{"SHUTDOWN_GRACE": "0"}, "SHUTDOWN_GRACE:"},
		{"resync days out of range", map[string]string{"SYNC_RESYNC_DAYS": "91"}, "SYNC_RESYNC_DAYS must be a whole number from 1 to 90"},
		{"no fingerprint secret", map[string]string{"KEY_FINGERPRINT_SECRET": ""}, "KEY_FINGERPRINT_SECRET is required and must be at least 32 bytes"},
		{"short fingerprint secret", map[string]string{"KEY_FINGERPRINT_SECRET": "0123456789abcdef0123456789abcde"}, "KEY_FINGERPRINT_SECRET is required and must be at least 32 bytes"},
	}
	for _, tc := range cases {
		env := baseEnv(t)
		for k, v := range tc.set {
			env[k] = v
		}
		var out bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := run(ctx, []string{"serve"}, envFrom(env), &out)
		cancel()
		require.Error(t, err, tc.name)
		require.Contains(t, err.Error(), tc.want, tc.name)
		require.NotContains(t, err.Error(), "\n", tc.name+": one line")
		require.NotContains(t, err.Error(), testSecret, tc.name)
		require.NotContains(t, err.Error(), "0123456789abcdef0123456789abcde", tc.name)
		require.Empty(t, out.String(), tc.name+": nothing started")
	}
}

func TestConfigDerivesTheSupabaseURLs(t *testing.T) {
	t.Parallel()
	load := func(set map[string]string) Config {
		t.Helper()
		env := baseEnv(t)
		for k, v := range set {
			env[k] = v
		}
		c, err := loadConfig(envFrom(env), true)
		require.NoError(t, err)
		return c
	}
	c := load(map[string]string{"SUPABASE_URL": "https://ref.supabase.co/", "SUPABASE_ANON_KEY": jwtWithRole("anon"), "SUPABASE_JWT_SECRET": ""})
	require.Equal(t, "https://ref.supabase.co/auth/v1", c.AuthURL)
	require.Equal(t, "https://ref.supabase.co/auth/v1/.well-known/jwks.json", c.JWKSURL)
	require.Empty(t, c.JWTSecret, "the legacy secret is optional with a JWKS")

	c = load(map[string]string{"SUPABASE_AUTH_URL": "http://127.0.0.1:9999"})
	require.Equal(t, "http://127.0.0.1:9999", c.AuthURL, "a self-hosted Auth server needs no gateway key")
	require.Equal(t, "http://127.0.0.1:9999/.well-known/jwks.json", c.JWKSURL)

	c = load(map[string]string{"SUPABASE_URL": "https://ref.supabase.co", "SUPABASE_ANON_KEY": "sb_publishable_x",
		"SUPABASE_AUTH_URL": "https://auth.example.com", "SUPABASE_JWKS_URL": "https://keys.example.com/jwks.json"})
	require.Equal(t, "https://auth.example.com", c.AuthURL)
	require.Equal(t, "https://keys.example.com/jwks.json", c.JWKSURL)

	c = load(map[string]string{"SUPABASE_JWKS_URL": "https://keys.example.com/jwks.json"})
	require.Empty(t, c.AuthURL, "a JWKS alone enables no session check")

	c = load(nil)
	require.Empty(t, c.AuthURL)
	require.Empty(t, c.JWKSURL)
	require.Nil(t, c.TLS)
	require.Equal(t, httpapi.DefaultMutationsPerUser, c.RateLimits.PerUser, "the default is httpapi's")
	require.Equal(t, httpapi.DefaultMutationsPerIP, c.RateLimits.PerIP, "the default is httpapi's")
	require.Equal(t, 10, c.DatabaseMaxConn)
	require.Equal(t, 5*time.Second, c.StatementTimeout)
	require.Empty(t, c.DatabaseReadURL, "no replica unless one is named")
	require.Equal(t, 5*time.Second, c.ReadAfterWrite)
	require.Equal(t, postgres.DefaultStatementTimeout, c.StatementTimeout, "the default is postgres's")
	require.Equal(t, tokka.DefaultResyncDays, c.ResyncDays, "provisional days default to the syncer's resync days")

	c = load(map[string]string{"DATABASE_MAX_CONNS": "25", "DATABASE_STATEMENT_TIMEOUT": "1500ms"})
	require.Equal(t, 25, c.DatabaseMaxConn)
	require.Equal(t, 1500*time.Millisecond, c.StatementTimeout)

	c = load(map[string]string{"DATABASE_READ_URL": "postgres://replica/tokka", "DATABASE_READ_AFTER_WRITE": "30s"})
	require.Equal(t, "postgres://replica/tokka", c.DatabaseReadURL)
	require.Equal(t, 30*time.Second, c.ReadAfterWrite)
	c = load(map[string]string{"SYNC_RESYNC_DAYS": "7"})
	require.Equal(t, 7, c.ResyncDays, "the api reads the syncer's SYNC_RESYNC_DAYS for its provisional days")

	c = load(map[string]string{"RATE_LIMIT_MUTATIONS_PER_MINUTE": "5", "RATE_LIMIT_IP_MUTATIONS_PER_MINUTE": "50"})
	require.Equal(t, 5, c.RateLimits.PerUser)
	require.Equal(t, 50, c.RateLimits.PerIP)
	require.Equal(t, time.Minute, c.RateLimits.Window)

	// Migrations need none of it.
	_, err := loadConfig(envFrom(map[string]string{"DATABASE_URL": "postgres://x"}), false)
	require.NoError(t, err)
}

// TestServeWiresSecurity starts the real server as an operator would with a
// Supabase project (a fake gateway serving the JWKS and the Auth server),
// TLS and a metrics listener, and checks the wiring end to end.
func TestServeWiresSecurity(t *testing.T) {
	t.Parallel()
	es, err := authtest.NewES256Key("es-1")
	require.NoError(t, err)
	authSrv := authtest.NewAuthServer([]byte(testSecret))
	authSrv.APIKey = "anon-key"
	mux := http.NewServeMux()
	mux.Handle("/auth/v1/.well-known/jwks.json", authtest.NewKeySet(es))
	mux.Handle("/auth/v1/user", authSrv)
	gateway := httptest.NewServer(mux)
	t.Cleanup(gateway.Close)

	certFile, keyFile := writeCert(t)
	metricsAddr, pprofAddr := freeAddr(t), freeAddr(t)
	env := baseEnv(t)
	for k, v := range map[string]string{
		"DATABASE_URL": pgtest.URL(t), "API_ADDR": "127.0.0.1:0",
		"SUPABASE_URL": gateway.URL, "SUPABASE_ANON_KEY": "anon-key", "SUPABASE_JWT_ISSUER": gateway.URL + "/auth/v1",
		"TLS_CERT_FILE": certFile, "TLS_KEY_FILE": keyFile, "METRICS_ADDR": metricsAddr,
		"PPROF_ADDR":               pprofAddr,
		"SHUTDOWN_READINESS_DELAY": "0",
	} {
		env[k] = v
	}
	cfg, err := loadConfig(envFrom(env), true)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	logs := &logtest.Buffer{}
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, logs, ready) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("serve: %v\n%s", err, logs.String())
	case <-time.After(20 * time.Second):
		t.Fatal("api did not start")
	}
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})

	tls12 := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12}}} //nolint:gosec // test certificate
	_, err = tls12.Get("https://" + addr + "/healthz")
	require.Error(t, err, "TLS 1.2 must be refused")
	tls13 := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}}} //nolint:gosec // test certificate
	if resp, err := (&http.Client{}).Get("http://" + addr + "/healthz"); err == nil {
		resp.Body.Close()
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, "no plain HTTP on the TLS port")
	}

	get := func(c *http.Client, url, token string, body io.Reader) (int, string) {
		method := http.MethodGet
		if body != nil {
			method = http.MethodPost
		}
		req, err := http.NewRequest(method, url, body)
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := c.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(raw)
	}
	status, _ := get(tls13, "https://"+addr+"/healthz", "", nil)
	require.Equal(t, http.StatusOK, status)
	status, _ = get(tls13, "https://"+addr+"/metrics", "", nil)
	require.Equal(t, http.StatusNotFound, status, "metrics must not be served on the API port")
	status, metrics := get(http.DefaultClient, "http://"+metricsAddr+"/metrics", "", nil)
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, metrics, "tokka_http_request_duration_seconds")
	status, _ = get(tls13, "https://"+addr+"/debug/pprof/", "", nil)
	require.Equal(t, http.StatusNotFound, status, "profiles must not be served on the API port")
	status, _ = get(http.DefaultClient, "http://"+pprofAddr+"/debug/pprof/", "", nil)
	require.Equal(t, http.StatusOK, status, "PPROF_ADDR serves the profiler")
	for _, pool := range []string{"go_sql_in_use_connections", "go_sql_idle_connections", "go_sql_wait_count_total", "go_sql_max_open_connections"} {
		require.Contains(t, metrics, pool+`{db_name="tokka"}`, "pool saturation")
	}

	// An ES256 token from the project's JWKS reads; an HS256 one with the
	// legacy secret too.
	sid := uuid.NewString()
	userID := uuid.NewString()
	esTok, err := authtest.Token{Subject: userID, SessionID: sid, Issuer: gateway.URL + "/auth/v1"}.Sign(es)
	require.NoError(t, err)
	status, body := get(tls13, "https://"+addr+"/v1/me", esTok, nil)
	require.Equal(t, http.StatusOK, status, body)
	hsTok, err := authtest.Token{Subject: userID, SessionID: sid, Issuer: gateway.URL + "/auth/v1"}.HS256([]byte(testSecret))
	require.NoError(t, err)
	status, body = get(tls13, "https://"+addr+"/v1/me", hsTok, nil)
	require.Equal(t, http.StatusOK, status, body)

	// Key changes go through the Auth server: live, then signed out.
	newConn := func() io.Reader {
		b, _ := json.Marshal(map[string]string{"provider": "openai", "api_key": "sk-admin-runtest0123456789abcdef"})
		return bytes.NewReader(b)
	}
	status, body = get(tls13, "https://"+addr+"/v1/connections", hsTok, newConn())
	require.Equal(t, http.StatusCreated, status, body)
	authSrv.Logout(sid)
	status, body = get(tls13, "https://"+addr+"/v1/connections", hsTok, newConn())
	require.Equal(t, http.StatusUnauthorized, status, body)
	require.NotContains(t, logs.String(), strings.Split(hsTok, ".")[2], "tokens must never be logged")
	require.NotContains(t, logs.String(), testSecret)
	require.NotContains(t, logs.String(), testFingerprintSecret)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

func writeCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tokka test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600))
	return certFile, keyFile
}
