// Package pgtest gives each test package its own freshly migrated Postgres
// database, so packages can run in parallel against one server. Tests never
// skip when Postgres is missing: they fail and say how to start it.
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq" // the Postgres driver

	"github.com/tokka-dev/tokka/pkg/postgres"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// EnvBaseURL names the variable that points tests at a Postgres server; the
// database in it is only used to create and drop the per-package database.
const EnvBaseURL = "TOKKA_TEST_DATABASE_URL"

const defaultBaseURL = "postgres://postgres:postgres@127.0.0.1:5432/postgres?sslmode=disable"

var (
	pkgURL  string
	baseURL string
	// tmplName is a migrated database nobody connects to, so Fresh can clone
	// it even while tests use the package database.
	tmplName string
	cloneMu  sync.Mutex
)

// Main creates and migrates the package's database, runs m, and drops the
// database. Call it from TestMain. It exits non-zero with a clear message
// when Postgres cannot be reached.
func Main(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgtest:", err)
		fmt.Fprintln(os.Stderr, "pgtest: tests need PostgreSQL; run ./scripts/test (it starts the local server) or set",
			EnvBaseURL, "to a server where this user may CREATE DATABASE")
		os.Exit(2)
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	base := os.Getenv(EnvBaseURL)
	if base == "" {
		base = defaultBaseURL
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := sqlx.Open("postgres", base)
	if err != nil {
		return 0, err
	}
	defer admin.Close()
	if err := admin.PingContext(ctx); err != nil {
		return 0, fmt.Errorf("cannot reach %s: %w", redactURL(base), err)
	}
	baseURL = base
	name := databaseName()
	if _, err := admin.ExecContext(ctx, `CREATE DATABASE `+name); err != nil {
		return 0, fmt.Errorf("create database %s: %w", name, err)
	}
	defer func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer dcancel()
		_, _ = admin.ExecContext(dctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`)
	}()
	u, err := url.Parse(base)
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", EnvBaseURL, err)
	}
	u.Path = "/" + name
	pkgURL = u.String()
	if err := postgres.Migrate(ctx, pkgURL); err != nil {
		return 0, err
	}
	tmplName = name + "_tmpl"
	if _, err := admin.ExecContext(ctx, `CREATE DATABASE `+tmplName+` TEMPLATE `+name); err != nil {
		return 0, fmt.Errorf("create template database: %w", err)
	}
	defer func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer dcancel()
		_, _ = admin.ExecContext(dctx, `DROP DATABASE IF EXISTS `+tmplName+` WITH (FORCE)`)
	}()
	return m.Run(), nil
}

// URL returns the package database's URL (connecting as the migrating role,
// which owns the tables). It fails the test if Main did not run.
func URL(tb testing.TB) string {
	tb.Helper()
	if pkgURL == "" {
		tb.Fatal("pgtest: call pgtest.Main(m) from this package's TestMain")
	}
	return pkgURL
}

// Open returns a pool on the package database, closed when the test ends.
func Open(tb testing.TB) *postgres.DB {
	tb.Helper()
	d, err := postgres.Open(context.Background(), URL(tb), 8)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = d.Close() })
	return d
}

// SQL returns a raw sqlx pool on the package database for assertions that
// must look under the storage layer.
func SQL(tb testing.TB) *sqlx.DB {
	tb.Helper()
	d, err := sqlx.Open("postgres", URL(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = d.Close() })
	return d
}

// Fresh returns the URL of a new database cloned from the package's migrated
// one, dropped when the test ends. Tests whose subject works across every
// row (the syncer's due set) use it to run in parallel without seeing each
// other's data.
func Fresh(tb testing.TB) string {
	tb.Helper()
	tmpl := URL(tb)
	tu, err := url.Parse(tmpl)
	if err != nil {
		tb.Fatal(err)
	}
	admin, err := sqlx.Open("postgres", baseURL)
	if err != nil {
		tb.Fatal(err)
	}
	defer admin.Close()
	name := databaseName()
	// Postgres refuses to clone a template that has sessions: clones come
	// from a copy of the package database that nothing else connects to,
	// one at a time.
	cloneMu.Lock()
	_, err = admin.Exec(`CREATE DATABASE ` + name + ` TEMPLATE ` + tmplName)
	cloneMu.Unlock()
	if err != nil {
		tb.Fatalf("pgtest: clone database: %v", err)
	}
	tb.Cleanup(func() {
		a, err := sqlx.Open("postgres", baseURL)
		if err != nil {
			return
		}
		defer a.Close()
		_, _ = a.Exec(`DROP DATABASE IF EXISTS ` + name + ` WITH (FORCE)`)
	})
	tu.Path = "/" + name
	return tu.String()
}

// OpenURL returns a pool on url (from Fresh), closed when the test ends.
func OpenURL(tb testing.TB, dbURL string) (*postgres.DB, *sqlx.DB) {
	tb.Helper()
	d, err := postgres.Open(context.Background(), dbURL, 8)
	if err != nil {
		tb.Fatal(err)
	}
	raw, err := sqlx.Open("postgres", dbURL)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = d.Close(); _ = raw.Close() })
	return d, raw
}

var unsafeChars = regexp.MustCompile(`[^a-z0-9_]+`)

func databaseName() string {
	wd, _ := os.Getwd()
	pkg := unsafeChars.ReplaceAllString(strings.ToLower(filepath.Base(wd)), "_")
	if len(pkg) > 30 {
		pkg = pkg[:30]
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "tokka_test_" + pkg + "_" + hex.EncodeToString(b[:])
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "the configured URL"
	}
	return u.Redacted()
}

// SeedAuditChain appends n key.decrypted events to userID's audit chain in
// bulk, each correctly chained and dated a millisecond after the one before
// (the newest about now), for tests and benchmarks that need a long chain
// quickly. It computes the hashes itself (postgres.AuditEventHash) and
// bypasses the database's chaining trigger with session_replication_role,
// so db must connect as a superuser. It holds the user's audit lock while it
// works, so it may run beside the user's ordinary writes.
func SeedAuditChain(ctx context.Context, db *sqlx.DB, userID string, n int) error {
	tx, err := db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("pgtest: seed audit chain: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck
	if _, err := tx.ExecContext(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
		return fmt.Errorf("pgtest: seed audit chain (needs a superuser): %w", err)
	}
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(461898, hashtext($1))`, userID); err != nil {
		return fmt.Errorf("pgtest: seed audit chain: %w", err)
	}
	var head struct {
		Hash      []byte    `db:"hash"`
		CreatedAt time.Time `db:"created_at"`
	}
	err = tx.GetContext(ctx, &head, `SELECT hash, created_at FROM tokka.audit_events WHERE user_id = $1 ORDER BY id DESC LIMIT 1`, userID)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("pgtest: seed audit chain: %w", err)
	}
	at := time.Now().Add(-time.Duration(n) * time.Millisecond).UTC().Truncate(time.Microsecond)
	if at.Before(head.CreatedAt) {
		at = head.CreatedAt
	}
	prev := head.Hash
	const chunk = 10000
	for done := 0; done < n; {
		m := min(chunk, n-done)
		times := make([]string, m)
		details := make([]string, m)
		prevs := make([][]byte, m)
		hashes := make([][]byte, m)
		for i := range m {
			at = at.Add(time.Millisecond)
			ev := tokka.AuditEvent{UserID: userID, Provider: "openai", Action: tokka.ActionKeyDecrypted,
				Outcome: tokka.OutcomeSuccess, Purpose: "scheduled sync", Actor: "syncer:seed",
				Detail: "seeded event " + strconv.Itoa(done+i+1), CreatedAt: at}
			times[i], details[i], prevs[i] = at.Format(time.RFC3339Nano), ev.Detail, prev
			prev = postgres.AuditEventHash(prev, ev)
			hashes[i] = prev
		}
		if _, err := tx.ExecContext(ctx, `
			INSERT INTO tokka.audit_events (user_id, provider, action, outcome, purpose, actor, detail,
				created_at, prev_hash, hash)
			SELECT $1, 'openai', 'key.decrypted', 'success', 'scheduled sync', 'syncer:seed', x.d, x.t, nullif(x.p, ''::bytea), x.h
			FROM unnest($2::text[], $3::timestamptz[], $4::bytea[], $5::bytea[]) WITH ORDINALITY AS x(d, t, p, h, o)
			ORDER BY x.o`,
			userID, pq.Array(details), pq.Array(times), pq.ByteaArray(prevs), pq.ByteaArray(hashes)); err != nil {
			return fmt.Errorf("pgtest: seed audit chain: %w", err)
		}
		done += m
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("pgtest: seed audit chain: %w", err)
	}
	return nil
}
