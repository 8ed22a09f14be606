// Command fairness measures whether one user with a long audit log can
// starve everyone else: it seeds one user with a long audit chain (200,000
// events by default) and another with two connections, then has the first
// hammer GET /v1/audit-events/verify from 12 concurrent clients through the
// real router (with the api's production pool of 10 connections and its 5s
// statement timeout) while the second reads GET /v1/connections, and prints
// the second user's p50/p99 idle and under each load: incremental checks
// (the normal case) and full=true re-checks (the worst case). The per-user
// budgets for expensive reads would answer most of that hammering with 429
// after a few calls, so by default they are lifted to measure what the
// database layer alone guarantees; -limits keeps the api's defaults.
//
//	go run ./bench/fairness [-events 200000] [-clients 12] [-duration 15s] [-pool 10] [-limits]
//
// It needs CREATE DATABASE on TOKKA_BENCH_DATABASE_URL (default: the local
// server scripts/test uses), as a superuser (the chain is seeded in bulk).
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/rs/zerolog"

	openapi "github.com/tokka-dev/tokka"
	"github.com/tokka-dev/tokka/bench/benchdb"
	"github.com/tokka-dev/tokka/pkg/auth"
	"github.com/tokka-dev/tokka/pkg/authtest"
	"github.com/tokka-dev/tokka/pkg/httpapi"
	"github.com/tokka-dev/tokka/pkg/keyring"
	"github.com/tokka-dev/tokka/pkg/pgtest"
	"github.com/tokka-dev/tokka/pkg/postgres"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench/fairness:", err)
		os.Exit(1)
	}
}

// config is what the flags set.
type config struct {
	events, clients, pool int
	duration, timeout     time.Duration
	limits                bool
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("fairness", flag.ContinueOnError)
	fs.IntVar(&c.events, "events", 200_000, "audit events of the user who verifies")
	fs.IntVar(&c.clients, "clients", 12, "concurrent verify clients")
	fs.DurationVar(&c.duration, "duration", 15*time.Second, "length of each measured phase")
	fs.IntVar(&c.pool, "pool", 10, "the api's database connections (DATABASE_MAX_CONNS)")
	fs.DurationVar(&c.timeout, "statement-timeout", postgres.DefaultStatementTimeout, "DATABASE_STATEMENT_TIMEOUT")
	fs.BoolVar(&c.limits, "limits", false, "keep the api's default per-user budgets for expensive reads")
	return c, fs.Parse(args)
}

// phase is one measured stretch: the other user's reads, alone or (load)
// beside the heavy user's verify clients, whose URL ends in query.
type phase struct {
	name  string
	query string
	load  bool
}

var phases = []phase{
	{"idle", "", false},
	{"under incremental verify", "", true},
	{"under verify?full=true", "?full=true", true},
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
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	dbURL, drop, err := pg.Fresh(ctx, "tokka_bench_fairness_"+hex.EncodeToString(suffix[:]))
	if err != nil {
		return err
	}
	defer drop()
	heavy, other, err := seed(ctx, dbURL, cfg.events, out)
	if err != nil {
		return err
	}
	secret := []byte("bench-secret-bench-secret-bench-secret-0123")
	baseURL, stop, err := serveAPI(ctx, dbURL, secret, cfg)
	if err != nil {
		return err
	}
	defer stop()
	token := func(id string) (string, error) { return authtest.Token{Subject: id, TTL: 2 * time.Hour}.HS256(secret) }
	heavyToken, err := token(heavy)
	if err != nil {
		return err
	}
	otherToken, err := token(other)
	if err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: cfg.clients + 2}}

	t := time.Now()
	if code, err := get(client, baseURL+"/v1/audit-events/verify", heavyToken); err != nil || code != http.StatusOK {
		return fmt.Errorf("first verification: HTTP %d %v", code, err)
	}
	fmt.Fprintf(out, "first verification of %d events (sets the checkpoint): %s\n", cfg.events, time.Since(t).Round(time.Millisecond))
	budgets := "lifted"
	if cfg.limits {
		budgets = "the api's defaults"
	}
	fmt.Fprintf(out, "pool %d, statement timeout %s, %d verify clients, %s per phase, expensive-read budgets %s\n\n",
		cfg.pool, cfg.timeout, cfg.clients, cfg.duration, budgets)

	fmt.Fprintf(out, "%-34s %9s %9s %9s %8s | %-26s\n", "GET /v1/connections (other user)", "p50", "p99", "max", "n", "verify: done, non-200, p50")
	for _, ph := range phases {
		if err := measure(ctx, out, client, baseURL, heavyToken, otherToken, ph, cfg); err != nil {
			return err
		}
	}
	return nil
}

