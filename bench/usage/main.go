// Command usage benchmarks the spend dashboards at scale: it generates
// 1,000 users × 2 connections × 365 days × 30 model/project groups (≈22M
// usage rows and as many cost rows) straight into a PostgreSQL database,
// then measures p50/p99 latency through the real HTTP API for the summary, a
// 30-day by-day-and-model breakdown and a 365-day by-month breakdown, and
// prints EXPLAIN (ANALYZE, BUFFERS) for each query.
//
//	go run ./bench/usage [-users 1000] [-groups 30] [-requests 200] [-keep]
//
// It needs CREATE DATABASE on TOKKA_BENCH_DATABASE_URL (default: the local
// server scripts/test uses).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq"
	"github.com/rs/zerolog"

	openapi "github.com/tokka-dev/tokka"
	"github.com/tokka-dev/tokka/bench/benchdb"
	"github.com/tokka-dev/tokka/pkg/auth"
	"github.com/tokka-dev/tokka/pkg/authtest"
	"github.com/tokka-dev/tokka/pkg/httpapi"
	"github.com/tokka-dev/tokka/pkg/keyring"
	"github.com/tokka-dev/tokka/pkg/postgres"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench/usage:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("usage", flag.ContinueOnError)
	users := fs.Int("users", 1000, "users (each with one OpenAI and one Anthropic connection)")
	groups := fs.Int("groups", 30, "model/project groups per connection and day")
	days := fs.Int("days", 365, "days of history")
	requests := fs.Int("requests", 200, "requests per endpoint")
	keep := fs.Bool("keep", false, "keep the database afterwards (and reuse it if it exists)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	name := fmt.Sprintf("tokka_bench_usage_%d_%d_%d", *users, *groups, *days)
	pg, err := benchdb.Connect(ctx)
	if err != nil {
		return err
	}
	defer pg.Close()
	// Also brings a kept database up to the current schema.
	dbURL, exists, err := pg.Kept(ctx, name)
	if err != nil {
		return err
	}
	if !exists {
		if err := generate(ctx, out, dbURL, *users, *groups, *days); err != nil {
			pg.Drop(name)
			return err
		}
	} else {
		fmt.Fprintln(out, "reusing", name)
	}
	if err := ensureRollups(ctx, out, dbURL); err != nil {
		return err
	}
	if !*keep {
		defer pg.Drop(name)
	}
	return measure(ctx, out, dbURL, *requests)
}

func generate(ctx context.Context, out io.Writer, dbURL string, users, groups, days int) error {
	db, err := sqlx.Open("postgres", dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	start := time.Now()
	steps := []struct{ what, sql string }{
		{"connections", `INSERT INTO tokka.connections (id, team_id, provider, label, key_hint, sealed_key, status, backfilled_at, last_synced_at)
			SELECT gen_random_uuid(), ('00000000-0000-4000-8000-' || lpad(to_hex(u), 12, '0'))::uuid, p, p, 'hint', 'v2:00', 'active', now(), now()
			FROM generate_series(1, $1) u, unnest(ARRAY['openai', 'anthropic']) p`},
		{"usage rows", `INSERT INTO tokka.usage_daily (connection_id, team_id, provider, day, family, model, project_id,
				input_uncached_tokens, cache_read_tokens, cache_write_5m_tokens, output_tokens, requests)
			SELECT c.id, c.team_id, c.provider, d::date, 'completions', 'model-' || (g % 10), 'proj_' || (g / 10),
				1000 + g, 100 + g, g, 300 + g, 5
			FROM tokka.connections c, generate_series(current_date - ($1::int - 1), current_date, interval '1 day') d,
				generate_series(0, $2::int - 1) g`},
		{"cost rows", `INSERT INTO tokka.cost_daily (connection_id, team_id, provider, day, line_item, model, project_id,
				amount_usd, amount, currency)
			SELECT c.id, c.team_id, c.provider, d::date, 'model-' || (g % 10) || ', input', 'model-' || (g % 10), 'proj_' || (g / 10),
				0.0001234 * (g + 1), 0.0001234 * (g + 1), 'usd'
			FROM tokka.connections c, generate_series(current_date - ($1::int - 1), current_date, interval '1 day') d,
				generate_series(0, $2::int - 1) g`},
		{"analyze", `ANALYZE`},
	}
	for _, s := range steps {
		t := time.Now()
		var err error
		switch s.what {
		case "connections":
			_, err = db.ExecContext(ctx, s.sql, users)
		case "analyze":
			_, err = db.ExecContext(ctx, s.sql)
		default:
			_, err = db.ExecContext(ctx, s.sql, days, groups)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", s.what, err)
		}
		fmt.Fprintf(out, "generated %-12s in %s\n", s.what, time.Since(t).Round(time.Millisecond))
	}
	var usageRows, costRows int64
	_ = db.Get(&usageRows, `SELECT count(*) FROM tokka.usage_daily`)
	_ = db.Get(&costRows, `SELECT count(*) FROM tokka.cost_daily`)
	var size string
	_ = db.Get(&size, `SELECT pg_size_pretty(pg_database_size(current_database()))`)
	fmt.Fprintf(out, "data: %d usage rows, %d cost rows, database %s, generated in %s\n",
		usageRows, costRows, size, time.Since(start).Round(time.Second))
	return nil
}

// ensureRollups builds the monthly rollups (which the syncer maintains with
// every sync) for rows generated straight into the daily tables.
func ensureRollups(ctx context.Context, out io.Writer, dbURL string) error {
	db, err := postgres.Open(ctx, dbURL, 1)
	if err != nil {
		return err
	}
	defer db.Close()
	raw, err := sqlx.Open("postgres", dbURL)
	if err != nil {
		return err
	}
	defer raw.Close()
	var have bool
	if err := raw.GetContext(ctx, &have, `SELECT EXISTS (SELECT 1 FROM tokka.usage_monthly)`); err != nil || have {
		return err
	}
	t := time.Now()
	if err := db.RebuildRollups(ctx); err != nil {
		return err
	}
	if _, err := raw.ExecContext(ctx, `ANALYZE`); err != nil {
		return err
	}
	fmt.Fprintf(out, "built monthly rollups in %s\n", time.Since(t).Round(time.Second))
	return nil
}

// endpoint is one dashboard read: its path, and the query it runs for the
// EXPLAIN (the summary has none).
type endpoint struct {
	name, path string
	q          tokka.UsageQuery
}

// endpoints are the reads measured, their windows ending today.
func endpoints(today time.Time) []endpoint {
	return []endpoint{
		{"summary", "/v1/usage/summary", tokka.UsageQuery{}},
		{"30 days by day and model",
			"/v1/usage?from=" + today.AddDate(0, 0, -29).Format(time.DateOnly) + "&to=" + today.Format(time.DateOnly) + "&group_by=day,model",
			tokka.UsageQuery{From: today.AddDate(0, 0, -29), To: today, GroupBy: []string{"day", "model"}, Limit: 1001}},
		{"365 days by month",
			"/v1/usage?from=" + today.AddDate(0, 0, -364).Format(time.DateOnly) + "&to=" + today.Format(time.DateOnly) + "&group_by=month",
			tokka.UsageQuery{From: today.AddDate(0, 0, -364), To: today, GroupBy: []string{"month"}, Limit: 1001}},
	}
}

func measure(ctx context.Context, out io.Writer, dbURL string, requests int) error {
	db, err := postgres.Open(ctx, dbURL, 8)
	if err != nil {
		return err
	}
	defer db.Close()
	secret := []byte("bench-secret-bench-secret-bench-secret-0123")
	baseURL, stop, err := serveAPI(db, secret)
	if err != nil {
		return err
	}
	defer stop()
	userIDs, tokens, err := userTokens(dbURL, secret)
	if err != nil {
		return err
	}
	eps := endpoints(time.Now().UTC().Truncate(24 * time.Hour))
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	fmt.Fprintf(out, "\n%-28s %8s %8s %8s %8s\n", "endpoint", "p50", "p90", "p99", "max")
	for _, ep := range eps {
		if err := measureEndpoint(out, client, baseURL+ep.path, ep.name, tokens, requests); err != nil {
			return err
		}
	}
	u := tokka.User{ID: userIDs[0], Claims: []byte(`{"sub":"` + userIDs[0] + `","role":"authenticated"}`)}
	for _, ep := range eps[1:] {
		plan, err := db.ExplainUsage(ctx, u, ep.q)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "\nEXPLAIN (ANALYZE, BUFFERS) — %s\n%s\n", ep.name, plan)
	}
	return nil
}

// serveAPI serves the real router on db on a loopback port, accepting
// HS256 tokens signed with secret; stop closes the server.
func serveAPI(db *postgres.DB, secret []byte) (baseURL string, stop func(), err error) {
	verifier, err := auth.NewVerifier(auth.Config{HS256Secret: secret})
	if err != nil {
		return "", nil, err
	}
	kr, err := keyring.New("bench-encryption-key-0123456789abcdef", nil)
	if err != nil {
		return "", nil, err
	}
	e := httpapi.New(httpapi.Config{}, db, kr.PublicKey(), verifier, zerolog.Nop(), openapi.Spec)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: e}
	go srv.Serve(ln) //nolint:errcheck
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}

// userTokens returns up to 200 users of the database and a token for each.
func userTokens(dbURL string, secret []byte) ([]string, []string, error) {
	raw, err := sqlx.Open("postgres", dbURL)
	if err != nil {
		return nil, nil, err
	}
	defer raw.Close()
	var userIDs []string
	if err := raw.Select(&userIDs, `SELECT DISTINCT team_id::text FROM tokka.connections ORDER BY 1 LIMIT 200`); err != nil {
		return nil, nil, err
	}
	if len(userIDs) == 0 {
		return nil, nil, errors.New("no users in the benchmark database")
	}
	tokens := make([]string, len(userIDs))
	for i, id := range userIDs {
		if tokens[i], err = (authtest.Token{Subject: id, TTL: 2 * time.Hour}).HS256(secret); err != nil {
			return nil, nil, err
		}
	}
	return userIDs, tokens, nil
}

// measureEndpoint reads url once per token to warm up, then times requests
// reads spread over the tokens and prints their percentiles.
func measureEndpoint(out io.Writer, client *http.Client, url, name string, tokens []string, requests int) error {
	// Warm up once per user so every measurement sees a warm cache, as
	// a dashboard in use would.
	for i := range tokens {
		if err := get(client, url, tokens[i]); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	lat := make([]time.Duration, 0, requests)
	for i := 0; i < requests; i++ {
		t := time.Now()
		if err := get(client, url, tokens[i%len(tokens)]); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		lat = append(lat, time.Since(t))
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[int(float64(len(lat)-1)*p)] }
	fmt.Fprintf(out, "%-28s %8s %8s %8s %8s\n", name, ms(pct(.5)), ms(pct(.9)), ms(pct(.99)), ms(lat[len(lat)-1]))
	return nil
}

func get(c *http.Client, url, token string) error {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }
