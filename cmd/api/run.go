package main

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	openapi "github.com/tokka-dev/tokka"
	"github.com/tokka-dev/tokka/pkg/auth"
	"github.com/tokka-dev/tokka/pkg/egress"
	"github.com/tokka-dev/tokka/pkg/httpapi"
	"github.com/tokka-dev/tokka/pkg/postgres"
	"github.com/tokka-dev/tokka/pkg/seal"
	"github.com/tokka-dev/tokka/pkg/secret"
)

// Config is everything the api reads from its environment.
type Config struct {
	DatabaseURL string
	Addr        string
	PublicKey   *seal.PublicKey
	// JWTSecret is the legacy HS256 secret; optional when JWKSURL is set.
	JWTSecret string
	// JWTIssuer is the iss every token must carry: SUPABASE_JWT_ISSUER, else
	// SUPABASE_URL's Auth URL; empty means no issuer check.
	JWTIssuer string
	// SupabaseURL is the project URL; it implies AuthURL and JWKSURL.
	SupabaseURL string
	// AuthURL is the Auth server's root; when set, key changes need a
	// session the Auth server still recognises.
	AuthURL string
	// JWKSURL publishes the project's asymmetric signing keys.
	JWKSURL string
	// AnonKey is sent as apikey to the Auth server (the gateway needs it).
	AnonKey        string
	CORSOrigins    []string
	TrustedProxies []*net.IPNet
	MetricsAddr    string
	LogLevel       zerolog.Level
	// DatabaseMaxConn is the size of the connection pool, and of the read
	// replica's (DATABASE_MAX_CONNS, default postgres.DefaultMaxConns).
	DatabaseMaxConn int
	// DatabaseReadURL, when set, is a streaming replica of DATABASE_URL's
	// database that serves the api's reads (DATABASE_READ_URL).
	DatabaseReadURL string
	// ReadAfterWrite is how long a user's reads stay on the primary after
	// their write (DATABASE_READ_AFTER_WRITE, default 5s).
	ReadAfterWrite time.Duration
	// StatementTimeout bounds every statement of a request's transaction
	// (DATABASE_STATEMENT_TIMEOUT, default 5s).
	StatementTimeout time.Duration
	// TLS, when set (TLS_CERT_FILE and TLS_KEY_FILE), serves TLS 1.3 only.
	TLS        *tls.Config
	RateLimits httpapi.RateLimits
	// SyncRequestInterval spaces "sync now" requests per connection
	// (SYNC_REQUEST_INTERVAL, default 5m).
	SyncRequestInterval time.Duration
	// AllowLoopbackWebhooks is WEBHOOK_ALLOW_LOOPBACK_HTTP (development only).
	AllowLoopbackWebhooks bool
	// AllowAnonymousUsers is ALLOW_ANONYMOUS_USERS: accept tokens of
	// Supabase anonymous sign-ins (default false: 403).
	AllowAnonymousUsers bool
	// ShutdownReadinessDelay is how long the api keeps serving after SIGTERM
	// with /readyz answering 503, so load balancers stop sending it requests
	// before it stops listening (SHUTDOWN_READINESS_DELAY, default 5s).
	ShutdownReadinessDelay time.Duration
	// ShutdownGrace bounds the drain that follows: requests in flight may
	// finish for this long, then their connections are closed
	// (SHUTDOWN_GRACE, default 15s).
	ShutdownGrace time.Duration
	// delayOver, in tests, ends the readiness delay early.
	delayOver <-chan struct{}
	// Fingerprints is KEY_FINGERPRINT_SECRET: the key of the fingerprints by
	// which a key pasted twice is recognised, and of idempotent requests'
	// digests.
	Fingerprints *secret.Fingerprinter
}

