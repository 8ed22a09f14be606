package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/lib/pq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"github.com/shopspring/decimal"

	"github.com/tokka-dev/tokka/pkg/anthropic"
	"github.com/tokka-dev/tokka/pkg/budget"
	"github.com/tokka-dev/tokka/pkg/egress"
	"github.com/tokka-dev/tokka/pkg/keyring"
	"github.com/tokka-dev/tokka/pkg/notify"
	"github.com/tokka-dev/tokka/pkg/openai"
	"github.com/tokka-dev/tokka/pkg/postgres"
	"github.com/tokka-dev/tokka/pkg/provider"
	"github.com/tokka-dev/tokka/pkg/syncer"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

const usage = `usage: syncer <command>

  run         sync due connections on a schedule until SIGTERM
  once        sync every due connection once and exit (for cron / CronJob)
  rewrap      re-seal every stored key that is v1 or under a retired key to
              ENCRYPTION_KEY, then print a summary (rotation; see the README)
  public-key  print ENCRYPTION_PUBLIC_KEY for the api

exit status: 0 when the pass ran (even if some providers failed; see the
connections' status), 1 when it could not run (configuration, database) or,
for rewrap, when some stored key could not be opened by any configured key.`

// Config is everything the syncer reads from its environment.
type Config struct {
	DatabaseURL      string
	Keyring          *keyring.Keyring
	Sync             syncer.Config
	PollEvery        time.Duration
	OpenAIBaseURL    string
	AnthropicBaseURL string
	MetricsAddr      string
	LogLevel         zerolog.Level
	// ProviderConcurrency caps requests in flight to each provider across
	// all connections (PROVIDER_CONCURRENCY, default SYNC_CONCURRENCY).
	ProviderConcurrency int
	// Budget alert delivery.
	SMTP          *notify.SMTPConfig
	AllowLoopback bool
	AnomalyMinUSD decimal.Decimal
	// AppURL is PUBLIC_APP_URL without its trailing slash: Slack messages
	// link to AppURL/budgets/<id>. Empty: no link.
	AppURL string

	// StallAfter is SYNC_STALL_TIMEOUT: the metrics listener's /healthz
	// (the daemon's liveness probe) fails once the syncer has shown no
	// progress for this long. Default 15m.
	StallAfter time.Duration
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

func loadConfig(getenv func(string) string, keysOnly bool) (Config, error) {
	var c Config
	key := getenv("ENCRYPTION_KEY")
	if key == "" {
		return c, errors.New("ENCRYPTION_KEY is required (at least 32 bytes; generate one with `openssl rand -hex 32`)")
	}
	var retired []string
	for _, r := range strings.Split(getenv("ENCRYPTION_KEYS_RETIRED"), ",") {
		if r = strings.TrimSpace(r); r != "" {
			retired = append(retired, r)
		}
	}
	kr, err := keyring.New(key, retired)
	if err != nil {
		return c, err
	}
	c.Keyring = kr
	if keysOnly {
		return c, nil
	}
	c.DatabaseURL = getenv("DATABASE_URL")
	if c.DatabaseURL == "" {
		return c, errors.New("DATABASE_URL is required")
	}
	durations := []struct {
		name string
		dst  *time.Duration
		def  time.Duration
	}{
		{"SYNC_INTERVAL", &c.Sync.Interval, 6 * time.Hour},
		{"SYNC_POLL_INTERVAL", &c.PollEvery, 5 * time.Second},
		{"SYNC_LEASE_DURATION", &c.Sync.LeaseFor, 10 * time.Minute},
		{"SYNC_SHUTDOWN_GRACE", &c.Sync.ShutdownGrace, 30 * time.Second},
		{"SYNC_STALL_TIMEOUT", &c.StallAfter, 15 * time.Minute},
	}
	for _, d := range durations {
		*d.dst = d.def
		if v := getenv(d.name); v != "" {
			p, err := time.ParseDuration(v)
			if err != nil || p <= 0 {
				return c, fmt.Errorf("%s: %q is not a positive duration like 6h or 30s", d.name, v)
			}
			*d.dst = p
		}
	}
	// A running sync renews its lease every third of SYNC_LEASE_DURATION
	// and an idle daemon ends a pass every SYNC_POLL_INTERVAL: either is
	// progress, so a shorter stall time would fail a healthy syncer. Left
	// unset, it grows to three polls when the poll is long.
	if getenv("SYNC_STALL_TIMEOUT") == "" {
		c.StallAfter = max(c.StallAfter, 3*c.PollEvery, c.Sync.LeaseFor)
	}
	if c.StallAfter <= c.PollEvery || c.StallAfter <= c.Sync.LeaseFor/3 {
		return c, fmt.Errorf("SYNC_STALL_TIMEOUT (%s) must be longer than SYNC_POLL_INTERVAL and a third of SYNC_LEASE_DURATION", c.StallAfter)
	}
	if v := getenv("SYNC_RETRY_BACKOFF"); v != "" {
		if c.Sync.RetryBackoff, err = parseBackoff(v); err != nil {
			return c, fmt.Errorf("SYNC_RETRY_BACKOFF: %w", err)
		}
	}
	ints := []struct {
		name     string
		dst      *int
		def, max int
	}{
		{"SYNC_CONCURRENCY", &c.Sync.Concurrency, 16, 1000},
		{"PROVIDER_CONCURRENCY", &c.ProviderConcurrency, 0, 1000},
		{"SYNC_BACKFILL_DAYS", &c.Sync.BackfillDays, 90, 3650},
		{"SYNC_RESYNC_DAYS", &c.Sync.ResyncDays, 3, 90},
		{"KEY_ROTATION_REMINDER_DAYS", &c.Sync.KeyRotationReminderDays, 90, 3650},
	}
	for _, n := range ints {
		*n.dst = n.def
		if n.def == 0 { // PROVIDER_CONCURRENCY defaults to SYNC_CONCURRENCY
			*n.dst = c.Sync.Concurrency
		}
		if v := getenv(n.name); v != "" {
			p, err := strconv.Atoi(v)
			if err != nil || p < 1 || p > n.max {
				return c, fmt.Errorf("%s: %q is not a whole number from 1 to %d", n.name, v, n.max)
			}
			*n.dst = p
		}
	}
	c.OpenAIBaseURL = getenv("OPENAI_BASE_URL")
	if c.OpenAIBaseURL == "" {
		c.OpenAIBaseURL = openai.DefaultBaseURL
	}
	c.AnthropicBaseURL = getenv("ANTHROPIC_BASE_URL")
	if c.AnthropicBaseURL == "" {
		c.AnthropicBaseURL = anthropic.DefaultBaseURL
	}
	for _, u := range []struct{ name, v string }{{"OPENAI_BASE_URL", c.OpenAIBaseURL}, {"ANTHROPIC_BASE_URL", c.AnthropicBaseURL}} {
		if !strings.HasPrefix(u.v, "https://") && !loopbackOnly(u.v) {
			return c, fmt.Errorf("%s: %q must be https (plain http only to 127.0.0.1/localhost, for the fake provider)", u.name, u.v)
		}
	}
	c.MetricsAddr = getenv("METRICS_ADDR")
	if v := getenv("SMTP_URL"); v != "" {
		smtp, err := notify.ParseSMTPURL(v, getenv("SMTP_FROM"))
		if err != nil {
			return c, err
		}
		c.SMTP = &smtp
	}
	switch v := getenv("WEBHOOK_ALLOW_LOOPBACK_HTTP"); v {
	case "", "false":
	case "true":
		c.AllowLoopback = true
	default:
		return c, fmt.Errorf("WEBHOOK_ALLOW_LOOPBACK_HTTP: %q must be true or false", v)
	}
	if c.AppURL, err = parseAppURL(getenv("PUBLIC_APP_URL")); err != nil {
		return c, err
	}
	c.AnomalyMinUSD = decimal.NewFromInt(10)
	if v := getenv("ANOMALY_MIN_USD"); v != "" {
		d, err := decimal.NewFromString(v)
		if err != nil || d.IsNegative() {
			return c, fmt.Errorf("ANOMALY_MIN_USD: %q is not a non-negative amount", v)
		}
		c.AnomalyMinUSD = d
	}
	lvl, err := zerolog.ParseLevel(strings.ToLower(getenv("LOG_LEVEL")))
	if err != nil {
		return c, fmt.Errorf("LOG_LEVEL: %w", err)
	}
	if lvl == zerolog.NoLevel {
		lvl = zerolog.InfoLevel
	}
	c.LogLevel = lvl
	for _, p := range strings.Split(getenv("SYNCER_INSTANCES_ALLOWED"), ",") {
		if p = strings.TrimSpace(p); p != "" {
			c.Sync.KnownInstances = append(c.Sync.KnownInstances, p)
		}
	}
	c.Sync.Instance = getenv("SYNCER_INSTANCE")
	if c.Sync.Instance == "" {
		host, _ := os.Hostname()
		var b [3]byte
		_, _ = rand.Read(b[:])
		c.Sync.Instance = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	}
	return c, nil
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

// parseBackoff reads a comma-separated list of positive durations, the
// waits after the 1st, 2nd, … failed sync in a row, none shorter than the
// one before (at most 20 steps).
func parseBackoff(v string) ([]time.Duration, error) {
	var steps []time.Duration
	for _, p := range strings.Split(v, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(p))
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("%q is not a comma-separated list of positive durations like 1m,2m,5m,15m,30m", v)
		}
		if len(steps) > 0 && d < steps[len(steps)-1] {
			return nil, fmt.Errorf("%q: each wait must be at least as long as the one before", v)
		}
		steps = append(steps, d)
	}
	if len(steps) > 20 {
		return nil, fmt.Errorf("%q has more than 20 steps", v)
	}
	return steps, nil
}

