// Command api measures the api's throughput beside two ceilings taken in the
// same run: a bare Echo router answering "Hello, World!" (what HTTP alone
// costs here), and pgbench replaying each endpoint's own SQL transaction for
// the same user (what PostgreSQL alone does for the same work). The ratios
// are the figures that matter; absolute numbers vary between machines.
//
//	go run ./bench/api [-c 32] [-duration 10s] [-warmup 1s] [-days 365]
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
// It needs CREATE DATABASE on TOKKA_BENCH_DATABASE_URL (default: the local
// server scripts/test uses), psql, pgbench and the go tool, and runs from the
// repository's root.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
	_ "github.com/lib/pq"

	"github.com/tokka-dev/tokka/bench/benchdb"
	"github.com/tokka-dev/tokka/pkg/authtest"
	"github.com/tokka-dev/tokka/pkg/keyring"
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

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("api", flag.ContinueOnError)
	conns := fs.Int("c", 32, "concurrent connections (and pgbench clients)")
	pgbenchClients := fs.Int("pgbench-c", 0, "pgbench clients, when not -c")
	duration := fs.Duration("duration", 10*time.Second, "measured time per endpoint and per ceiling")
	warmup := fs.Duration("warmup", time.Second, "unmeasured load before each measurement")
	days := fs.Int("days", 365, "days of history the syncer backfills")
	pgbenchBin := fs.String("pgbench", "/usr/bin/pgbench", "pgbench binary")
	logFile := fs.String("log", "", "write the api's log here (default: discarded)")
	verbose := fs.Bool("v", false, "print each endpoint's captured pgbench script")
	profDir := fs.String("pprof", "", "write a CPU profile of the api process per endpoint, over its measured window, into this `dir`")
	only := fs.String("only", "", "measure only the endpoints whose name matches this `regexp`")
	keep := fs.Bool("keep", false, "leave the database behind (its URL is printed), to explain or profile the captured SQL afterwards")
	// The per-user budget for expensive reads (long usage ranges, exports)
	// would turn a load test into 429s; -api-env can set it back.
	apiEnv := []string{"RATE_LIMIT_EXPENSIVE_READS_PER_MINUTE=1000000"}
	fs.Func("api-env", "extra `NAME=value` for the api's environment (repeatable), e.g. DATABASE_MAX_CONNS=32", func(v string) error {
		if !strings.Contains(v, "=") {
			return fmt.Errorf("%q is not NAME=value", v)
		}
		apiEnv = append(apiEnv, v)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *conns < 1 || *duration <= 0 || *warmup < 0 {
		return fmt.Errorf("-c must be at least 1, -duration positive and -warmup not negative")
	}
	selected, err := regexp.Compile(*only)
	if err != nil {
		return fmt.Errorf("-only: %w", err)
	}
	if *profDir != "" {
		if err := os.MkdirAll(*profDir, 0o755); err != nil {
			return fmt.Errorf("-pprof: %w", err)
		}
	}
	if _, err := os.Stat(*pgbenchBin); err != nil {
		return fmt.Errorf("pgbench: %w (install postgresql-client or pass -pgbench)", err)
	}

	// A fresh database with the schema and the login roles.
	pg, err := benchdb.Connect(ctx)
	if err != nil {
		return err
	}
	defer pg.Close()
	dbURL, drop, err := pg.Fresh(ctx, "tokka_bench_api")
	if err != nil {
		return err
	}
	if *keep {
		fmt.Fprintln(os.Stderr, "keeping the database:", dbURL)
	} else {
		defer drop()
	}
	if err := applyLoginRoles(ctx, dbURL); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "tokka-bench-api-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Fprintln(os.Stderr, "building cmd/api, cmd/syncer and bench/api/hello…")
	if err := build(ctx, dir); err != nil {
		return err
	}

	// Keys, the user and the api's environment.
	encKey := "bench-encryption-key-" + uuid.NewString()
	kr, err := keyring.New(encKey, nil)
	if err != nil {
		return err
	}
	jwtSecret, fingerprintSecret := randomHex(32), randomHex(32)
	token, err := authtest.Token{Subject: uuid.NewString(), Email: "bench@tokka.invalid", TTL: 24 * time.Hour}.HS256([]byte(jwtSecret))
	if err != nil {
		return err
	}
	var logOut *os.File
	if *logFile != "" {
		if logOut, err = os.Create(*logFile); err != nil {
			return err
		}
		defer logOut.Close()
	}
	// startAPI starts the api on databaseURL with extra settings.
	startAPI := func(databaseURL string, extra ...string) (*process, string, error) {
		addr, err := freeAddr()
		if err != nil {
			return nil, "", err
		}
		env := append([]string{"PATH=" + os.Getenv("PATH"), "DATABASE_URL=" + withUser(databaseURL, "tokka_api"),
			"API_ADDR=" + addr, "ENCRYPTION_PUBLIC_KEY=" + kr.PublicKey().String(),
			"SUPABASE_JWT_SECRET=" + jwtSecret, "KEY_FINGERPRINT_SECRET=" + fingerprintSecret, "LOG_LEVEL=info"}, apiEnv...)
		p, err := startProcess(ctx, dir+"/api", nil, append(env, extra...), logOut, "http://"+addr+"/readyz")
		return p, addr, err
	}

	// The api behind the recorder, to seed and to capture each endpoint's SQL.
	pgAddr, err := parseHost(dbURL)
	if err != nil {
		return err
	}
	rec, err := startRecorder(pgAddr)
	if err != nil {
		return err
	}
	defer rec.close()
	api, addr, err := startAPI(withHost(dbURL, rec.addr()))
	if err != nil {
		return err
	}
	defer func() {
		if api != nil {
			api.stop()
		}
	}()
	apiURL := "http://" + addr
	if err := seed(ctx, out, apiURL, token, dbURL, dir+"/syncer", encKey, *days); err != nil {
		return err
	}
	today := time.Now().UTC()
	day := func(back int) string { return today.AddDate(0, 0, -back).Format(time.DateOnly) }
	endpoints := []*endpoint{
		{name: "/healthz", path: "/healthz"},
		{name: "/v1/me", path: "/v1/me"},
		{name: "/v1/connections", path: "/v1/connections"},
		{name: "/v1/usage 30d day,model", path: "/v1/usage?from=" + day(29) + "&to=" + day(0) + "&group_by=day,model"},
		{name: "/v1/usage 365d month", path: "/v1/usage?from=" + day(364) + "&to=" + day(0) + "&group_by=month"},
		{name: "/v1/usage/summary", path: "/v1/usage/summary"},
		// One user may run two exports at once (httpapi's per-user limit).
		{name: "export.csv 30d, 2 at once", path: "/v1/usage/export.csv?from=" + day(29) + "&to=" + day(0) + "&group_by=day,model", conns: 2},
	}
	endpoints = slices.DeleteFunc(endpoints, func(ep *endpoint) bool { return !selected.MatchString(ep.name) })
	var scripts io.Writer
	if *verbose {
		scripts = out
	}
	if err := capture(ctx, rec, apiURL, token, endpoints, scripts); err != nil {
		return err
	}
	api.stop()
	rec.close()

	// The measured servers: the api straight on PostgreSQL, and hello.
	var prof *profiler
	var extra []string
	if *profDir != "" {
		pprofAddr, err := freeAddr()
		if err != nil {
			return err
		}
		prof = &profiler{addr: pprofAddr, dir: *profDir}
		extra = append(extra, "PPROF_ADDR="+pprofAddr)
	}
	if api, addr, err = startAPI(dbURL, extra...); err != nil {
		return err
	}
	helloAddr, err := freeAddr()
	if err != nil {
		return err
	}
	hello, err := startProcess(ctx, dir+"/hello", []string{"-addr", helloAddr}, []string{"PATH=" + os.Getenv("PATH")},
		nil, "http://"+helloAddr+"/")
	if err != nil {
		return err
	}
	defer hello.stop()
	clients := *conns
	if *pgbenchClients > 0 {
		clients = *pgbenchClients
	}
	bench := &pgbench{bin: *pgbenchBin, dbURL: withUser(dbURL, "tokka_api"), dir: dir,
		clients: clients, threads: min(clients, runtime.NumCPU())}
	// A short first run learns how long pgbench takes to connect (see
	// pgbench.connect) and shows that it can log in as tokka_api.
	probe, err := bench.run(ctx, "connect", script{text: "SELECT 1;\n"}, 0, time.Second)
	if err != nil || probe.failures() > 0 {
		return fmt.Errorf("pgbench cannot run as tokka_api: %v %s", err, probe.sample)
	}

	fmt.Fprintln(os.Stderr, "measuring bare Echo hello…")
	ceiling := load(ctx, newTarget(helloAddr, "/", ""), *conns, *warmup, *duration)
	var results []result
	for i, ep := range endpoints {
		fmt.Fprintf(os.Stderr, "measuring %s…\n", ep.name)
		c, pb := *conns, bench
		if ep.conns > 0 && ep.conns < c {
			c = ep.conns
			capped := *bench
			capped.clients, capped.threads = c, min(c, capped.threads)
			pb = &capped
		}
		profiled := prof.start(ctx, fmt.Sprintf("%d-%s", i, ep.slug()), *warmup, *duration)
		r := result{ep: ep, api: load(ctx, newTarget(addr, ep.path, token), c, *warmup, *duration)}
		if err := profiled(); err != nil {
			return fmt.Errorf("profile of %s: %w", ep.name, err)
		}
		if ep.script != nil {
			if r.bench, err = pb.run(ctx, fmt.Sprintf("endpoint%d", i), *ep.script, *warmup, *duration); err != nil {
				return fmt.Errorf("pgbench for %s: %w", ep.name, err)
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		results = append(results, r)
	}
	return report(out, ceiling, results, *conns, *duration, bench)
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

func report(out io.Writer, hello stats, results []result, conns int, d time.Duration, bench *pgbench) error {
	fmt.Fprintf(out, "\n%d connections, %s per measurement; GOMAXPROCS %d on %d CPUs; pgbench -M extended -c %d -j %d as tokka_api\n\n",
		conns, d, runtime.GOMAXPROCS(0), runtime.NumCPU(), bench.clients, bench.threads)
	fmt.Fprintf(out, "%-26s %9s %8s %8s %6s | %9s %8s %8s %6s %5s %5s | %9s %11s\n",
		"", "req/s", "p50", "p99", "fail", "pgbench", "p50", "p99", "fail", "stmts", "trips", "api/hello", "api/pgbench")
	fmt.Fprintf(out, "%-26s %9.0f %8s %8s %6d |\n", "bare Echo hello (ceiling)", hello.perSecond(), ms(hello.p50), ms(hello.p99), hello.failures())
	failed := hello.failures()
	samples := []string{}
	if hello.sample != "" {
		samples = append(samples, "bare Echo hello: "+hello.sample)
	}
	for _, r := range results {
		a := r.api
		failed += a.failures()
		if a.sample != "" {
			samples = append(samples, r.ep.name+": "+a.sample)
		}
		fmt.Fprintf(out, "%-26s %9.0f %8s %8s %6d |", r.ep.name, a.perSecond(), ms(a.p50), ms(a.p99), a.failures())
		if r.ep.script == nil {
			fmt.Fprintf(out, " %9s %8s %8s %6s %5s %5d |", "—", "", "", "", "", r.ep.trips)
			fmt.Fprintf(out, " %9.2f %11s\n", ratio(a.perSecond(), hello.perSecond()), "—")
			continue
		}
		b := r.bench
		failed += b.failures()
		if b.sample != "" {
			samples = append(samples, r.ep.name+" (pgbench): "+b.sample)
		}
		fmt.Fprintf(out, " %9.0f %8s %8s %6d %5d %5d |", b.perSecond(), ms(b.p50), ms(b.p99), b.failures(), r.ep.script.statements, r.ep.trips)
		fmt.Fprintf(out, " %9.2f %11.2f\n", ratio(a.perSecond(), hello.perSecond()), ratio(a.perSecond(), b.perSecond()))
	}
	fmt.Fprintln(out, "\nreq/s, p50, p99: the api at the same concurrency; pgbench: transactions/s replaying the statements the api ran")
	fmt.Fprintln(out, "for one request (captured), as tokka_api; stmts: statements in it (BEGIN and COMMIT included); trips: the api's")
	fmt.Fprintln(out, "round trips to PostgreSQL per request; fail: non-2xx answers and errors (none is allowed).")
	if failed > 0 {
		for _, s := range samples {
			fmt.Fprintln(out, "first failure —", s)
		}
		return fmt.Errorf("%d requests or transactions failed under load", failed)
	}
	return nil
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000) }