// loadConfig reads and validates the environment. Each problem is one line
// that names the variable.
func loadConfig(getenv func(string) string, needKeys bool) (Config, error) {
	// The api must not be able to decrypt; ENCRYPTION_KEY here means the
	// deployment has handed it the syncer's secret by mistake.
	if getenv("ENCRYPTION_KEY") != "" || getenv("ENCRYPTION_KEYS_RETIRED") != "" {
		return Config{}, errors.New("ENCRYPTION_KEY is set in the api's environment; it belongs to the syncer only — remove it and set ENCRYPTION_PUBLIC_KEY (from `syncer public-key`) instead")
	}
	c := Config{
		DatabaseURL: getenv("DATABASE_URL"),
		Addr:        getenv("API_ADDR"),
		JWTSecret:   getenv("SUPABASE_JWT_SECRET"),
		JWTIssuer:   getenv("SUPABASE_JWT_ISSUER"),
		MetricsAddr: getenv("METRICS_ADDR"),
	}
	if c.DatabaseURL == "" {
		return c, errors.New("DATABASE_URL is required")
	}
	c.DatabaseMaxConn = postgres.DefaultMaxConns
	if v := getenv("DATABASE_MAX_CONNS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return c, fmt.Errorf("DATABASE_MAX_CONNS must be a whole number from 1 to 1000, not %q", v)
		}
		c.DatabaseMaxConn = n
	}
	c.DatabaseReadURL = getenv("DATABASE_READ_URL")
	c.ReadAfterWrite = postgres.DefaultReadAfterWrite
	if v := getenv("DATABASE_READ_AFTER_WRITE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 100*time.Millisecond || d > time.Hour {
			return c, fmt.Errorf("DATABASE_READ_AFTER_WRITE: %q is not a duration from 100ms to 1h", v)
		}
		c.ReadAfterWrite = d
	}
	c.StatementTimeout = postgres.DefaultStatementTimeout
	if v := getenv("DATABASE_STATEMENT_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 100*time.Millisecond || d > 10*time.Minute {
			return c, fmt.Errorf("DATABASE_STATEMENT_TIMEOUT: %q is not a duration from 100ms to 10m", v)
		}
		c.StatementTimeout = d
	}
	if c.Addr == "" {
		c.Addr = ":8080"
	}
	lvl, err := zerolog.ParseLevel(strings.ToLower(getenv("LOG_LEVEL")))
	if err != nil {
		return c, fmt.Errorf("LOG_LEVEL: %w", err)
	}
	if lvl == zerolog.NoLevel {
		lvl = zerolog.InfoLevel
	}
	c.LogLevel = lvl
	for _, o := range splitList(getenv("CORS_ALLOWED_ORIGINS")) {
		if o == "*" {
			return c, errors.New("CORS_ALLOWED_ORIGINS must list origins; \"*\" is not allowed")
		}
		if u, err := url.Parse(o); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
			u.Path != "" || u.RawQuery != "" || u.User != nil || strings.ContainsAny(o, "*?") {
			return c, fmt.Errorf("CORS_ALLOWED_ORIGINS: %q is not an origin like https://app.example.com (scheme and host, no path or wildcard)", o)
		}
		c.CORSOrigins = append(c.CORSOrigins, o)
	}
	for _, p := range splitList(getenv("TRUSTED_PROXIES")) {
		if !strings.Contains(p, "/") {
			if strings.Contains(p, ":") {
				p += "/128"
			} else {
				p += "/32"
			}
		}
		_, n, err := net.ParseCIDR(p)
		if err != nil {
			return c, fmt.Errorf("TRUSTED_PROXIES: %q is not an IP or CIDR", p)
		}
		c.TrustedProxies = append(c.TrustedProxies, n)
	}
	if !needKeys {
		return c, nil
	}
	pk := getenv("ENCRYPTION_PUBLIC_KEY")
	if pk == "" {
		return c, errors.New("ENCRYPTION_PUBLIC_KEY is required (print it with `syncer public-key`)")
	}
	if c.PublicKey, err = seal.ParsePublicKey(pk); err != nil {
		return c, fmt.Errorf("ENCRYPTION_PUBLIC_KEY: %w", err)
	}
	if err := loadAuthConfig(&c, getenv); err != nil {
		return c, err
	}
	// Only the api holds this secret: stored fingerprints are useless
	// without it. Changing it makes Tokka stop recognising keys pasted
	// before (they can then be added twice, until their first sync finds
	// the organisation), so it is generated once and kept.
	fs := getenv("KEY_FINGERPRINT_SECRET")
	if len(fs) < secret.MinFingerprintSecretLength {
		return c, fmt.Errorf("KEY_FINGERPRINT_SECRET is required and must be at least %d bytes (generate it once with `openssl rand -hex 32` and keep it; only the api has it)",
			secret.MinFingerprintSecretLength)
	}
	if c.Fingerprints, err = secret.NewFingerprinter([]byte(fs)); err != nil {
		return c, fmt.Errorf("KEY_FINGERPRINT_SECRET: %w", err)
	}
	certFile, keyFile := getenv("TLS_CERT_FILE"), getenv("TLS_KEY_FILE")
	if (certFile == "") != (keyFile == "") {
		return c, errors.New("TLS_CERT_FILE and TLS_KEY_FILE must be set together")
	}
	if certFile != "" {
		if c.TLS, err = httpapi.TLSConfig(certFile, keyFile); err != nil {
			return c, fmt.Errorf("TLS_CERT_FILE/TLS_KEY_FILE: %w", err)
		}
	}
	for _, v := range []struct {
		name string
		dst  *int
	}{
		{"RATE_LIMIT_MUTATIONS_PER_MINUTE", &c.RateLimits.PerUser},
		{"RATE_LIMIT_IP_MUTATIONS_PER_MINUTE", &c.RateLimits.PerIP},
		{"RATE_LIMIT_EXPENSIVE_READS_PER_MINUTE", &c.RateLimits.ExpensiveReadsPerMinute},
		{"RATE_LIMIT_AUDIT_FULL_PER_HOUR", &c.RateLimits.AuditFullPerHour},
	} {
		s := getenv(v.name)
		if s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1_000_000 {
			return c, fmt.Errorf("%s must be a whole number from 1 to 1000000, not %q", v.name, s)
		}
		*v.dst = n
	}
	c.RateLimits.Window = time.Minute
	c.SyncRequestInterval = 5 * time.Minute
	if v := getenv("SYNC_REQUEST_INTERVAL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second || d > 365*24*time.Hour {
			return c, fmt.Errorf("SYNC_REQUEST_INTERVAL: %q is not a duration from 1s to 8760h", v)
		}
		c.SyncRequestInterval = d
	}
	for _, v := range []struct {
		name string
		dst  *bool
	}{
		{"WEBHOOK_ALLOW_LOOPBACK_HTTP", &c.AllowLoopbackWebhooks},
		{"ALLOW_ANONYMOUS_USERS", &c.AllowAnonymousUsers},
	} {
		switch s := getenv(v.name); s {
		case "", "false":
		case "true":
			*v.dst = true
		default:
			return c, fmt.Errorf("%s: %q must be true or false", v.name, s)
		}
	}
	c.ShutdownReadinessDelay, c.ShutdownGrace = 5*time.Second, 15*time.Second
	for _, d := range []struct {
		name    string
		dst     *time.Duration
		zeroOK  bool
		example string
	}{
		{"SHUTDOWN_READINESS_DELAY", &c.ShutdownReadinessDelay, true, "5s, or 0 to stop listening at once"},
		{"SHUTDOWN_GRACE", &c.ShutdownGrace, false, "15s"},
	} {
		v := getenv(d.name)
		if v == "" {
			continue
		}
		p, err := time.ParseDuration(v)
		if err != nil || p < 0 || (p == 0 && !d.zeroOK) || p > time.Hour {
			return c, fmt.Errorf("%s: %q is not a duration like %s (at most 1h)", d.name, v, d.example)
		}
		*d.dst = p
	}
	return c, nil
}