// run is the whole program; tests call it too.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	switch args[0] {
	case "public-key":
		c, err := loadConfig(getenv, true)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, c.Keyring.PublicKey().String())
		return err
	case "once", "run":
		c, err := loadConfig(getenv, false)
		if err != nil {
			return err
		}
		return sync(ctx, c, args[0] == "run", stdout)
	case "rewrap":
		c, err := loadConfig(getenv, false)
		if err != nil {
			return err
		}
		return rewrap(ctx, c, stdout)
	case "incident":
		return incidentCommand(ctx, args[1:], getenv, stdout)
	case "help", "-h", "--help":
		_, err := fmt.Fprintln(stdout, usage)
		return err
	}
	return fmt.Errorf("unknown command %q\n%s", args[0], usage)
}

func sync(ctx context.Context, c Config, daemon bool, stdout io.Writer) error {
	log := zerolog.New(stdout).Level(c.LogLevel).With().Timestamp().
		Str("service", "syncer").Str("instance", c.Sync.Instance).Logger()
	// One pooled connection per concurrent sync, plus one for leasing.
	db, err := postgres.Open(ctx, c.DatabaseURL, c.Sync.Concurrency+2)
	if err != nil {
		return err
	}
	defer db.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		db.PoolCollector())
	metrics := syncer.NewMetrics(reg)
	if c.MetricsAddr != "" {
		ln, err := net.Listen("tcp", c.MetricsAddr)
		if err != nil {
			return fmt.Errorf("METRICS_ADDR: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.Handle("/healthz", metrics.Health(c.StallAfter, time.Now))
		msrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = msrv.Serve(ln) }()
		// The listener closes as soon as the drain begins (SIGTERM), not
		// when the last sync has finished: a syncer started on this host
		// meanwhile can bind METRICS_ADDR, and a liveness probe stops
		// asking a process that is on its way out.
		stop := context.AfterFunc(ctx, func() {
			_ = msrv.Close()
			log.Info().Msg("metrics listener closed for the shutdown")
		})
		defer stop()
		defer msrv.Close()
	}

	transport := &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: c.ProviderConcurrency, ForceAttemptHTTP2: true,
		TLSHandshakeTimeout: 10 * time.Second, IdleConnTimeout: 90 * time.Second,
	}}
	httpFor := func() provider.HTTPClient {
		return provider.HTTPClient{Client: transport, Limit: provider.NewLimiter(c.ProviderConcurrency),
			Observe: metrics.ObserveProvider}
	}
	clients := map[tokka.Provider]provider.Client{
		tokka.OpenAI:    openai.New(c.OpenAIBaseURL, httpFor()),
		tokka.Anthropic: anthropic.New(c.AnthropicBaseURL, httpFor()),
	}
	// Budgets and anomalies are evaluated after every successful sync.
	var mail budget.EmailSender
	if c.SMTP != nil {
		mail = notify.NewMailer(*c.SMTP)
	}
	c.Sync.AfterSync = budget.New(budget.Config{Instance: c.Sync.Instance,
		Anomaly: budget.AnomalyConfig{MinUSD: c.AnomalyMinUSD}, AppURL: c.AppURL}, db,
		notify.NewWebhook(notify.WebhookConfig{Guard: &egress.Guard{AllowLoopback: c.AllowLoopback}}),
		mail, log.With().Str("component", "budget").Logger())
	s := syncer.New(c.Sync, db, c.Keyring, clients, log, metrics)
	if daemon {
		kids := c.Keyring.KIDs()
		backoff := make([]string, len(c.Sync.RetryBackoff))
		for i, d := range c.Sync.RetryBackoff {
			backoff[i] = d.String()
		}
		log.Info().Dur("poll_every", c.PollEvery).Dur("interval", c.Sync.Interval).Strs("retry_backoff", backoff).
			Int("concurrency", c.Sync.Concurrency).Str("kid", kids[0]).Strs("retired_kids", kids[1:]).
			Msg("syncer running")
		wake, stop := listen(c.DatabaseURL, log)
		defer stop()
		return s.Run(ctx, c.PollEvery, wake)
	}
	sum, err := s.RunOnce(ctx)
	if err != nil {
		return err
	}
	log.Info().Int("synced", sum.Synced).Int("failed", sum.Failed).Int("skipped", sum.Skipped).
		Int("duplicates", sum.Duplicates).Msg("sync pass done")
	return nil
}

