package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// The recorder sees what lib/pq sends, in order, with the bound values and
// the round trips, and newScript turns it into a script whose values are
// pgbench variables.
func TestRecorderCapturesTransactionForPgbench(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.URL(t)
	server, err := parseHost(dbURL)
	require.NoError(t, err)
	rec, err := startRecorder(server)
	require.NoError(t, err)
	t.Cleanup(rec.close)
	db, err := sqlx.Open("postgres", withHost(dbURL, rec.addr()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	ctx := context.Background()
	require.NoError(t, db.PingContext(ctx)) // not recorded

	rec.record()
	tx, err := db.BeginTxx(ctx, nil)
	require.NoError(t, err)
	var claims string
	require.NoError(t, tx.GetContext(ctx, &claims, `SELECT set_config('request.jwt.claims', $1, true)`, `{"sub":"u:1"}`))
	var n int
	require.NoError(t, tx.GetContext(ctx, &n, `SELECT coalesce($2::int, $1::int + 1) -- $3 is not a parameter`, 41, nil))
	require.NoError(t, tx.GetContext(ctx, &n, `SELECT 1`))
	require.NoError(t, tx.Commit())
	stmts, trips := rec.stop()

	require.Equal(t, `{"sub":"u:1"}`, claims)
	require.Equal(t, 1, n)
	var sqls []string
	for _, s := range stmts {
		sqls = append(sqls, s.sql)
	}
	require.Equal(t, []string{"BEGIN READ WRITE", `SELECT set_config('request.jwt.claims', $1, true)`,
		`SELECT coalesce($2::int, $1::int + 1) -- $3 is not a parameter`, "SELECT 1", "COMMIT"}, sqls)
	require.Equal(t, []param{{value: []byte(`{"sub":"u:1"}`)}}, stmts[1].params)
	require.Equal(t, []param{{value: []byte("41")}, {null: true}}, stmts[2].params)
	// BEGIN, COMMIT and the query without arguments are one round trip
	// each; lib/pq's unnamed statements with arguments cost two.
	require.Equal(t, 7, trips)

	s, err := newScript("test", stmts)
	require.NoError(t, err)
	require.Equal(t, 5, s.statements)
	require.Equal(t, "-- test: the statements the api ran for one request, in order\n"+
		"BEGIN READ WRITE;\n"+
		"SELECT set_config('request.jwt.claims', :s2p1, true);\n"+
		"SELECT coalesce(NULL::int, :s3p1::int + 1) -- $3 is not a parameter\n;\n"+
		"SELECT 1;\nCOMMIT;\n", s.text)
	require.Equal(t, []string{`s2p1={"sub":"u:1"}`, "s3p1=41"}, s.vars)

	// pgbench accepts the script and replays it without an error.
	bin, err := exec.LookPath("pgbench")
	require.NoError(t, err, "pgbench (postgresql-client) is needed")
	pb := &pgbench{bin: bin, dbURL: dbURL, dir: t.TempDir(), clients: 1, threads: 1}
	replayed, err := pb.run(ctx, "test", s, 0, time.Millisecond)
	require.NoError(t, err)
	require.Zero(t, replayed.failures(), replayed.sample)
	require.Positive(t, replayed.requests)

	// Nothing is kept once the recording stops.
	require.NoError(t, db.GetContext(ctx, &n, `SELECT 2`))
	stmts, trips = rec.stop()
	require.Len(t, stmts, 5)
	require.Equal(t, 7, trips)
}

func TestReplaceParamsLeavesQuotedTextAlone(t *testing.T) {
	t.Parallel()
	sub := func(n int) (string, error) { return fmt.Sprintf(":v%d", n), nil }
	for in, want := range map[string]string{
		`SELECT $1, $12`:                      `SELECT :v1, :v12`,
		`SELECT '$1', "$2", $3`:               `SELECT '$1', "$2", :v3`,
		`SELECT 'it''s $1', $2`:               `SELECT 'it''s $1', :v2`,
		"SELECT $1 -- $2\n, $3":               "SELECT :v1 -- $2\n, :v3",
		`SELECT $$ $1 $$, $tag$ $2 $tag$, $3`: `SELECT $$ $1 $$, $tag$ $2 $tag$, :v3`,
		`SELECT a$1 FROM t WHERE x = $1`:      `SELECT a$1 FROM t WHERE x = :v1`,
	} {
		got, err := replaceParams(in, sub)
		require.NoError(t, err)
		require.Equal(t, want, got, in)
	}
}

func TestPgbenchSafeRejectsWhatPgbenchTakesForVariables(t *testing.T) {
	t.Parallel()
	require.NoError(t, pgbenchSafe(`SELECT $1::date, x::text FROM t`))
	require.NoError(t, pgbenchSafe(`SELECT ':' , ': x'`))
	require.Error(t, pgbenchSafe(`SELECT to_char(now(), 'HH24:MI')`))
	require.Error(t, pgbenchSafe(`SELECT '{"a":1}'::jsonb`))
	_, err := newScript("colon", []statement{{sql: `SELECT 'a:b'`}})
	require.ErrorContains(t, err, "statement 1")
	_, err = newScript("unbound", []statement{{sql: `SELECT $2`, params: []param{{value: []byte("x")}}}})
	require.ErrorContains(t, err, "$2 has no bound value")
}

// Load counts only 2xx answers as requests and reports every other status
// with a sample body, and carries on over connections the server closes.
func TestLoadCountsFailuresAndReconnects(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		switch calls.Add(1) % 4 {
		case 0:
			http.Error(w, "boom", http.StatusInternalServerError)
		case 1:
			w.Header().Set("Connection", "close")
			_, _ = w.Write([]byte("bye"))
		default:
			_, _ = w.Write([]byte("ok"))
		}
	}))
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")

	s := load(context.Background(), newTarget(addr, "/x", "tok"), 4, 20*time.Millisecond, 200*time.Millisecond)
	require.Positive(t, s.requests)
	require.Positive(t, s.statuses[http.StatusInternalServerError])
	require.Len(t, s.statuses, 1)
	require.Zero(t, s.errors)
	require.Contains(t, s.sample, "HTTP 500: boom")
	require.Positive(t, s.elapsed)
	require.LessOrEqual(t, s.p50, s.p99)

	s = load(context.Background(), newTarget(addr, "/x", ""), 2, 0, 50*time.Millisecond)
	require.Zero(t, s.requests)
	require.Positive(t, s.statuses[http.StatusUnauthorized])
}