// loadAuthConfig reads how access tokens are verified (design §6):
// SUPABASE_URL implies SUPABASE_AUTH_URL (+ /auth/v1), which implies
// SUPABASE_JWKS_URL (+ /.well-known/jwks.json); each can be set directly for
// a self-hosted Auth server. At least a JWKS or SUPABASE_JWT_SECRET is
// needed; both may be set (a project migrating from the legacy secret).
func loadAuthConfig(c *Config, getenv func(string) string) error {
	var err error
	if c.SupabaseURL, err = baseURL("SUPABASE_URL", getenv("SUPABASE_URL"), "https://<project-ref>.supabase.co"); err != nil {
		return err
	}
	if c.AuthURL, err = baseURL("SUPABASE_AUTH_URL", getenv("SUPABASE_AUTH_URL"), "https://<project-ref>.supabase.co/auth/v1"); err != nil {
		return err
	}
	if c.JWKSURL, err = baseURL("SUPABASE_JWKS_URL", getenv("SUPABASE_JWKS_URL"), "https://<project-ref>.supabase.co/auth/v1/.well-known/jwks.json"); err != nil {
		return err
	}
	if c.AuthURL == "" && c.SupabaseURL != "" {
		c.AuthURL = c.SupabaseURL + "/auth/v1"
	}
	// A Supabase project's Auth server signs tokens with iss
	// <SUPABASE_URL>/auth/v1: a token of another project signed with a
	// shared key, or minted by another issuer the JWKS also serves, is not
	// ours. SUPABASE_JWT_ISSUER overrides it (a custom domain).
	if c.JWTIssuer == "" && c.SupabaseURL != "" {
		c.JWTIssuer = c.SupabaseURL + "/auth/v1"
	}
	if c.JWKSURL == "" && c.AuthURL != "" {
		c.JWKSURL = c.AuthURL + "/.well-known/jwks.json"
	}
	c.AnonKey = getenv("SUPABASE_ANON_KEY")
	if c.SupabaseURL != "" && c.AnonKey == "" {
		return errors.New("SUPABASE_ANON_KEY is required with SUPABASE_URL: the Supabase gateway refuses Auth requests without the project's anon (publishable) key")
	}
	if isServiceKey(c.AnonKey) {
		return errors.New("SUPABASE_ANON_KEY holds a service_role (secret) key; the api needs only the anon (publishable) key — never give it a key that bypasses row-level security")
	}
	if c.JWTSecret == "" && c.JWKSURL == "" {
		return errors.New("SUPABASE_JWT_SECRET or SUPABASE_URL (or SUPABASE_AUTH_URL / SUPABASE_JWKS_URL) is required to verify access tokens")
	}
	if c.JWTSecret != "" && len(c.JWTSecret) < auth.MinSecretLength {
		return fmt.Errorf("SUPABASE_JWT_SECRET is shorter than %d characters; use the project's JWT secret", auth.MinSecretLength)
	}
	return nil
}