// listen subscribes to the api's wake-up channel (postgres.SyncChannel) so a
// new connection or a "sync now" starts a pass at once. If the listener
// cannot connect the daemon still polls; it retries in the background.
func listen(dbURL string, log zerolog.Logger) (<-chan struct{}, func()) {
	wake := make(chan struct{}, 1)
	l := pq.NewListener(dbURL, time.Second, time.Minute, func(ev pq.ListenerEventType, err error) {
		if err != nil {
			log.Warn().Err(err).Msg("sync notifications interrupted; polling continues")
		}
	})
	if err := l.Listen(postgres.SyncChannel); err != nil {
		log.Warn().Err(err).Msg("cannot listen for sync notifications; polling only")
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case n := <-l.Notify:
				if n == nil { // reconnected: something may have been missed
					log.Debug().Msg("sync notifications reconnected")
				}
				select {
				case wake <- struct{}{}:
				default: // a pass is already queued
				}
			}
		}
	}()
	return wake, func() { close(done); _ = l.Close() }
}

// rewrap runs one rewrap pass and prints its summary as the last line of
// output. Some keys failing to open is an error (exit 1): the operator must
// look at them before removing a retired key.
func rewrap(ctx context.Context, c Config, stdout io.Writer) error {
	log := zerolog.New(stdout).Level(c.LogLevel).With().Timestamp().
		Str("service", "syncer").Str("instance", c.Sync.Instance).Logger()
	db, err := postgres.Open(ctx, c.DatabaseURL, 2)
	if err != nil {
		return err
	}
	defer db.Close()
	kids := c.Keyring.KIDs()
	log.Info().Str("current_kid", kids[0]).Strs("retired_kids", kids[1:]).Msg("rewrap starting")
	sum, err := syncer.Rewrap(ctx, db, c.Keyring, c.Sync.Instance, log)
	log.Info().Int("rewrapped", sum.Rewrapped).Int("already_current", sum.Current).Int("failed", sum.Failed).
		Int("skipped", sum.Skipped).Msg("rewrap done")
	if _, perr := fmt.Fprintln(stdout, "rewrap: "+sum.String()); perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		return fmt.Errorf("rewrap stopped early (run it again to resume): %w", err)
	}
	if sum.Failed > 0 {
		return fmt.Errorf("rewrap: %d stored keys open with no configured key; their connections are now needs_reconnect (see the log above)", sum.Failed)
	}
	return nil
}
