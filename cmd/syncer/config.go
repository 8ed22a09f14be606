package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/shopspring/decimal"

	"github.com/tokka-dev/tokka/pkg/envconfig"
	"github.com/tokka-dev/tokka/pkg/keyring"
	"github.com/tokka-dev/tokka/pkg/notify"
	"github.com/tokka-dev/tokka/pkg/profiling"
	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/syncer"
)

// Config is everything the syncer reads from its environment. The tagged
// fields are the settings, with their defaults: the README's syncer table is
// checked against these tags. The fields tagged env:"-" are what loadConfig
// derives from them.
type Config struct {
	DatabaseURL   string         `env:"DATABASE_URL"`
	EncryptionKey string         `env:"ENCRYPTION_KEY"`
	RetiredKeys   envconfig.List `env:"ENCRYPTION_KEYS_RETIRED"`
	// FingerprintSecret is the api's KEY_FINGERPRINT_SECRET: with it the
	// syncer fingerprints client-sealed keys on their first open, so one
	// key connected twice is refused as a pasted one is.
	FingerprintSecret string `env:"KEY_FINGERPRINT_SECRET"`

	Interval     time.Duration `env:"SYNC_INTERVAL" envDefault:"6h" range:"1ms,"`
	PollEvery    time.Duration `env:"SYNC_POLL_INTERVAL" envDefault:"5s" range:"1ms,"`
	Concurrency  int           `env:"SYNC_CONCURRENCY" envDefault:"16" range:"1,1000"`
	BackfillDays int           `env:"SYNC_BACKFILL_DAYS" envDefault:"90" range:"1,3650"`
	// ResyncDays is also read by the api, for the days it marks provisional.
	ResyncDays int `env:"SYNC_RESYNC_DAYS" envDefault:"3" range:"1,90"`
	// ProviderConcurrency caps requests in flight to each provider across
	// all connections; it follows SYNC_CONCURRENCY unless set.
	ProviderConcurrency int           `env:"PROVIDER_CONCURRENCY,expand" envDefault:"${SYNC_CONCURRENCY}" range:"1,1000"`
	LeaseFor            time.Duration `env:"SYNC_LEASE_DURATION" envDefault:"10m" range:"1ms,"`
	RetryBackoff        backoff       `env:"SYNC_RETRY_BACKOFF" envDefault:"1m,2m,5m,15m,30m"`
	ShutdownGrace       time.Duration `env:"SYNC_SHUTDOWN_GRACE" envDefault:"30s" range:"1ms,"`
	// StallAfter is when the metrics listener's /healthz (the daemon's
	// liveness probe) fails without progress. Unset, it is stallFloor or,
	// if longer, three polls or one lease.
	StallAfter              time.Duration `env:"SYNC_STALL_TIMEOUT" range:"1ms,"`
	KeyRotationReminderDays int           `env:"KEY_ROTATION_REMINDER_DAYS" envDefault:"90" range:"1,3650"`
	OpenAIBaseURL           string        `env:"OPENAI_BASE_URL" envDefault:"https://api.openai.com"`
	AnthropicBaseURL        string        `env:"ANTHROPIC_BASE_URL" envDefault:"https://api.anthropic.com"`
	SMTPURL                 string        `env:"SMTP_URL"`
	SMTPFrom                string        `env:"SMTP_FROM"`
	// InvitationURL is the SPA page that accepts a team invitation: the
	// emails link to it with "/" and the token appended.
	InvitationURL string `env:"INVITATION_URL"`
	// AllowLoopback lets budget webhooks reach http://127.0.0.1
	// (development only).
	AllowLoopback bool `env:"WEBHOOK_ALLOW_LOOPBACK_HTTP" envDefault:"false"`
	// AnomalyMinUSD is how far above its usual level a day's spend must be
	// to count as an anomaly.
	AnomalyMinUSD decimal.Decimal `env:"ANOMALY_MIN_USD" envDefault:"10"`
	// AppURL is PUBLIC_APP_URL without its trailing slash: Slack messages
	// link to AppURL/budgets/<id>. Empty: no link.
	AppURL string `env:"PUBLIC_APP_URL"`
	// Instance names this process in leases and audit events; unset, a
	// name of host, pid and random digits.
	Instance       string         `env:"SYNCER_INSTANCE"`
	KnownInstances envconfig.List `env:"SYNCER_INSTANCES_ALLOWED"`
	// SupabaseURL, AuthURL, ServiceRoleKey and AnonKey are for `incident
	// notify` only: users' addresses come from the Auth server's admin API.
	SupabaseURL    string        `env:"SUPABASE_URL"`
	AuthURL        string        `env:"SUPABASE_AUTH_URL"`
	ServiceRoleKey string        `env:"SUPABASE_SERVICE_ROLE_KEY"`
	AnonKey        string        `env:"SUPABASE_ANON_KEY"`
	MetricsAddr    string        `env:"METRICS_ADDR"`
	LogLevel       zerolog.Level `env:"LOG_LEVEL" envDefault:"info"`
	// PprofAddr, for profiling only (bench/syncer -pprof sets it), serves
	// Go's profiler; loopback only, like the api's.
	PprofAddr string `env:"PPROF_ADDR"`

	// Keyring opens sealed keys (and seals rewrapped ones).
	Keyring *keyring.Keyring `env:"-"`
	// Sync is the syncer's own configuration, from the settings above.
	Sync syncer.Config `env:"-"`
	// SMTP, when SMTP_URL is set, delivers budget alerts.
	SMTP *notify.SMTPConfig `env:"-"`
}

