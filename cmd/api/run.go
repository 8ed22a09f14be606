package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	openapi "github.com/tokka-dev/tokka"
	"github.com/tokka-dev/tokka/pkg/auth"
	"github.com/tokka-dev/tokka/pkg/httpapi"
	"github.com/tokka-dev/tokka/pkg/postgres"
	"github.com/tokka-dev/tokka/pkg/seal"
)

// Config is everything the api reads from its environment.
type Config struct {
	DatabaseURL     string
	Addr            string
	PublicKey       *seal.PublicKey
	JWTSecret       string
	JWTIssuer       string
	CORSOrigins     []string
	TrustedProxies  []*net.IPNet
	MetricsAddr     string
	LogLevel        zerolog.Level
	DatabaseMaxConn int
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
	if c.JWTSecret == "" {
		return c, errors.New("SUPABASE_JWT_SECRET is required to verify access tokens")
	}
	return c, nil
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
	verifier, err := auth.NewVerifier(auth.Config{HS256Secret: []byte(cfg.JWTSecret), Issuer: cfg.JWTIssuer})
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	e := httpapi.New(httpapi.Config{
		CORSAllowedOrigins: cfg.CORSOrigins,
		TrustedProxies:     cfg.TrustedProxies,
		Metrics:            httpapi.NewMetrics(reg),
	}, db, cfg.PublicKey, verifier, log, openapi.Spec)

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("API_ADDR: %w", err)
	}
	srv := &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 120 * time.Second}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()

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
	log.Info().Str("addr", ln.Addr().String()).Msg("api listening")
	if ready != nil {
		ready <- ln.Addr().String()
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if msrv != nil {
		_ = msrv.Shutdown(sctx)
	}
	return srv.Shutdown(sctx)
}