// baseURL validates an optional absolute http(s) URL and trims its trailing
// slash.
func baseURL(name, v, example string) (string, error) {
	if v == "" {
		return "", nil
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" ||
		u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("%s must be an absolute http(s) URL like %s", name, example)
	}
	return strings.TrimRight(v, "/"), nil
}

// isServiceKey reports whether k is a Supabase secret key: a new-style
// sb_secret_ key, or a legacy JWT whose role is service_role. Only the
// payload is read; nothing here trusts it beyond refusing to start.
func isServiceKey(k string) bool {
	if strings.HasPrefix(k, "sb_secret_") {
		return true
	}
	parts := strings.Split(k, ".")
	if len(parts) != 3 {
		return false
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return false
	}
	var claims struct {
		Role string `json:"role"`
	}
	return json.Unmarshal(raw, &claims) == nil && claims.Role == "service_role"
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// run is the whole program; tests call it too.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cmd := "serve"
	if len(args) > 0 {
		cmd = args[0]
	}
	switch cmd {
	case "serve":
		cfg, err := loadConfig(getenv, true)
		if err != nil {
			return err
		}
		return serve(ctx, cfg, stdout, nil)
	case "migrate":
		cfg, err := loadConfig(getenv, false)
		if err != nil {
			return err
		}
		if err := postgres.Migrate(ctx, cfg.DatabaseURL); err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, "migrations applied")
		return err
	case "help", "-h", "--help":
		_, err := fmt.Fprintln(stdout, "usage: api [serve|migrate]")
		return err
	}
	return fmt.Errorf("unknown command %q (want serve or migrate)", cmd)
}