// stallFloor is SYNC_STALL_TIMEOUT when unset and neither the poll nor the
// lease asks for longer.
const stallFloor = 15 * time.Minute

// backoff is SYNC_RETRY_BACKOFF: the waits after the 1st, 2nd, … failed
// sync in a row.
type backoff []time.Duration

// UnmarshalText reads a comma-separated list of positive durations, none
// shorter than the one before, at most 20.
func (b *backoff) UnmarshalText(text []byte) error {
	v := string(text)
	var steps []time.Duration
	for _, p := range strings.Split(v, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(p))
		if err != nil || d <= 0 {
			return fmt.Errorf("%q is not a comma-separated list of positive durations like 1m,2m,5m,15m,30m", v)
		}
		if len(steps) > 0 && d < steps[len(steps)-1] {
			return fmt.Errorf("%q: each wait must be at least as long as the one before", v)
		}
		steps = append(steps, d)
	}
	if len(steps) > 20 {
		return fmt.Errorf("%q has more than 20 steps", v)
	}
	*b = steps
	return nil
}

// need is what a command needs beyond the settings every command parses.
type need int

const (
	needKeys      need = iota // public-key: the keyring alone
	needKeysAndDB             // once, run, rewrap
	needDBOnly                // incident: it never opens a key
)

// loadConfig reads and validates the environment for a command. Each
// problem is one line that names the variable.
func loadConfig(getenv func(string) string, n need) (Config, error) {
	var c Config
	if err := envconfig.Parse(getenv, &c); err != nil {
		return c, err
	}
	if n != needDBOnly {
		if err := c.loadKeyring(); err != nil || n == needKeys {
			return c, err
		}
	}
	if c.DatabaseURL == "" {
		return c, errors.New("DATABASE_URL is required")
	}
	if n == needDBOnly {
		return c, nil
	}
	if err := profiling.CheckLoopback("PPROF_ADDR", c.PprofAddr); err != nil {
		return c, err
	}
	for _, load := range []func() error{c.checkStallTimeout, c.checkProviders, c.loadAlerts} {
		if err := load(); err != nil {
			return c, err
		}
	}
	if c.Instance == "" {
		host, _ := os.Hostname()
		var b [3]byte
		_, _ = rand.Read(b[:])
		c.Instance = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	}
	c.Sync = syncer.Config{Instance: c.Instance, Interval: c.Interval, Concurrency: c.Concurrency,
		BackfillDays: c.BackfillDays, ResyncDays: c.ResyncDays, LeaseFor: c.LeaseFor, RetryBackoff: c.RetryBackoff,
		KeyRotationReminderDays: c.KeyRotationReminderDays, ShutdownGrace: c.ShutdownGrace,
		KnownInstances: c.KnownInstances}
	if c.FingerprintSecret != "" {
		fp, err := secret.NewFingerprinter([]byte(c.FingerprintSecret))
		if err != nil {
			return c, fmt.Errorf("KEY_FINGERPRINT_SECRET: %w", err)
		}
		c.Sync.Fingerprints = fp
	}
	return c, nil
}

