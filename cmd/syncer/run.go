package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/lib/pq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/tokka-dev/tokka/pkg/anthropic"
	"github.com/tokka-dev/tokka/pkg/budget"
	"github.com/tokka-dev/tokka/pkg/egress"
	"github.com/tokka-dev/tokka/pkg/notify"
	"github.com/tokka-dev/tokka/pkg/openai"
	"github.com/tokka-dev/tokka/pkg/postgres"
	"github.com/tokka-dev/tokka/pkg/profiling"
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

// run is the whole program; tests call it too.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("no command given\n%s", usage)
	}
	switch args[0] {
	case "public-key":
		c, err := loadConfig(getenv, needKeys)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, c.Keyring.PublicKey().String())
		return err
	case "once", "run":
		c, err := loadConfig(getenv, needKeysAndDB)
		if err != nil {
			return err
		}
		return sync(ctx, c, args[0] == "run", stdout)
	case "rewrap":
		c, err := loadConfig(getenv, needKeysAndDB)
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
	// One pooled connection per sync reading from its provider and one per
	// sync storing its results (see syncer.dispatch), plus two for leasing
	// and the scheduled jobs.
	db, err := postgres.Open(ctx, c.DatabaseURL, 2*c.Sync.Concurrency+2)
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

	if c.PprofAddr != "" {
		psrv, err := profiling.Serve("PPROF_ADDR", c.PprofAddr)
		if err != nil {
			return err
		}
		defer psrv.Close()
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
		mailer := notify.NewMailer(*c.SMTP)
		mail = mailer
		c.Sync.Invitations = &syncer.Invitations{Store: db, Mailer: mailer, URL: c.InvitationURL}
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