// seed gives one user (heavy) a connection and an audit chain of events,
// and another (other) two connections, and returns their ids.
func seed(ctx context.Context, dbURL string, events int, out io.Writer) (heavy, other string, err error) {
	heavy, other = uuid.NewString(), uuid.NewString()
	raw, err := sqlx.Open("postgres", dbURL)
	if err != nil {
		return "", "", err
	}
	defer raw.Close()
	for _, c := range []struct{ user, provider string }{{heavy, "openai"}, {other, "openai"}, {other, "anthropic"}} {
		if _, err := raw.ExecContext(ctx, `INSERT INTO tokka.connections (id, team_id, provider, label, key_hint, sealed_key)
			VALUES ($1, $2, $3, $3, 'hint', 'v2:00')`, uuid.NewString(), c.user, c.provider); err != nil {
			return "", "", err
		}
	}
	t := time.Now()
	if err := pgtest.SeedAuditChain(ctx, raw, heavy, events); err != nil {
		return "", "", err
	}
	if _, err := raw.ExecContext(ctx, `ANALYZE`); err != nil {
		return "", "", err
	}
	fmt.Fprintf(out, "seeded %d audit events in %s\n", events, time.Since(t).Round(time.Millisecond))
	return heavy, other, nil
}

// serveAPI serves the real router on dbURL (with cfg's pool and statement
// timeout, and its per-user budgets lifted unless cfg.limits) on a
// loopback port, accepting HS256 tokens signed with secret. stop closes
// the server and its pool.
func serveAPI(ctx context.Context, dbURL string, secret []byte, cfg config) (baseURL string, stop func(), err error) {
	db, err := postgres.Open(ctx, dbURL, cfg.pool)
	if err != nil {
		return "", nil, err
	}
	db.SetStatementTimeout(cfg.timeout)
	verifier, err := auth.NewVerifier(auth.Config{HS256Secret: secret})
	if err != nil {
		_ = db.Close()
		return "", nil, err
	}
	kr, err := keyring.New("bench-encryption-key-0123456789abcdef", nil)
	if err != nil {
		_ = db.Close()
		return "", nil, err
	}
	hc := httpapi.Config{}
	if !cfg.limits {
		hc.RateLimits = httpapi.RateLimits{ExpensiveReadsPerMinute: 1_000_000_000, AuditFullPerHour: 1_000_000_000}
	}
	e := httpapi.New(hc, db, kr.PublicKey(), verifier, zerolog.Nop(), openapi.Spec)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = db.Close()
		return "", nil, err
	}
	srv := &http.Server{Handler: e}
	go srv.Serve(ln) //nolint:errcheck
	return "http://" + ln.Addr().String(), func() { _ = srv.Close(); _ = db.Close() }, nil
}

// measure runs one phase for cfg.duration: the other user's sequential
// GET /v1/connections, beside cfg.clients verify loops of the heavy user's
// when the phase has load, and prints one line of figures.
func measure(ctx context.Context, out io.Writer, client *http.Client, baseURL, heavyToken, otherToken string, ph phase, cfg config) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.duration)
	defer cancel()
	var wg sync.WaitGroup
	var done, failed atomic.Int64
	var mu sync.Mutex
	var verifyLat []time.Duration
	if ph.load {
		for i := 0; i < cfg.clients; i++ {
			wg.Go(func() {
				for ctx.Err() == nil {
					t := time.Now()
					code, err := get(client, baseURL+"/v1/audit-events/verify"+ph.query, heavyToken)
					if ctx.Err() != nil {
						return
					}
					d := time.Since(t)
					done.Add(1)
					if err != nil || code != http.StatusOK {
						failed.Add(1)
					}
					mu.Lock()
					verifyLat = append(verifyLat, d)
					mu.Unlock()
				}
			})
		}
	}
	var lat []time.Duration
	var errs int
	// Sequential requests until the phase ends; the one in flight then
	// is counted too (a stalled request is the point of the exercise).
	for ctx.Err() == nil {
		t := time.Now()
		code, err := get(client, baseURL+"/v1/connections", otherToken)
		if err != nil || code != http.StatusOK {
			errs++
		}
		lat = append(lat, time.Since(t))
	}
	cancel()
	wg.Wait()
	if len(lat) == 0 {
		return errors.New("no request completed in a phase; make -duration longer")
	}
	slices.Sort(lat)
	verify := "—"
	if ph.load {
		slices.Sort(verifyLat)
		p50 := time.Duration(0)
		if len(verifyLat) > 0 {
			p50 = pct(verifyLat, .5)
		}
		verify = fmt.Sprintf("%d, %d, %s", done.Load(), failed.Load(), ms(p50))
	}
	fmt.Fprintf(out, "%-34s %9s %9s %9s %8d | %s\n", ph.name, ms(pct(lat, .5)), ms(pct(lat, .99)), ms(lat[len(lat)-1]), len(lat), verify)
	if errs > 0 {
		fmt.Fprintf(out, "  (%d of the other user's requests failed)\n", errs)
	}
	return nil
}

func get(c *http.Client, url, token string) (int, error) {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

func pct(sorted []time.Duration, p float64) time.Duration {
	return sorted[int(float64(len(sorted)-1)*p)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }
