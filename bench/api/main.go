// Command api measures the api's throughput beside two ceilings taken in the
// same run: a bare Echo router answering "Hello, World!" (what HTTP alone
// costs here), and pgbench replaying each endpoint's own SQL transaction for
// the same user (what PostgreSQL alone does for the same work). The ratios
// are the figures that matter; absolute numbers vary between machines.
//
//	go run ./bench/api [-c 32] [-duration 10s] [-warmup 1s] [-days 365] [-only REGEXP]
//	                   [-replica | -replica-url URL] [-max-conns 4,8,16,32]
//
// In a fresh database it creates the login roles (deploy/login-roles.sql),
// starts the built api binary as tokka_api with LOG_LEVEL=info, adds one
// user's OpenAI and Anthropic connections through the api and backfills
// them with the real `syncer once` from the in-process fake provider. Each
// endpoint's SQL is captured by putting a recording wire-protocol proxy
// (capture.go) between the api and PostgreSQL for one request; the api is
// then restarted straight on PostgreSQL and every endpoint is loaded with
// -c keep-alive connections, while pgbench runs the captured statements
// with as many clients, as tokka_api, with -M extended.
//
// Two more passes can follow the table. -replica runs everything on a
// private primary with a streaming replica of it (pkg/pgserver), then loads
// the endpoints that read the database again with the api's
// DATABASE_READ_URL on the replica, and prints both; -replica-url does the
// same with an existing replica of TOKKA_BENCH_DATABASE_URL's server.
// -max-conns loads them again with the api started with each
// DATABASE_MAX_CONNS in the list.
//
// It needs CREATE DATABASE on TOKKA_BENCH_DATABASE_URL (default: the local
// server scripts/test uses), psql, pgbench and the go tool, and runs from the
// repository's root; -replica needs the PostgreSQL server binaries instead
// of that server.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	_ "github.com/lib/pq"

	"github.com/tokka-dev/tokka/pkg/pgserver"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench/api:", err)
		os.Exit(1)
	}
}

// endpoint is one measured api route.
type endpoint struct {
	name, path string
	// conns, when set, caps the concurrency of this endpoint (and of its
	// pgbench ceiling) below -c: a limit the api enforces per user.
	conns int
	// Filled by the capture: the request's statements as a pgbench script
	// (nil when it runs no SQL) and the round trips the api made.
	script *script
	trips  int
}

// result is one row of the table.
type result struct {
	ep         *endpoint
	api, bench stats
}

// config is the command line.
type config struct {
	conns          int // concurrent connections per measurement
	pgbenchClients int // when not conns
	days           int
	duration       time.Duration
	warmup         time.Duration
	pgbenchBin     string
	logFile        string
	profDir        string
	verbose, keep  bool
	only           *regexp.Regexp
	// apiEnv is added to the api's environment, after the bench's own.
	apiEnv []string
	// replica runs everything on a private primary and measures reads on a
	// private streaming replica of it; replicaURL names an existing replica
	// of the bench server instead.
	replica    bool
	replicaURL string
	// maxConns are the pool sizes (DATABASE_MAX_CONNS) the pool pass
	// starts the api with, in order; none skips the pass.
	maxConns []int
}

// parseFlags parses and checks the command line.
func parseFlags(args []string) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("api", flag.ContinueOnError)
	fs.IntVar(&cfg.conns, "c", 32, "concurrent connections (and pgbench clients)")
	fs.IntVar(&cfg.pgbenchClients, "pgbench-c", 0, "pgbench clients, when not -c")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "measured time per endpoint and per ceiling")
	fs.DurationVar(&cfg.warmup, "warmup", time.Second, "unmeasured load before each measurement")
	fs.IntVar(&cfg.days, "days", 365, "days of history the syncer backfills")
	fs.StringVar(&cfg.pgbenchBin, "pgbench", "/usr/bin/pgbench", "pgbench binary")
	fs.StringVar(&cfg.logFile, "log", "", "write the api's log here (default: discarded)")
	fs.BoolVar(&cfg.verbose, "v", false, "print each endpoint's captured pgbench script")
	fs.StringVar(&cfg.profDir, "pprof", "", "write a CPU profile of the api process per endpoint, over its measured window, into this `dir`")
	only := fs.String("only", "", "measure only the endpoints whose name matches this `regexp`")
	fs.BoolVar(&cfg.keep, "keep", false, "leave the database behind (its URL is printed), to explain or profile the captured SQL afterwards")
	// The per-user budget for expensive reads (long usage ranges, exports)
	// would turn a load test into 429s; -api-env can set it back.
	cfg.apiEnv = []string{"RATE_LIMIT_EXPENSIVE_READS_PER_MINUTE=1000000"}
	fs.Func("api-env", "extra `NAME=value` for the api's environment (repeatable), e.g. DATABASE_MAX_CONNS=32", func(v string) error {
		if !strings.Contains(v, "=") {
			return fmt.Errorf("%q is not NAME=value", v)
		}
		cfg.apiEnv = append(cfg.apiEnv, v)
		return nil
	})
	fs.BoolVar(&cfg.replica, "replica", false, "run on a private primary with a streaming replica of it (pg_basebackup) "+
		"and measure the reads again with the api's DATABASE_READ_URL on the replica")
	fs.StringVar(&cfg.replicaURL, "replica-url", "", "measure the reads again on this existing streaming replica "+
		"of TOKKA_BENCH_DATABASE_URL's server (its database is replaced by the bench's) instead of starting one")
	fs.Func("max-conns", "measure the endpoints again with the api started with each DATABASE_MAX_CONNS in this "+
		"comma-separated `list`, e.g. 4,8,16,32", func(v string) error {
		cfg.maxConns = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			// The api's own bounds for DATABASE_MAX_CONNS.
			if err != nil || n < 1 || n > 1000 {
				return fmt.Errorf("%q is not a pool size from 1 to 1000", f)
			}
			cfg.maxConns = append(cfg.maxConns, n)
		}
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if cfg.conns < 1 || cfg.duration <= 0 || cfg.warmup < 0 {
		return config{}, errors.New("-c must be at least 1, -duration positive and -warmup not negative")
	}
	var err error
	if cfg.only, err = regexp.Compile(*only); err != nil {
		return config{}, fmt.Errorf("-only: %w", err)
	}
	if cfg.replica && cfg.replicaURL != "" {
		return config{}, errors.New("-replica starts a replica, -replica-url uses one: give one of them")
	}
	if cfg.replica && cfg.keep {
		return config{}, errors.New("-keep cannot keep the database with -replica: it lives on a private server that is removed")
	}
	for _, n := range cfg.maxConns {
		// The api's pool, its ping connection, the replica's WAL sender and
		// the superuser's reserved connections must fit.
		if cfg.replica && n > pgserver.MaxConnections-10 {
			return config{}, fmt.Errorf("-max-conns %d: the private primary of -replica takes %d connections", n, pgserver.MaxConnections)
		}
	}
	if cfg.replicaURL != "" {
		// The URL is not quoted back: it may hold a password.
		u, err := url.Parse(cfg.replicaURL)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
			return config{}, errors.New("-replica-url: want a postgres://user@host:port/database URL")
		}
	}
	return cfg, nil
}

