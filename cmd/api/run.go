package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"net/http/pprof"
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
)

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
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(db.PoolCollector())
	drain := &httpapi.Drain{}
	handler, err := newHandler(cfg, db, reg, drain, log)
	if err != nil {
		return err
	}
	srv, err := listen(cfg, handler, reg, log)
	if err != nil {
		return err
	}
	defer srv.closeProfiler()
	if cfg.JWTIssuer == "" {
		log.Warn().Msg("no issuer check: tokens' iss is not checked; set SUPABASE_URL, or SUPABASE_JWT_ISSUER to the iss your Auth server signs (GOTRUE_JWT_ISSUER)")
	}
	log.Info().Str("addr", srv.addr).Bool("tls", cfg.TLS != nil).
		Bool("hs256", cfg.JWTSecret != "").Str("jwks_url", cfg.JWKSURL).Str("auth_url", cfg.AuthURL).
		Msg("api listening")
	if ready != nil {
		ready <- srv.addr
	}
	select {
	case <-ctx.Done():
	case err := <-srv.errc:
		srv.close()
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
	return shutdown(cfg, log, drain, srv.api, srv.metrics)
}

// newHandler wires the API's router: token verification, the session check
// when there is an Auth server, and the settings operators chose.
func newHandler(cfg Config, db *postgres.DB, reg *prometheus.Registry, drain *httpapi.Drain, log zerolog.Logger) (http.Handler, error) {
	authLog := log.With().Str("component", "auth").Logger()
	verifier, err := auth.NewVerifier(auth.Config{HS256Secret: []byte(cfg.JWTSecret), JWKSURL: cfg.JWKSURL,
		Issuer: cfg.JWTIssuer, AllowAnonymous: cfg.AllowAnonymousUsers, Log: &authLog})
	if err != nil {
		return nil, err
	}
	hcfg := httpapi.Config{
		AnswerCacheBytes:    cfg.AnswerCacheMB << 20,
		CORSAllowedOrigins:  cfg.CORSOrigins,
		TrustedProxies:      cfg.TrustedProxies,
		RateLimits:          cfg.RateLimits,
		SyncRequestInterval: cfg.SyncRequestInterval,
		ProvisionalDays:     cfg.ResyncDays,
		WebhookGuard:        &egress.Guard{AllowLoopback: cfg.AllowLoopbackWebhooks},
		Fingerprints:        cfg.Fingerprints,
		RefusePlaintextKeys: cfg.PlaintextKeys == "refuse",
		Metrics:             httpapi.NewMetrics(reg),
		Drain:               drain,
		InvitationTTL:       cfg.InvitationTTL,
	}
	if cfg.AuthURL != "" {
		sessions, err := auth.NewSessionChecker(auth.SessionConfig{AuthURL: cfg.AuthURL, AnonKey: cfg.AnonKey, Log: &authLog})
		if err != nil {
			return nil, err
		}
		hcfg.Sessions = sessions
	}
	e := httpapi.New(hcfg, db, cfg.PublicKey, verifier, log, openapi.Spec)
	// While draining, each answer asks the client to close its connection,
	// so kept-alive clients move to another replica after their next
	// request instead of meeting a closed connection.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if drain.Draining() {
			w.Header().Set("Connection", "close")
		}
		e.ServeHTTP(w, r)
	}), nil
}

// servers are the api's listeners: the API and, when METRICS_ADDR is set,
// the metrics one. errc receives the first that stops on its own.
type servers struct {
	api, metrics *http.Server
	// pprof is PPROF_ADDR's listener, when set.
	pprof *http.Server
	addr  string
	errc  chan error
}

// listen starts serving handler on API_ADDR (with TLS when configured),
// /metrics on METRICS_ADDR and the profiler on PPROF_ADDR.
func listen(cfg Config, handler http.Handler, reg *prometheus.Registry, log zerolog.Logger) (*servers, error) {
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("API_ADDR: %w", err)
	}
	s := &servers{addr: ln.Addr().String(), errc: make(chan error, 2)}
	s.api = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 64 << 10,
		TLSConfig: cfg.TLS, ErrorLog: stdlog.New(log.With().Str("component", "http").Logger(), "", 0)}
	go func() {
		if cfg.TLS != nil {
			s.errc <- s.api.ServeTLS(ln, "", "") // certificates come from cfg.TLS
			return
		}
		s.errc <- s.api.Serve(ln)
	}()
	if cfg.PprofAddr != "" {
		pln, err := net.Listen("tcp", cfg.PprofAddr)
		if err != nil {
			_ = s.api.Close()
			return nil, fmt.Errorf("PPROF_ADDR: %w", err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		// Not part of the drain: it closes when serve returns, whatever
		// profile is in progress.
		s.pprof = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = s.pprof.Serve(pln) }()
	}
	if cfg.MetricsAddr == "" {
		return s, nil
	}
	mln, err := net.Listen("tcp", cfg.MetricsAddr)
	if err != nil {
		_ = s.api.Close()
		return nil, fmt.Errorf("METRICS_ADDR: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	s.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { s.errc <- s.metrics.Serve(mln) }()
	return s, nil
}

// closeProfiler stops PPROF_ADDR's listener, if any.
func (s *servers) closeProfiler() {
	if s.pprof != nil {
		_ = s.pprof.Close()
	}
}

// close stops both listeners at once, dropping their connections.
func (s *servers) close() {
	_ = s.api.Close()
	if s.metrics != nil {
		_ = s.metrics.Close()
	}
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