// serve runs the API until ctx ends. ready, when non-nil, receives the
// listening address (tests use port 0).
func serve(ctx context.Context, cfg Config, stdout io.Writer, ready chan<- string) error {
	log := zerolog.New(stdout).Level(cfg.LogLevel).With().Timestamp().Str("service", "api").Logger()
	db, err := postgres.Open(ctx, cfg.DatabaseURL, cfg.DatabaseMaxConn)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetStatementTimeout(cfg.StatementTimeout)
	if cfg.DatabaseReadURL != "" {
		if err := db.OpenReadReplica(ctx, cfg.DatabaseReadURL, cfg.DatabaseMaxConn, cfg.ReadAfterWrite); err != nil {
			return fmt.Errorf("DATABASE_READ_URL: %w", err)
		}
	}
	authLog := log.With().Str("component", "auth").Logger()
	verifier, err := auth.NewVerifier(auth.Config{HS256Secret: []byte(cfg.JWTSecret), JWKSURL: cfg.JWKSURL,
		Issuer: cfg.JWTIssuer, AllowAnonymous: cfg.AllowAnonymousUsers, Log: &authLog})
	if err != nil {
		return err
	}
	hcfg := httpapi.Config{
		CORSAllowedOrigins:  cfg.CORSOrigins,
		TrustedProxies:      cfg.TrustedProxies,
		RateLimits:          cfg.RateLimits,
		SyncRequestInterval: cfg.SyncRequestInterval,
		WebhookGuard:        &egress.Guard{AllowLoopback: cfg.AllowLoopbackWebhooks},
		Fingerprints:        cfg.Fingerprints,
	}
	if cfg.AuthURL != "" {
		sessions, err := auth.NewSessionChecker(auth.SessionConfig{AuthURL: cfg.AuthURL, AnonKey: cfg.AnonKey, Log: &authLog})
		if err != nil {
			return err
		}
		hcfg.Sessions = sessions
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(db.PoolCollector())
	hcfg.Metrics = httpapi.NewMetrics(reg)
	drain := &httpapi.Drain{}
	hcfg.Drain = drain
	e := httpapi.New(hcfg, db, cfg.PublicKey, verifier, log, openapi.Spec)
	// While draining, each answer asks the client to close its connection,
	// so kept-alive clients move to another replica after their next
	// request instead of meeting a closed connection.
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if drain.Draining() {
			w.Header().Set("Connection", "close")
		}
		e.ServeHTTP(w, r)
	})

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("API_ADDR: %w", err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 64 << 10,
		TLSConfig: cfg.TLS, ErrorLog: stdlog.New(log.With().Str("component", "http").Logger(), "", 0)}
	errc := make(chan error, 2)
	go func() {
		if cfg.TLS != nil {
			errc <- srv.ServeTLS(ln, "", "") // certificates come from cfg.TLS
			return
		}
		errc <- srv.Serve(ln)
	}()

	var msrv *http.Server
	if cfg.MetricsAddr != "" {
		mln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			_ = srv.Close()
			return fmt.Errorf("METRICS_ADDR: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		msrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { errc <- msrv.Serve(mln) }()
	}
	if cfg.JWTIssuer == "" {
		log.Warn().Msg("no issuer check: tokens' iss is not checked; set SUPABASE_URL, or SUPABASE_JWT_ISSUER to the iss your Auth server signs (GOTRUE_JWT_ISSUER)")
	}
	log.Info().Str("addr", ln.Addr().String()).Bool("tls", cfg.TLS != nil).
		Bool("hs256", cfg.JWTSecret != "").Str("jwks_url", cfg.JWKSURL).Str("auth_url", cfg.AuthURL).
		Msg("api listening")
	if ready != nil {
		ready <- ln.Addr().String()
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		_ = srv.Close()
		if msrv != nil {
			_ = msrv.Close()
		}
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
	return shutdown(cfg, log, drain, srv, msrv)
}

// shutdown stops the api without refusing anyone a load balancer still
// routes here: /readyz turns to 503 first and everything is served as usual
// for ShutdownReadinessDelay (time for load balancers, and for Kubernetes
// endpoints after the preStop hook, to stop sending requests); then the
// listeners close and requests in flight get ShutdownGrace to finish before
// their connections are closed. It fails only when the grace ran out.
func shutdown(cfg Config, log zerolog.Logger, drain *httpapi.Drain, srv, msrv *http.Server) error {
	drain.Start()
	log.Info().Dur("readiness_delay", cfg.ShutdownReadinessDelay).Dur("grace", cfg.ShutdownGrace).
		Msg("shutting down: /readyz answers 503; still serving until the readiness delay is over")
	delay := time.NewTimer(cfg.ShutdownReadinessDelay)
	defer delay.Stop()
	select {
	case <-delay.C:
	case <-cfg.delayOver:
	}
	log.Info().Msg("draining")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancel()
	merr := make(chan error, 1)
	go func() {
		if msrv == nil {
			merr <- nil
			return
		}
		merr <- msrv.Shutdown(sctx)
	}()
	err := srv.Shutdown(sctx)
	if merr := <-merr; err == nil {
		err = merr
	}
	if err != nil {
		_ = srv.Close()
		if msrv != nil {
			_ = msrv.Close()
		}
		return fmt.Errorf("shutdown: requests still running after SHUTDOWN_GRACE (%s) were cut off: %w", cfg.ShutdownGrace, err)
	}
	log.Info().Msg("stopped")
	return nil
}
