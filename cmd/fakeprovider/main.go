// Command fakeprovider serves the fake OpenAI and Anthropic organisation
// usage and cost APIs (package fakeprovider) over HTTP for local development
// and benchmarks. Point the syncer's base URLs at it; see the package
// documentation for the key conventions.
//
// Environment:
//
//	FAKEPROVIDER_ADDR        listen address, default 127.0.0.1:8090
//	FAKEPROVIDER_LATENCY     Go duration added to every request, default 0
//	FAKEPROVIDER_SLOW_DELAY  Go duration a key with the -slow marker waits, default 5s
//	FAKEPROVIDER_PPROF_ADDR  loopback address for Go's /debug/pprof/ handlers, default off
//	GOGC                     Go's GC target, default 400 (Go's own default is 100)
//
// Fault modes are chosen per key by markers in the key itself (-flaky,
// -ratelimited, -malformed, …; the package documentation lists them), so one
// running server serves healthy and misbehaving connections side by side.
// Organisations are chosen the same way: keys that share a -org_<name> marker
// are keys of one organisation and serve the same data.
// Restatements (-restated) are driven through fakeprovider.Server.Restate,
// which tests call directly; this command serves epoch 0.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/tokka-dev/tokka/pkg/fakeprovider"
	"github.com/tokka-dev/tokka/pkg/profiling"
)

func main() {
	// The fake keeps little from one request to the next but allocates on
	// every one; a higher GC target than Go's 100 spends tens of MB to save
	// CPU it shares with the syncer and PostgreSQL in bench/syncer. GOGC,
	// when set, decides.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakeprovider:", err)
		os.Exit(1)
	}
}

// Config is everything fakeprovider reads from its environment.
type Config struct {
	Addr      string
	Latency   time.Duration
	SlowDelay time.Duration // 0 means fakeprovider.DefaultSlowDelay
	PprofAddr string        // "" means no profiler
}

// configFromEnv parses and validates the environment; the error names the
// offending variable.
func configFromEnv(getenv func(string) string) (Config, error) {
	cfg := Config{Addr: "127.0.0.1:8090"}
	if v := getenv("FAKEPROVIDER_ADDR"); v != "" {
		cfg.Addr = v
	}
	if v := getenv("FAKEPROVIDER_LATENCY"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return Config{}, fmt.Errorf("FAKEPROVIDER_LATENCY must be a non-negative Go duration such as 50ms, got %q", v)
		}
		cfg.Latency = d
	}
	if v := getenv("FAKEPROVIDER_SLOW_DELAY"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return Config{}, fmt.Errorf("FAKEPROVIDER_SLOW_DELAY must be a positive Go duration such as 10s, got %q", v)
		}
		cfg.SlowDelay = d
	}
	cfg.PprofAddr = getenv("FAKEPROVIDER_PPROF_ADDR")
	if err := profiling.CheckLoopback("FAKEPROVIDER_PPROF_ADDR", cfg.PprofAddr); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// run serves until ctx is cancelled, then shuts down gracefully. It logs one
// JSON line to stdout once listening, and one with the number of requests
// served once stopped. It returns an error for arguments, a
// bad environment or a listen failure, and nil after a clean shutdown.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) > 0 {
		return errors.New("fakeprovider takes no arguments; configure it with FAKEPROVIDER_ADDR, FAKEPROVIDER_LATENCY, FAKEPROVIDER_SLOW_DELAY and FAKEPROVIDER_PPROF_ADDR")
	}
	cfg, err := configFromEnv(getenv)
	if err != nil {
		return err
	}
	log := zerolog.New(stdout).With().Timestamp().Str("service", "fakeprovider").Logger()

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	if cfg.PprofAddr != "" {
		psrv, err := profiling.Serve("FAKEPROVIDER_PPROF_ADDR", cfg.PprofAddr)
		if err != nil {
			_ = ln.Close()
			return err
		}
		defer psrv.Close()
	}
	fake := fakeprovider.New(fakeprovider.Options{Latency: cfg.Latency, SlowDelay: cfg.SlowDelay})
	// Counted for bench/syncer, which runs this server as its own process
	// (so its CPU is not the syncer's) and reads the count from the last line.
	var requests atomic.Int64
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			requests.Add(1)
			fake.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	// The address comes from the listener so ":0" reports the real port.
	log.Info().Str("addr", ln.Addr().String()).Dur("latency", cfg.Latency).Msg("fakeprovider listening")

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info().Int64("requests", requests.Load()).Msg("fakeprovider stopped")
	return nil
}
