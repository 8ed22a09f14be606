// Command syncer benchmarks the syncer against its lower bound: N
// connections (half OpenAI, half Anthropic) are backfilled from the fake
// provider (cmd/fakeprovider, run as its own process so that generating and
// encoding the pages is not counted against the syncer's process) with a
// fixed latency added to every request, by the real
// `syncer once` binary at its default concurrency; then a steady-state round
// re-reads only the trailing window. It prints wall time, connections and
// requests per second, the syncer's peak RSS (its VmHWM: see peakRSS),
// rows written, and the lower bound (requests × latency ÷ concurrency)
// with the ratio to it, and the CPU
// time the syncer, the fake provider and PostgreSQL spent on the round
// (PostgreSQL's from /proc, when the server runs on this machine). With
// -pprof DIR it also writes CPU profiles of the syncer and the fake
// provider, in slices that go tool pprof merges.
//
//	go run ./bench/syncer [-connections 10000] [-latency 50ms] [-concurrency 0] [-days 90] [-pprof DIR]
//
// It needs CREATE DATABASE on TOKKA_BENCH_DATABASE_URL (default: the local
// server scripts/test uses) and the go tool to build the syncer and the fake
// provider.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/tokka-dev/tokka/bench/benchdb"
	"github.com/tokka-dev/tokka/pkg/keyring"
	"github.com/tokka-dev/tokka/pkg/seal"
	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// defaultConcurrency mirrors the syncer's SYNC_CONCURRENCY default, for the
// lower bound when -concurrency is not given.
const defaultConcurrency = 16

// database is the benchmark's database, created afresh by every run.
const database = "tokka_bench_syncer"

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench/syncer:", err)
		os.Exit(1)
	}
}

// config is the command line.
type config struct {
	connections, concurrency, days int
	latency                        time.Duration
	pprofDir                       string // "" means no profiles
	keep                           bool   // leave the database behind
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("syncer", flag.ContinueOnError)
	fs.IntVar(&c.connections, "connections", 10000, "connections (half OpenAI, half Anthropic)")
	fs.DurationVar(&c.latency, "latency", 50*time.Millisecond, "latency the fake provider adds to every request")
	fs.IntVar(&c.concurrency, "concurrency", 0, "SYNC_CONCURRENCY for the syncer (0: its default)")
	fs.IntVar(&c.days, "days", 90, "first-sync backfill days")
	fs.StringVar(&c.pprofDir, "pprof", "", "write CPU profiles of the syncer and the fake provider per round to this directory")
	fs.BoolVar(&c.keep, "keep", false, "leave the database "+database+" behind (for EXPLAIN; the next run replaces it)")
	err := fs.Parse(args)
	return c, err
}

func run(ctx context.Context, args []string, out io.Writer) error {
	cfg, err := parseFlags(args)
	if err != nil {
		return err
	}
	pg, err := benchdb.Connect(ctx)
	if err != nil {
		return err
	}
	defer pg.Close()
	b, cleanup, err := setUp(ctx, pg, cfg, out)
	if err != nil {
		return err
	}
	defer cleanup()

	fmt.Fprintf(out, "\n%-12s %10s %10s %10s %10s %12s %8s %8s %10s %10s %10s %10s\n",
		"round", "wall", "conn/s", "req/s", "requests", "lower bound", "ratio", "RSS MiB", "rows", "syncer CPU", "fake CPU", "PG CPU")
	for _, round := range []string{"backfill", "steady"} {
		r, err := b.round(ctx, round)
		if err != nil {
			return err
		}
		r.print(out, cfg)
	}
	fmt.Fprintf(out, "\nconcurrency %d, latency %s; rows column: net rows added (the steady round replaces its window);\n"+
		"CPU columns: user+system time of the syncer process, of the fake provider's process and of the\n"+
		"PostgreSQL backends serving the benchmark's database (- when the server is not on this machine)\n", b.conc, cfg.latency)
	if cfg.pprofDir != "" {
		fmt.Fprintf(out, "profiles: go tool pprof -top %s/backfill-syncer-*.pprof (also -fake-, and steady-)\n", cfg.pprofDir)
	}
	return nil
}

// bench is a seeded database and the built binaries, ready for rounds.
type bench struct {
	cfg   config
	dir   string   // the built syncer and fakeprovider
	env   []string // the syncer's environment, without the provider URLs
	conc  int      // the syncer's concurrency, for the lower bound
	db    *sqlx.DB
	dbURL string
}

