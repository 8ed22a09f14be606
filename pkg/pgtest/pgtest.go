// Package pgtest gives each test package its own migrated Postgres database,
// so packages can run in parallel against one server. Databases are cheap:
// they are cloned from one template migrated once per migration set and kept
// on the server across packages and runs. Tests never skip when Postgres is
// missing: they fail and say how to start it.
package pgtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq" // the Postgres driver

	"github.com/tokka-dev/tokka/db"
	"github.com/tokka-dev/tokka/pkg/postgres"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// EnvBaseURL names the variable that points tests at a Postgres server; the
// database in it is only used to create and drop the test databases.
const EnvBaseURL = "TOKKA_TEST_DATABASE_URL"

const defaultBaseURL = "postgres://postgres:postgres@127.0.0.1:5432/postgres?sslmode=disable"

// templateRecipe is part of the template's name: change it when the way the
// template is built changes (not the migrations: they are hashed), so no
// run clones a template built the old way.
const templateRecipe = "pgtest template v1: postgres.Migrate"

// templateLock is the advisory lock (on the base database) held while a
// template is checked for and built, so packages starting at once build it
// once.
const templateLock = 461_898_001

var (
	pkgURL  string
	baseURL string
	// tmplName is the migrated template every test database is cloned from.
	tmplName = templateName()
	// txPool serves Tx on the package database.
	txPool *sqlx.DB
)

// Main makes sure the template for this migration set exists, clones the
// package's database from it, runs m, and drops the database. Call it from
// TestMain. It exits non-zero with a clear message when Postgres cannot be
// reached.
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
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
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
	if err := ensureTemplate(ctx, admin); err != nil {
		return 0, err
	}
	name := databaseName()
	if err := clone(ctx, admin, name); err != nil {
		return 0, err
	}
	defer drop(admin, name)
	if pkgURL, err = withDatabase(name); err != nil {
		return 0, err
	}
	if txPool, err = sqlx.Open("postgres", pkgURL); err != nil {
		return 0, err
	}
	defer txPool.Close()
	defer removeClusterTemplate()
	return m.Run(), nil
}

// templateName names the template after everything it is built from: the
// embedded migrations (names and contents) and templateRecipe. A changed
// migration gets a new template; an unchanged set reuses the one on the
// server, whichever package or run built it.
func templateName() string {
	h := sha256.New()
	h.Write([]byte(templateRecipe))
	_ = fs.WalkDir(db.Migrations, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := db.Migrations.ReadFile(p)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", p, len(b))
		h.Write(b)
		return nil
	})
	return "tokka_tmpl_" + hex.EncodeToString(h.Sum(nil))[:20]
}

// TemplateName is the name of the template database test databases are
// cloned from; it changes whenever a migration does.
func TemplateName() string { return tmplName }

// ensureTemplate builds the template unless the server already has it. The
// advisory lock makes concurrent packages (and concurrent runs) wait for
// one builder; the template is built under another name and renamed when
// complete, so a run killed half way never leaves a template that looks
// usable.
func ensureTemplate(ctx context.Context, admin *sqlx.DB) error {
	conn, err := admin.Connx(ctx)
	if err != nil {
		return fmt.Errorf("template: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, templateLock); err != nil {
		return fmt.Errorf("template: lock: %w", err)
	}
	defer conn.ExecContext(context.Background(), `SELECT pg_advisory_unlock($1)`, templateLock) //nolint:errcheck
	var exists bool
	if err := conn.GetContext(ctx, &exists, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, tmplName); err != nil {
		return fmt.Errorf("template: %w", err)
	}
	if exists {
		return nil
	}
	build := tmplName + "_build"
	for _, stmt := range []string{
		`DROP DATABASE IF EXISTS ` + build + ` WITH (FORCE)`, // left by a killed run
		`CREATE DATABASE ` + build,
	} {
		if _, err := conn.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("template: %w", err)
		}
	}
	buildURL, err := withDatabase(build)
	if err != nil {
		return err
	}
	if err := postgres.Migrate(ctx, buildURL); err != nil {
		return fmt.Errorf("template: %w", err)
	}
	// Closed to connections: Postgres refuses to clone a database that
	// has sessions, so nothing may ever hold one open on the template.
	for _, stmt := range []string{
		`ALTER DATABASE ` + build + ` WITH IS_TEMPLATE true ALLOW_CONNECTIONS false`,
		`ALTER DATABASE ` + build + ` RENAME TO ` + tmplName,
	} {
		if _, err := conn.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("template: %w", err)
		}
	}
	return nil
}

// clone creates database name as a copy of the template.
func clone(ctx context.Context, admin *sqlx.DB, name string) error {
	if _, err := admin.ExecContext(ctx, `CREATE DATABASE `+name+` TEMPLATE `+tmplName); err != nil {
		return fmt.Errorf("create database %s from %s: %w", name, tmplName, err)
	}
	return nil
}

func drop(admin *sqlx.DB, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _ = admin.ExecContext(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`)
}

// withDatabase is the base URL pointed at database name.
func withDatabase(name string) (string, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return "", fmt.Errorf("parse %s: %w", EnvBaseURL, err)
	}
	u.Path = "/" + name
	return u.String(), nil
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

// Tx returns a transaction on the package database (as the migrating role)
// that is rolled back when the test ends, so the test leaves nothing behind
// and needs no database of its own. It suits tests whose subject is SQL
// itself (constraints, grants, policies, functions); a test whose writes
// must be seen by other connections (the storage layer's, a second
// session's) cannot use it. It fails the test if the transaction cannot
// begin.
func Tx(tb testing.TB) *sqlx.Tx {
	tb.Helper()
	URL(tb)
	tx, err := txPool.Beginx()
	if err != nil {
		tb.Fatalf("pgtest: begin: %v", err)
	}
	tb.Cleanup(func() { _ = tx.Rollback() })
	return tx
}

// Fresh returns the URL of a new database cloned from the template, dropped
// when the test ends. Tests whose subject works across every row (the
// syncer's due set) or that rewrite the schema (migration tests) use it; a
// clone takes a fraction of a second and clones may be made in parallel.
func Fresh(tb testing.TB) string {
	tb.Helper()
	URL(tb)
	admin, err := sqlx.Open("postgres", baseURL)
	if err != nil {
		tb.Fatal(err)
	}
	defer admin.Close()
	name := databaseName()
	if err := clone(context.Background(), admin, name); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(func() {
		a, err := sqlx.Open("postgres", baseURL)
		if err != nil {
			return
		}
		defer a.Close()
		drop(a, name)
	})
	u, err := withDatabase(name)
	if err != nil {
		tb.Fatal(err)
	}
	return u
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

// SeedAuditChain appends n key.decrypted events to team's audit chain in
// bulk, each correctly chained and dated a millisecond after the one before
// (the newest about now), for tests and benchmarks that need a long chain
// quickly. It computes the hashes itself (postgres.AuditEventHash) and
// bypasses the database's chaining trigger with session_replication_role,
// so db must connect as a superuser. It holds the user's audit lock while it
// works, so it may run beside the user's ordinary writes. It also seeds a
// database migrated only to before teams (migration 00022), where the
// chain's owner column was user_id.
func SeedAuditChain(ctx context.Context, db *sqlx.DB, team string, n int) error {
	userID := team
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
	var owner string
	if err := tx.GetContext(ctx, &owner, `SELECT column_name FROM information_schema.columns
		WHERE table_schema = 'tokka' AND table_name = 'audit_events' AND column_name IN ('team_id', 'user_id')`); err != nil {
		return fmt.Errorf("pgtest: seed audit chain: %w", err)
	}
	err = tx.GetContext(ctx, &head, `SELECT hash, created_at FROM tokka.audit_events WHERE `+owner+` = $1 ORDER BY id DESC LIMIT 1`, userID)
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
			ev := tokka.AuditEvent{TeamID: userID, Provider: "openai", Action: tokka.ActionKeyDecrypted,
				Outcome: tokka.OutcomeSuccess, Purpose: "scheduled sync", Actor: "syncer:seed",
				Detail: "seeded event " + strconv.Itoa(done+i+1), CreatedAt: at}
			times[i], details[i], prevs[i] = at.Format(time.RFC3339Nano), ev.Detail, prev
			prev = postgres.AuditEventHash(prev, ev)
			hashes[i] = prev
		}
		if _, err := tx.ExecContext(ctx, `
			INSERT INTO tokka.audit_events (`+owner+`, provider, action, outcome, purpose, actor, detail,
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