// The pgbench log is measured from the moment the last client started, plus
// the warm-up; failed transactions count as failures.
func TestReadTransactionLogs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// client transaction latency_us script end_s end_us
	write := func(name, body string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600))
	}
	write("e-log.100", "0 0 1000 0 100 1000\n"+ // client 0 starts at 100.000000
		"0 1 4000 0 100 5000\n"+ // starts 100.001000: before the window
		"0 2 2000 0 100 502000\n"+ // starts 100.500000: in it
		"0 3 failed 0 100 600000\n")
	write("e-log.100.1", "1 0 1000 0 100 401000\n"+ // client 1 starts at 100.400000
		"1 1 3000 0 100 503000\n"+ // starts 100.500000: in it
		"1 2 1000 0 100 499000\n") // starts 100.498000: before it
	write("e.sql", "not a log")

	s, connected, err := readTransactionLogs(filepath.Join(dir, "e-log"), 100*time.Millisecond)
	require.NoError(t, err)
	require.Equal(t, time.UnixMicro(100_400_000), connected)
	require.Equal(t, 2, s.requests)
	require.Equal(t, 3*time.Millisecond, s.elapsed) // 100.500000 to 100.503000
	require.Equal(t, 2*time.Millisecond, s.p50)
	require.Equal(t, 3*time.Millisecond, s.p99)
	require.Equal(t, 1, s.errors)

	_, _, err = readTransactionLogs(filepath.Join(dir, "none"), 0)
	require.Error(t, err)
}