// setUp creates and migrates the database, builds the syncer and the fake
// provider, and seeds the connections; cleanup undoes all of it.
func setUp(ctx context.Context, pg *benchdb.Server, cfg config, out io.Writer) (*bench, func(), error) {
	dbURL, drop, err := pg.Fresh(ctx, database)
	if err != nil {
		return nil, nil, err
	}
	b := &bench{cfg: cfg, dbURL: dbURL}
	cleanup := func() {
		if b.db != nil {
			_ = b.db.Close()
		}
		if b.dir != "" {
			_ = os.RemoveAll(b.dir)
		}
		if !cfg.keep {
			drop()
		}
	}
	if err := b.build(); err != nil {
		cleanup()
		return nil, nil, err
	}
	if cfg.pprofDir != "" {
		if err := os.MkdirAll(cfg.pprofDir, 0o755); err != nil {
			cleanup()
			return nil, nil, err
		}
	}
	encKey := "bench-encryption-key-" + uuid.NewString()
	kr, err := keyring.New(encKey, nil)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	t := time.Now()
	if err := seed(ctx, dbURL, kr.PublicKey(), cfg.connections); err != nil {
		cleanup()
		return nil, nil, err
	}
	fmt.Fprintf(out, "seeded %d connections (sealed with HPKE) in %s\n", cfg.connections, time.Since(t).Round(time.Millisecond))

	b.env = []string{"PATH=" + os.Getenv("PATH"), "DATABASE_URL=" + dbURL, "ENCRYPTION_KEY=" + encKey,
		"LOG_LEVEL=warn", "SYNC_BACKFILL_DAYS=" + strconv.Itoa(cfg.days), "KEY_ROTATION_REMINDER_DAYS=3650"}
	b.conc = defaultConcurrency
	if cfg.concurrency > 0 {
		b.env = append(b.env, "SYNC_CONCURRENCY="+strconv.Itoa(cfg.concurrency))
		b.conc = cfg.concurrency
	}
	if b.db, err = sqlx.Open("postgres", dbURL); err != nil {
		cleanup()
		return nil, nil, err
	}
	return b, cleanup, nil
}

// build builds the syncer and the fake provider once, into a temporary
// directory.
func (b *bench) build() error {
	dir, err := os.MkdirTemp("", "tokka-bench-")
	if err != nil {
		return err
	}
	b.dir = dir
	build := exec.Command("go", "build", "-o", dir+"/", "./cmd/syncer", "./cmd/fakeprovider")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("go build ./cmd/syncer ./cmd/fakeprovider: %w", err)
	}
	return nil
}

// roundResult is what one round measured.
type roundResult struct {
	name                      string
	wall                      time.Duration
	requests, rssMB, rows     int64
	syncerCPU, fakeCPU, pgCPU time.Duration
	pgMeasured                bool
	lowerBound                time.Duration
}

// round runs `syncer once` over every due connection against a fresh fake
// provider and measures it. The steady round first makes every
// connection due again.
func (b *bench) round(ctx context.Context, name string) (roundResult, error) {
	r := roundResult{name: name}
	if name == "steady" {
		// ANALYZE gives the planner what it would know in production,
		// where connections fall due as time passes: that they are all due.
		for _, q := range []string{`UPDATE tokka.connections SET next_sync_at = now()`, `ANALYZE tokka.connections`} {
			if _, err := b.db.ExecContext(ctx, q); err != nil {
				return r, err
			}
		}
	}
	rowsBefore, err := b.rows(ctx)
	if err != nil {
		return r, err
	}
	fakeEnv, syncerEnv, profiles, err := b.profilerEnv(ctx, name)
	if err != nil {
		return r, err
	}
	defer profiles()
	fake, err := startFake(ctx, filepath.Join(b.dir, "fakeprovider"), b.cfg.latency, fakeEnv)
	if err != nil {
		return r, err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(b.dir, "syncer"), "once")
	cmd.Env = append(append(slices.Clone(b.env), syncerEnv...), "OPENAI_BASE_URL="+fake.url, "ANTHROPIC_BASE_URL="+fake.url)
	cmd.Stderr = os.Stderr
	pgCPU := samplePG(ctx, database)
	start := time.Now()
	if err = cmd.Start(); err == nil {
		rss := peakRSS(cmd.Process.Pid)
		err = cmd.Wait()
		r.rssMB = rss() >> 20
	}
	r.wall = time.Since(start)
	r.pgCPU, r.pgMeasured = pgCPU.stop()
	profiles()
	var stopErr error
	r.requests, r.fakeCPU, stopErr = fake.stop()
	if err != nil {
		return r, fmt.Errorf("syncer once (%s): %w", name, err)
	}
	if stopErr != nil {
		return r, stopErr
	}
	r.syncerCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	var active int64
	if err := b.db.GetContext(ctx, &active, `SELECT count(*) FROM tokka.connections WHERE status = 'active'`); err != nil {
		return r, err
	}
	if active != int64(b.cfg.connections) {
		return r, fmt.Errorf("%s: only %d of %d connections are active", name, active, b.cfg.connections)
	}
	rowsAfter, err := b.rows(ctx)
	r.rows = rowsAfter - rowsBefore
	r.lowerBound = time.Duration(float64(r.requests) * float64(b.cfg.latency) / float64(b.conc))
	return r, err
}

// rows counts the daily usage and cost rows.
func (b *bench) rows(ctx context.Context) (int64, error) {
	var n int64
	err := b.db.GetContext(ctx, &n, `SELECT (SELECT count(*) FROM tokka.usage_daily) + (SELECT count(*) FROM tokka.cost_daily)`)
	return n, err
}