// loadKeyring derives the private keys from ENCRYPTION_KEY and the retired
// ones.
func (c *Config) loadKeyring() error {
	if c.EncryptionKey == "" {
		return errors.New("ENCRYPTION_KEY is required (at least 32 bytes; generate one with `openssl rand -hex 32`)")
	}
	var err error
	c.Keyring, err = keyring.New(c.EncryptionKey, c.RetiredKeys)
	return err
}

// checkStallTimeout fills in SYNC_STALL_TIMEOUT when unset. A running sync
// renews its lease every third of SYNC_LEASE_DURATION and an idle daemon
// ends a pass every SYNC_POLL_INTERVAL: either is progress, so a shorter
// stall time would fail a healthy syncer. Left unset, it grows to three
// polls when the poll is long.
func (c *Config) checkStallTimeout() error {
	if c.StallAfter == 0 {
		c.StallAfter = max(stallFloor, 3*c.PollEvery, c.LeaseFor)
	}
	if c.StallAfter <= c.PollEvery || c.StallAfter <= c.LeaseFor/3 {
		return fmt.Errorf("SYNC_STALL_TIMEOUT (%s) must be longer than SYNC_POLL_INTERVAL and a third of SYNC_LEASE_DURATION", c.StallAfter)
	}
	return nil
}

// checkProviders refuses a provider base URL that would carry admin keys in
// the clear.
func (c *Config) checkProviders() error {
	for _, u := range []struct{ name, v string }{{"OPENAI_BASE_URL", c.OpenAIBaseURL}, {"ANTHROPIC_BASE_URL", c.AnthropicBaseURL}} {
		if !strings.HasPrefix(u.v, "https://") && !loopbackOnly(u.v) {
			return fmt.Errorf("%s: %q must be https (plain http only to 127.0.0.1/localhost, for the fake provider)", u.name, u.v)
		}
	}
	return nil
}

// loopbackOnly reports whether u is plain http to this machine only, the one
// case (the fake provider) where the syncer accepts an unencrypted base URL.
func loopbackOnly(u string) bool {
	p, err := url.Parse(u)
	if err != nil || p.Scheme != "http" {
		return false
	}
	h := p.Hostname()
	return h == "localhost" || h == "127.0.0.1" || h == "::1"
}

// loadAlerts reads how budget alerts are delivered.
func (c *Config) loadAlerts() error {
	if c.AnomalyMinUSD.IsNegative() {
		return fmt.Errorf("ANOMALY_MIN_USD: %q is not a non-negative amount", c.AnomalyMinUSD.String())
	}
	appURL, err := parseAppURL(c.AppURL)
	if err != nil {
		return err
	}
	c.AppURL = appURL
	if c.SMTPURL == "" {
		return nil
	}
	smtp, err := notify.ParseSMTPURL(c.SMTPURL, c.SMTPFrom)
	if err != nil {
		return err
	}
	c.SMTP = &smtp
	return nil
}

// parseAppURL checks PUBLIC_APP_URL: an absolute https URL (plain http only
// to this machine) with no user info, query or fragment, which goes into
// Slack's <url|text> links as it is, so none of <, >, | may survive
// escaping. It returns it without a trailing slash.
func parseAppURL(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	bad := fmt.Errorf("PUBLIC_APP_URL: %q must be an https URL like https://tokka.example.com, without user, query or fragment", v)
	u, err := url.Parse(v)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "", bad
	}
	if u.Scheme != "https" && !(u.Scheme == "http" && loopbackOnly(v)) {
		return "", bad
	}
	out := strings.TrimSuffix(u.String(), "/")
	if strings.ContainsAny(out, "<>| ") || out != strings.TrimSuffix(v, "/") {
		return "", bad
	}
	return out, nil
}
