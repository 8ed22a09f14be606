package main

import (
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/tokka-dev/tokka/pkg/auth"
	"github.com/tokka-dev/tokka/pkg/envconfig"
	"github.com/tokka-dev/tokka/pkg/httpapi"
	"github.com/tokka-dev/tokka/pkg/seal"
	"github.com/tokka-dev/tokka/pkg/secret"
)

// Config is everything the api reads from its environment. The tagged
// fields are the settings, with their defaults: the README's api table is
// checked against these tags. The fields tagged env:"-" are what loadConfig
// derives from them.
type Config struct {
	DatabaseURL string `env:"DATABASE_URL,required"`
	// DatabaseMaxConn is the size of the connection pool.
	DatabaseMaxConn int `env:"DATABASE_MAX_CONNS" envDefault:"10" range:"1,1000"`
	// DatabaseReadURL, when set, is a streaming replica of DATABASE_URL's
	// database that serves the api's reads.
	DatabaseReadURL string `env:"DATABASE_READ_URL"`
	// ReadAfterWrite is how long a user's reads stay on the primary after
	// their write (postgres.DefaultReadAfterWrite by default).
	ReadAfterWrite time.Duration `env:"DATABASE_READ_AFTER_WRITE" envDefault:"5s" range:"100ms,1h"`
	// StatementTimeout bounds every statement of a request's transaction
	// (postgres.DefaultStatementTimeout by default).
	StatementTimeout time.Duration `env:"DATABASE_STATEMENT_TIMEOUT" envDefault:"5s" range:"100ms,10m"`
	// AnswerCacheMB is how much memory computed usage answers and
	// summaries may keep (httpapi.Config.AnswerCacheBytes); 0 turns it off.
	AnswerCacheMB int    `env:"ANSWER_CACHE_MB" envDefault:"64" range:"0,65536"`
	Addr          string `env:"API_ADDR" envDefault:":8080"`
	// PublicKeyText is ENCRYPTION_PUBLIC_KEY as given; see PublicKey.
	PublicKeyText string `env:"ENCRYPTION_PUBLIC_KEY"`
	// FingerprintSecret is KEY_FINGERPRINT_SECRET as given; see Fingerprints.
	FingerprintSecret string `env:"KEY_FINGERPRINT_SECRET"`
	// PlaintextKeys is "allow" (pasted keys are sealed by the api) or
	// "refuse" (every request carrying api_key is refused: keys arrive
	// sealed by the client, and the api never holds one in plaintext).
	PlaintextKeys string `env:"PLAINTEXT_KEYS" envDefault:"allow"`
	// SupabaseURL is the project URL; it implies AuthURL and JWKSURL.
	SupabaseURL string `env:"SUPABASE_URL"`
	// AuthURL is the Auth server's root; when set, key changes need a
	// session the Auth server still recognises.
	AuthURL string `env:"SUPABASE_AUTH_URL"`
	// JWKSURL publishes the project's asymmetric signing keys.
	JWKSURL string `env:"SUPABASE_JWKS_URL"`
	// JWTSecret is the legacy HS256 secret; optional when JWKSURL is set.
	JWTSecret string `env:"SUPABASE_JWT_SECRET"`
	// JWTIssuer is the iss every token must carry: SUPABASE_JWT_ISSUER, else
	// SUPABASE_URL's Auth URL; empty means no issuer check.
	JWTIssuer string `env:"SUPABASE_JWT_ISSUER"`
	// AnonKey is sent as apikey to the Auth server (the gateway needs it).
	AnonKey        string         `env:"SUPABASE_ANON_KEY"`
	CORSOrigins    envconfig.List `env:"CORS_ALLOWED_ORIGINS"`
	TrustedProxies networks       `env:"TRUSTED_PROXIES"`
	// TLSCertFile and TLSKeyFile, set together, serve TLS 1.3 only; see TLS.
	TLSCertFile string `env:"TLS_CERT_FILE"`
	TLSKeyFile  string `env:"TLS_KEY_FILE"`

	MutationsPerMinute      int `env:"RATE_LIMIT_MUTATIONS_PER_MINUTE" envDefault:"60" range:"1,1000000"`
	IPMutationsPerMinute    int `env:"RATE_LIMIT_IP_MUTATIONS_PER_MINUTE" envDefault:"600" range:"1,1000000"`
	TeamMutationsPerMinute  int `env:"RATE_LIMIT_TEAM_MUTATIONS_PER_MINUTE" envDefault:"300" range:"1,1000000"`
	ExpensiveReadsPerMinute int `env:"RATE_LIMIT_EXPENSIVE_READS_PER_MINUTE" envDefault:"30" range:"1,1000000"`
	AuditFullPerHour        int `env:"RATE_LIMIT_AUDIT_FULL_PER_HOUR" envDefault:"6" range:"1,1000000"`

	// AllowAnonymousUsers accepts tokens of Supabase anonymous sign-ins
	// (otherwise 403).
	AllowAnonymousUsers bool `env:"ALLOW_ANONYMOUS_USERS" envDefault:"false"`
	// SyncRequestInterval spaces "sync now" requests per connection.
	SyncRequestInterval time.Duration `env:"SYNC_REQUEST_INTERVAL" envDefault:"5m" range:"1s,8760h"`
	// ResyncDays is the syncer's setting, read here too: the days the
	// syncer re-reads on every sync are the days usage marks provisional.
	ResyncDays int `env:"SYNC_RESYNC_DAYS" envDefault:"3" range:"1,90"`
	// InvitationTTL is how long a team invitation stays open.
	InvitationTTL time.Duration `env:"INVITATION_TTL" envDefault:"168h" range:"1m,720h"`
	// AllowLoopbackWebhooks is for development only.
	AllowLoopbackWebhooks bool `env:"WEBHOOK_ALLOW_LOOPBACK_HTTP" envDefault:"false"`
	// ShutdownReadinessDelay is how long the api keeps serving after SIGTERM
	// with /readyz answering 503, so load balancers stop sending it requests
	// before it stops listening.
	ShutdownReadinessDelay time.Duration `env:"SHUTDOWN_READINESS_DELAY" envDefault:"5s" range:"0s,1h"`
	// ShutdownGrace bounds the drain that follows: requests in flight may
	// finish for this long, then their connections are closed.
	ShutdownGrace time.Duration `env:"SHUTDOWN_GRACE" envDefault:"15s" range:"1ms,1h"`
	MetricsAddr   string        `env:"METRICS_ADDR"`
	// PprofAddr, for profiling only (bench/api sets it), serves Go's
	// net/http/pprof handlers; it must be a loopback address, since
	// profiles show the process's inner workings.
	PprofAddr string        `env:"PPROF_ADDR"`
	LogLevel  zerolog.Level `env:"LOG_LEVEL" envDefault:"info"`

	// PublicKey seals pasted keys for the syncer.
	PublicKey *seal.PublicKey `env:"-"`
	// Fingerprints is keyed by KEY_FINGERPRINT_SECRET: the fingerprints by
	// which a key pasted twice is recognised, and idempotent requests'
	// digests.
	Fingerprints *secret.Fingerprinter `env:"-"`
	// TLS, when set, serves TLS 1.3 only.
	TLS        *tls.Config        `env:"-"`
	RateLimits httpapi.RateLimits `env:"-"`
	// delayOver, in tests, ends the readiness delay early.
	delayOver <-chan struct{}
}