// profilerEnv gives the fake provider and the syncer a pprof listener each
// when -pprof is set, and starts collecting their CPU profiles for round;
// stop (safe to call twice) ends the collection.
func (b *bench) profilerEnv(ctx context.Context, round string) (fakeEnv, syncerEnv []string, stop func(), err error) {
	if b.cfg.pprofDir == "" {
		return nil, nil, func() {}, nil
	}
	fakeAddr, err := freeLoopback()
	if err != nil {
		return nil, nil, nil, err
	}
	syncerAddr, err := freeLoopback()
	if err != nil {
		return nil, nil, nil, err
	}
	fake := collect(ctx, fakeAddr, b.cfg.pprofDir, round+"-fake")
	syncer := collect(ctx, syncerAddr, b.cfg.pprofDir, round+"-syncer")
	var once sync.Once
	stop = func() { once.Do(func() { syncer.stop(); fake.stop() }) }
	return []string{"FAKEPROVIDER_PPROF_ADDR=" + fakeAddr}, []string{"PPROF_ADDR=" + syncerAddr}, stop, nil
}

// print writes the round's line of the table.
func (r roundResult) print(out io.Writer, cfg config) {
	pg := "-"
	if r.pgMeasured {
		pg = r.pgCPU.Round(100 * time.Millisecond).String()
	}
	fmt.Fprintf(out, "%-12s %10s %10.1f %10.1f %10d %12s %8.2f %8d %10d %10s %10s %10s\n",
		r.name, r.wall.Round(100*time.Millisecond), float64(cfg.connections)/r.wall.Seconds(), float64(r.requests)/r.wall.Seconds(),
		r.requests, r.lowerBound.Round(100*time.Millisecond), r.wall.Seconds()/r.lowerBound.Seconds(), r.rssMB, r.rows,
		r.syncerCPU.Round(100*time.Millisecond), r.fakeCPU.Round(100*time.Millisecond), pg)
}

// seed inserts n connections for n/2 users, each key sealed to the syncer's
// public key and bound to its row, exactly as the api stores them.
func seed(ctx context.Context, dbURL string, pk *seal.PublicKey, n int) error {
	db, err := sqlx.Open("postgres", dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	var ids, users, providers, hints, blobs []string
	for i := 0; i < n; i++ {
		user := fmt.Sprintf("00000000-0000-4000-8000-%012x", i/2+1)
		id := uuid.NewString()
		p, key := tokka.OpenAI, fmt.Sprintf("sk-admin-bench%08d", i)
		if i%2 == 1 {
			p, key = tokka.Anthropic, fmt.Sprintf("sk-ant-admin01-bench%08d", i)
		}
		blob, err := pk.Seal(secret.FromString(key), seal.Binding{TeamID: user, ConnectionID: id, Provider: p})
		if err != nil {
			return err
		}
		ids, users, providers = append(ids, id), append(users, user), append(providers, string(p))
		hints, blobs = append(hints, key[:9]+"…"), append(blobs, blob)
	}
	_, err = db.ExecContext(ctx, `
		INSERT INTO tokka.connections (id, team_id, provider, label, key_hint, sealed_key)
		SELECT i, u, p, p, h, b FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[]) AS t(i, u, p, h, b)`,
		pq.Array(ids), pq.Array(users), pq.Array(providers), pq.Array(hints), pq.Array(blobs))
	if err != nil {
		return errors.New("seed connections: " + err.Error())
	}
	return nil
}

// fakeProcess is cmd/fakeprovider running as its own process for one round.
type fakeProcess struct {
	cmd  *exec.Cmd
	url  string
	logs *bufio.Scanner
}

// startFake starts the fake provider on a free loopback port, with env
// added to its environment, and waits for the line that says where it
// listens.
func startFake(ctx context.Context, bin string, latency time.Duration, env []string) (*fakeProcess, error) {
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append([]string{"FAKEPROVIDER_ADDR=127.0.0.1:0", "FAKEPROVIDER_LATENCY=" + latency.String()}, env...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the fake provider: %w", err)
	}
	f := &fakeProcess{cmd: cmd, logs: bufio.NewScanner(stdout)}
	var started struct {
		Addr string `json:"addr"`
	}
	if !f.logs.Scan() || json.Unmarshal(f.logs.Bytes(), &started) != nil || started.Addr == "" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("the fake provider did not say where it listens: %q", f.logs.Text())
	}
	f.url = "http://" + started.Addr
	return f, nil
}

// stop shuts the fake provider down and returns the requests it served
// (from its last log line) and the CPU time it used.
func (f *fakeProcess) stop() (requests int64, cpu time.Duration, err error) {
	if err := f.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return 0, 0, err
	}
	var stopped struct {
		Requests *int64 `json:"requests"`
	}
	for f.logs.Scan() {
		_ = json.Unmarshal(f.logs.Bytes(), &stopped)
	}
	if err := f.cmd.Wait(); err != nil {
		return 0, 0, fmt.Errorf("the fake provider: %w", err)
	}
	if stopped.Requests == nil {
		return 0, 0, errors.New("the fake provider did not report the requests it served")
	}
	return *stopped.Requests, f.cmd.ProcessState.UserTime() + f.cmd.ProcessState.SystemTime(), nil
}