func run(ctx context.Context, args []string, out io.Writer) error {
	cfg, err := parseFlags(args)
	if err != nil {
		return err
	}
	if cfg.profDir != "" {
		if err := os.MkdirAll(cfg.profDir, 0o755); err != nil {
			return fmt.Errorf("-pprof: %w", err)
		}
	}
	if _, err := os.Stat(cfg.pgbenchBin); err != nil {
		return fmt.Errorf("pgbench: %w (install postgresql-client or pass -pgbench)", err)
	}
	srv, err := openServers(ctx, cfg)
	if err != nil {
		return err
	}
	defer srv.close()
	h, err := prepare(ctx, cfg, srv.bench)
	if err != nil {
		return err
	}
	defer h.close()
	if err := h.seedAndCapture(ctx, out); err != nil {
		return err
	}
	var failed failures
	results, err := h.measure(ctx, out, &failed)
	if err != nil {
		return err
	}
	if srv.replicaURL != "" {
		if err := h.compareReplica(ctx, out, srv, results, &failed); err != nil {
			return err
		}
	}
	if len(cfg.maxConns) > 0 {
		if err := h.comparePools(ctx, out, &failed); err != nil {
			return err
		}
	}
	return failed.err(out)
}

// endpoints are the measured routes whose name only matches, with the
// dates in their paths counted back from today.
func endpoints(today time.Time, only *regexp.Regexp) []*endpoint {
	day := func(back int) string { return today.AddDate(0, 0, -back).Format(time.DateOnly) }
	all := []*endpoint{
		{name: "/healthz", path: "/healthz"},
		{name: "/v1/me", path: "/v1/me"},
		{name: "/v1/connections", path: "/v1/connections"},
		{name: "/v1/usage 30d day,model", path: "/v1/usage?from=" + day(29) + "&to=" + day(0) + "&group_by=day,model"},
		{name: "/v1/usage 365d month", path: "/v1/usage?from=" + day(364) + "&to=" + day(0) + "&group_by=month"},
		{name: "/v1/usage/summary", path: "/v1/usage/summary"},
		// One user may run two exports at once (httpapi's per-user limit).
		{name: "export.csv 30d, 2 at once", path: "/v1/usage/export.csv?from=" + day(29) + "&to=" + day(0) + "&group_by=day,model", conns: 2},
	}
	return slices.DeleteFunc(all, func(ep *endpoint) bool { return !only.MatchString(ep.name) })
}

// capture records, through rec, the statements the api runs for one
// request to each endpoint and makes them the endpoint's pgbench script;
// with scripts set, it prints each there.
func capture(ctx context.Context, rec *recorder, apiURL, token string, endpoints []*endpoint, scripts io.Writer) error {
	for _, ep := range endpoints {
		// Once unrecorded, so that the recorded request finds a warm pool.
		if _, err := call(ctx, http.MethodGet, apiURL+ep.path, token, nil, http.StatusOK); err != nil {
			return err
		}
		rec.record()
		_, err := call(ctx, http.MethodGet, apiURL+ep.path, token, nil, http.StatusOK)
		stmts, trips := rec.stop()
		if err != nil {
			return err
		}
		ep.trips = trips
		if len(stmts) == 0 {
			continue
		}
		s, err := newScript(ep.name, stmts)
		if err != nil {
			return fmt.Errorf("%s: %w", ep.name, err)
		}
		ep.script = &s
		if scripts != nil {
			fmt.Fprintf(scripts, "\n%s-- pgbench -D: %s\n", s.text, strings.Join(s.vars, " "))
		}
	}
	return nil
}

// parseHost returns the host:port dbURL connects to.
func parseHost(dbURL string) (string, error) {
	u, err := url.Parse(dbURL)
	if err != nil {
		return "", err
	}
	host := u.Hostname()
	port := u.Port()
	if host == "" {
		host = "127.0.0.1"
	}
	if port == "" {
		port = "5432"
	}
	return net.JoinHostPort(host, port), nil
}