// networks is TRUSTED_PROXIES: IPs (one address) and CIDRs.
type networks []*net.IPNet

// UnmarshalText reads a comma-separated list of IPs and CIDRs.
func (n *networks) UnmarshalText(text []byte) error {
	var list envconfig.List
	_ = list.UnmarshalText(text)
	*n = nil
	for _, p := range list {
		if !strings.Contains(p, "/") {
			if strings.Contains(p, ":") {
				p += "/128"
			} else {
				p += "/32"
			}
		}
		_, ipnet, err := net.ParseCIDR(p)
		if err != nil {
			return fmt.Errorf("%q is not an IP or CIDR", p)
		}
		*n = append(*n, ipnet)
	}
	return nil
}

// loadConfig reads and validates the environment; needKeys is false for
// `api migrate`, which needs only the database. Each problem is one line
// that names the variable.
func loadConfig(getenv func(string) string, needKeys bool) (Config, error) {
	// The api must not be able to decrypt; ENCRYPTION_KEY here means the
	// deployment has handed it the syncer's secret by mistake.
	if getenv("ENCRYPTION_KEY") != "" || getenv("ENCRYPTION_KEYS_RETIRED") != "" {
		return Config{}, errors.New("ENCRYPTION_KEY is set in the api's environment; it belongs to the syncer only — remove it and set ENCRYPTION_PUBLIC_KEY (from `syncer public-key`) instead")
	}
	var c Config
	if err := envconfig.Parse(getenv, &c); err != nil {
		return c, err
	}
	if err := checkOrigins(c.CORSOrigins); err != nil {
		return c, err
	}
	if err := checkLoopback(c.PprofAddr); err != nil {
		return c, err
	}
	if c.PlaintextKeys != "allow" && c.PlaintextKeys != "refuse" {
		return c, errors.New(`PLAINTEXT_KEYS must be "allow" or "refuse"`)
	}
	c.RateLimits = httpapi.RateLimits{PerUser: c.MutationsPerMinute, PerIP: c.IPMutationsPerMinute, PerTeam: c.TeamMutationsPerMinute,
		ExpensiveReadsPerMinute: c.ExpensiveReadsPerMinute, AuditFullPerHour: c.AuditFullPerHour, Window: time.Minute}
	if !needKeys {
		return c, nil
	}
	for _, load := range []func() error{c.loadKeys, c.loadAuth, c.loadTLS} {
		if err := load(); err != nil {
			return c, err
		}
	}
	return c, nil
}