// The command line: defaults, -max-conns as a list, and the combinations
// that cannot work are refused before anything starts.
func TestParseFlags(t *testing.T) {
	t.Parallel()
	cfg, err := parseFlags(nil)
	require.NoError(t, err)
	require.Equal(t, 32, cfg.conns)
	require.Equal(t, 10*time.Second, cfg.duration)
	require.False(t, cfg.replica)
	require.Empty(t, cfg.replicaURL)
	require.Empty(t, cfg.maxConns)
	require.Equal(t, []string{"RATE_LIMIT_EXPENSIVE_READS_PER_MINUTE=1000000"}, cfg.apiEnv)
	require.True(t, cfg.only.MatchString("/v1/connections"))

	cfg, err = parseFlags([]string{"-max-conns", "4, 8,16,32", "-only", "connections|usage 30d", "-replica",
		"-api-env", "DATABASE_STATEMENT_TIMEOUT=9s"})
	require.NoError(t, err)
	require.Equal(t, []int{4, 8, 16, 32}, cfg.maxConns)
	require.True(t, cfg.replica)
	require.True(t, cfg.only.MatchString("/v1/usage 30d day,model"))
	require.False(t, cfg.only.MatchString("/v1/usage 365d month"))
	require.Equal(t, "DATABASE_STATEMENT_TIMEOUT=9s", cfg.apiEnv[len(cfg.apiEnv)-1])

	cfg, err = parseFlags([]string{"-replica-url", "postgres://postgres@10.0.0.2:5432/postgres?sslmode=disable"})
	require.NoError(t, err)
	require.Equal(t, "postgres://postgres@10.0.0.2:5432/postgres?sslmode=disable", cfg.replicaURL)
	require.False(t, cfg.replica)

	for _, args := range [][]string{
		{"-max-conns", "0"},
		{"-max-conns", "4,x"},
		{"-max-conns", "4,,8"},
		{"-max-conns", "1001"},
		{"-max-conns", "16,91", "-replica"},
		{"-replica", "-replica-url", "postgres://postgres@10.0.0.2/postgres"},
		{"-replica", "-keep"},
		{"-replica-url", "10.0.0.2:5432"},
		{"-replica-url", "postgres:///postgres"},
		{"-c", "0"},
		{"-only", "("},
		{"-api-env", "NOEQUALS"},
		{"stray"},
	} {
		_, err := parseFlags(args)
		require.Error(t, err, args)
	}
	// A password in -replica-url is not echoed back.
	_, err = parseFlags([]string{"-replica-url", "mysql://u:s3cret@h/db"})
	require.Error(t, err)
	require.NotContains(t, err.Error(), "s3cret")
}

// A pool pass prints each endpoint once, its pool sizes in the order run,
// against the first.
func TestReportPoolsGroupsByEndpoint(t *testing.T) {
	t.Parallel()
	a, b := &endpoint{name: "/a"}, &endpoint{name: "/b"}
	at := func(n int) stats { return stats{requests: n, elapsed: time.Second, statuses: map[int]int{}} }
	rows := []poolRow{{ep: a, pool: 4, api: at(100)}, {ep: b, pool: 4, api: at(50)},
		{ep: a, pool: 16, api: at(150)}, {ep: b, pool: 16, api: at(25)}}
	var out strings.Builder
	var failed failures
	reportPools(&out, rows, 10, config{conns: 32, duration: time.Second}, &failed)
	require.NoError(t, failed.err(&out))
	var lines []string
	for _, l := range strings.Split(out.String(), "\n") {
		if f := strings.Fields(l); len(f) > 0 && (f[0] == "/a" || f[0] == "/b" || f[0] == "16") {
			lines = append(lines, strings.Join(f, " "))
		}
	}
	require.Equal(t, []string{
		"/a 4 100 0.00ms 0.00ms 0 1.00",
		"16 150 0.00ms 0.00ms 0 1.50",
		"/b 4 50 0.00ms 0.00ms 0 1.00",
		"16 25 0.00ms 0.00ms 0 0.50",
	}, lines)
}
