// Command syncer benchmarks the syncer against its lower bound: N
// connections (half OpenAI, half Anthropic) are backfilled from the fake
// provider (cmd/fakeprovider, run as its own process so that generating and
// encoding the pages is not counted against the syncer's process) with a
// fixed latency added to every request, by the real
// `syncer once` binary at its default concurrency; then a steady-state round
// re-reads only the trailing window. It prints wall time, connections and
// requests per second, the syncer's peak RSS, rows written, and the lower
// bound (requests × latency ÷ concurrency) with the ratio to it.
//
//	go run ./bench/syncer [-connections 10000] [-latency 50ms] [-concurrency 0]
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
	"strconv"
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

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench/syncer:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("syncer", flag.ContinueOnError)
	n := fs.Int("connections", 10000, "connections (half OpenAI, half Anthropic)")
	latency := fs.Duration("latency", 50*time.Millisecond, "latency the fake provider adds to every request")
	concurrency := fs.Int("concurrency", 0, "SYNC_CONCURRENCY for the syncer (0: its default)")
	days := fs.Int("days", 90, "first-sync backfill days")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pg, err := benchdb.Connect(ctx)
	if err != nil {
		return err
	}
	defer pg.Close()
	dbURL, drop, err := pg.Fresh(ctx, "tokka_bench_syncer")
	if err != nil {
		return err
	}
	defer drop()

	// The syncer and the fake provider, built once.
	dir, err := os.MkdirTemp("", "tokka-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	build := exec.Command("go", "build", "-o", dir+"/", "./cmd/syncer", "./cmd/fakeprovider")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("go build ./cmd/syncer ./cmd/fakeprovider: %w", err)
	}

	encKey := "bench-encryption-key-" + uuid.NewString()
	kr, err := keyring.New(encKey, nil)
	if err != nil {
		return err
	}
	t := time.Now()
	if err := seed(ctx, dbURL, kr.PublicKey(), *n); err != nil {
		return err
	}
	fmt.Fprintf(out, "seeded %d connections (sealed with HPKE) in %s\n", *n, time.Since(t).Round(time.Millisecond))

	conc := *concurrency
	env := []string{"PATH=" + os.Getenv("PATH"), "DATABASE_URL=" + dbURL, "ENCRYPTION_KEY=" + encKey,
		"LOG_LEVEL=warn", "SYNC_BACKFILL_DAYS=" + strconv.Itoa(*days), "KEY_ROTATION_REMINDER_DAYS=3650"}
	if conc > 0 {
		env = append(env, "SYNC_CONCURRENCY="+strconv.Itoa(conc))
	} else {
		conc = defaultConcurrency
	}
	db, err := sqlx.Open("postgres", dbURL)
	if err != nil {
		return err
	}
	defer db.Close()

	fmt.Fprintf(out, "\n%-12s %10s %10s %10s %10s %12s %8s %8s %10s %10s %10s\n",
		"round", "wall", "conn/s", "req/s", "requests", "lower bound", "ratio", "RSS MB", "rows", "syncer CPU", "fake CPU")
	for _, round := range []string{"backfill", "steady"} {
		if round == "steady" {
			if _, err := db.Exec(`UPDATE tokka.connections SET next_sync_at = now()`); err != nil {
				return err
			}
		}
		var rowsBefore int64
		_ = db.Get(&rowsBefore, `SELECT (SELECT count(*) FROM tokka.usage_daily) + (SELECT count(*) FROM tokka.cost_daily)`)
		fake, err := startFake(ctx, filepath.Join(dir, "fakeprovider"), *latency)
		if err != nil {
			return err
		}
		cmd := exec.CommandContext(ctx, filepath.Join(dir, "syncer"), "once")
		cmd.Env = append(env, "OPENAI_BASE_URL="+fake.url, "ANTHROPIC_BASE_URL="+fake.url)
		cmd.Stderr = os.Stderr
		start := time.Now()
		err = cmd.Run()
		wall := time.Since(start)
		req, fakeCPU, stopErr := fake.stop()
		if err != nil {
			return fmt.Errorf("syncer once (%s): %w", round, err)
		}
		if stopErr != nil {
			return stopErr
		}
		var rss int64
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			rss = ru.Maxrss / 1024 // KiB on Linux
		}
		syncerCPU := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		var active, rowsAfter int64
		_ = db.Get(&active, `SELECT count(*) FROM tokka.connections WHERE status = 'active'`)
		_ = db.Get(&rowsAfter, `SELECT (SELECT count(*) FROM tokka.usage_daily) + (SELECT count(*) FROM tokka.cost_daily)`)
		if active != int64(*n) {
			return fmt.Errorf("%s: only %d of %d connections are active", round, active, *n)
		}
		lower := time.Duration(float64(req) * float64(*latency) / float64(conc))
		fmt.Fprintf(out, "%-12s %10s %10.1f %10.1f %10d %12s %8.2f %8d %10d %10s %10s\n",
			round, wall.Round(100*time.Millisecond), float64(*n)/wall.Seconds(), float64(req)/wall.Seconds(), req,
			lower.Round(100*time.Millisecond), wall.Seconds()/lower.Seconds(), rss, rowsAfter-rowsBefore,
			syncerCPU.Round(100*time.Millisecond), fakeCPU.Round(100*time.Millisecond))
	}
	fmt.Fprintf(out, "\nconcurrency %d, latency %s; rows column: net rows added (the steady round replaces its window);\n"+
		"CPU columns: user+system time of the syncer process and of the fake provider's process\n", conc, *latency)
	return nil
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
		blob, err := pk.Seal(secret.FromString(key), seal.Binding{UserID: user, ConnectionID: id, Provider: p})
		if err != nil {
			return err
		}
		ids, users, providers = append(ids, id), append(users, user), append(providers, string(p))
		hints, blobs = append(hints, key[:9]+"…"), append(blobs, blob)
	}
	_, err = db.ExecContext(ctx, `
		INSERT INTO tokka.connections (id, user_id, provider, label, key_hint, sealed_key)
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

// startFake starts the fake provider on a free loopback port and waits for
// the line that says where it listens.
func startFake(ctx context.Context, bin string, latency time.Duration) (*fakeProcess, error) {
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = []string{"FAKEPROVIDER_ADDR=127.0.0.1:0", "FAKEPROVIDER_LATENCY=" + latency.String()}
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