// checkOrigins refuses a wildcard and anything that is not a bare origin:
// CORS compares origins exactly, so a path or pattern would never match.
func checkOrigins(origins []string) error {
	for _, o := range origins {
		if o == "*" {
			return errors.New("CORS_ALLOWED_ORIGINS must list origins; \"*\" is not allowed")
		}
		if u, err := url.Parse(o); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
			u.Path != "" || u.RawQuery != "" || u.User != nil || strings.ContainsAny(o, "*?") {
			return fmt.Errorf("CORS_ALLOWED_ORIGINS: %q is not an origin like https://app.example.com (scheme and host, no path or wildcard)", o)
		}
	}
	return nil
}

// checkLoopback refuses a PPROF_ADDR that is not a loopback host and port:
// profiles are for whoever runs the process, never for the network.
func checkLoopback(addr string) error {
	if addr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	ip := net.ParseIP(host)
	if err != nil || (host != "localhost" && (ip == nil || !ip.IsLoopback())) {
		return fmt.Errorf("PPROF_ADDR: %q is not a loopback address like 127.0.0.1:6060", addr)
	}
	return nil
}

// loadKeys reads the syncer's public key and the fingerprint secret.
func (c *Config) loadKeys() error {
	if c.PublicKeyText == "" {
		return errors.New("ENCRYPTION_PUBLIC_KEY is required (print it with `syncer public-key`)")
	}
	var err error
	if c.PublicKey, err = seal.ParsePublicKey(c.PublicKeyText); err != nil {
		return fmt.Errorf("ENCRYPTION_PUBLIC_KEY: %w", err)
	}
	// Only the api holds this secret: stored fingerprints are useless
	// without it. Changing it makes Tokka stop recognising keys pasted
	// before (they can then be added twice, until their first sync finds
	// the organisation), so it is generated once and kept. The syncer may
	// hold it too, for keys sealed by the client (SECURITY.md).
	if len(c.FingerprintSecret) < secret.MinFingerprintSecretLength {
		return fmt.Errorf("KEY_FINGERPRINT_SECRET is required and must be at least %d bytes (generate it once with `openssl rand -hex 32` and keep it; give the syncer the same value)",
			secret.MinFingerprintSecretLength)
	}
	if c.Fingerprints, err = secret.NewFingerprinter([]byte(c.FingerprintSecret)); err != nil {
		return fmt.Errorf("KEY_FINGERPRINT_SECRET: %w", err)
	}
	return nil
}

// loadAuth reads how access tokens are verified (design §6): SUPABASE_URL
// implies SUPABASE_AUTH_URL (+ /auth/v1), which implies SUPABASE_JWKS_URL
// (+ /.well-known/jwks.json); each can be set directly for a self-hosted
// Auth server. At least a JWKS or SUPABASE_JWT_SECRET is needed; both may be
// set (a project migrating from the legacy secret).
func (c *Config) loadAuth() error {
	var err error
	if c.AuthURL, err = envconfig.SupabaseAuthURL(c.SupabaseURL, c.AuthURL); err != nil {
		return err
	}
	c.SupabaseURL = strings.TrimRight(c.SupabaseURL, "/") // valid: SupabaseAuthURL checked it
	if c.JWKSURL, err = envconfig.BaseURL("SUPABASE_JWKS_URL", c.JWKSURL, "https://<project-ref>.supabase.co/auth/v1/.well-known/jwks.json"); err != nil {
		return err
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

// loadTLS loads the certificate when TLS_CERT_FILE and TLS_KEY_FILE are set.
func (c *Config) loadTLS() error {
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return errors.New("TLS_CERT_FILE and TLS_KEY_FILE must be set together")
	}
	if c.TLSCertFile == "" {
		return nil
	}
	var err error
	if c.TLS, err = httpapi.TLSConfig(c.TLSCertFile, c.TLSKeyFile); err != nil {
		return fmt.Errorf("TLS_CERT_FILE/TLS_KEY_FILE: %w", err)
	}
	return nil
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
