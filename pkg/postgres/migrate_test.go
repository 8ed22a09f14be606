package postgres_test

import (
	"context"
	"database/sql"
	"io/fs"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/pressly/goose/v3"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/db"
	"github.com/tokka-dev/tokka/pkg/pgtest"
	"github.com/tokka-dev/tokka/pkg/postgres"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// gooseProvider is the migrations' goose provider over raw, as `api migrate`
// sets it up.
func gooseProvider(t *testing.T, raw *sql.DB) *goose.Provider {
	t.Helper()
	migrations, err := fs.Sub(db.Migrations, "migrations")
	require.NoError(t, err)
	p, err := goose.NewProvider(goose.DialectPostgres, raw, migrations,
		goose.WithTableName("tokka.goose_db_version"), goose.WithDisableGlobalRegistry(true))
	require.NoError(t, err)
	return p
}

// versionBefore is the newest migration version below v (versions may
// have gaps).
func versionBefore(p *goose.Provider, v int64) int64 {
	var before int64
	for _, s := range p.ListSources() {
		if s.Version < v && s.Version > before {
			before = s.Version
		}
	}
	return before
}

// beforeMigration gives the test a fresh database of its own migrated down
// to just before migration v, and returns its URL, a raw pool on it
// (closed when the test ends) and a function that migrates it down to
// there again (after the test has migrated it up).
func beforeMigration(t *testing.T, v int64) (string, *sql.DB, func()) {
	t.Helper()
	url := pgtest.Fresh(t)
	raw, err := sql.Open("postgres", url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = raw.Close() })
	p := gooseProvider(t, raw)
	before := versionBefore(p, v)
	down := func() {
		t.Helper()
		_, err := p.DownTo(context.Background(), before)
		require.NoError(t, err)
	}
	down()
	return url, raw, down
}

// migrateTo moves the database at dbURL to migration version v (down or up).
func migrateTo(t *testing.T, dbURL string, v int64) {
	t.Helper()
	raw, err := sql.Open("postgres", dbURL)
	require.NoError(t, err)
	defer raw.Close()
	p := gooseProvider(t, raw)
	cur, err := p.GetDBVersion(context.Background())
	require.NoError(t, err)
	if cur > v {
		_, err = p.DownTo(context.Background(), v)
	} else {
		_, err = p.UpTo(context.Background(), v)
	}
	require.NoError(t, err)
}

// tableColumns is every table of schema tokka (but goose's) with its columns.
func tableColumns(t *testing.T, raw *sqlx.DB) map[string][]string {
	t.Helper()
	var cols []struct {
		Table  string `db:"table_name"`
		Column string `db:"column_name"`
	}
	require.NoError(t, raw.Select(&cols, `SELECT c.table_name, c.column_name FROM information_schema.columns c
		JOIN information_schema.tables t USING (table_schema, table_name)
		WHERE c.table_schema = 'tokka' AND t.table_type = 'BASE TABLE' AND c.table_name <> 'goose_db_version'
		ORDER BY c.table_name, c.ordinal_position`))
	out := map[string][]string{}
	for _, c := range cols {
		out[c.Table] = append(out[c.Table], c.Column)
	}
	return out
}

// ownedByTeams is columns as migration 00022 renamed them: the user_id of
// every table but idempotency_keys is now team_id, with the same values.
func ownedByTeams(columns map[string][]string) map[string][]string {
	out := map[string][]string{}
	for tb, cols := range columns {
		out[tb] = slices.Clone(cols)
		if tb == "idempotency_keys" {
			continue
		}
		for i, c := range cols {
			if c == "user_id" {
				out[tb][i] = "team_id"
			}
		}
	}
	return out
}

// tableSnapshot is, for each table in columns, its row count and a digest
// of those columns of every row (columns a later migration adds are not in
// it, so a snapshot taken before and after an upgrade compares what was
// there).
func tableSnapshot(t *testing.T, raw *sqlx.DB, columns map[string][]string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for tb, cols := range columns {
		quoted := make([]string, len(cols))
		for i, c := range cols {
			quoted[i] = pq.QuoteIdentifier(c)
		}
		var s string
		require.NoError(t, raw.Get(&s, `SELECT count(*) || ':' || md5(coalesce(string_agg(r::text, '|' ORDER BY r::text), ''))
			FROM (SELECT `+strings.Join(quoted, ", ")+` FROM tokka.`+pq.QuoteIdentifier(tb)+`) r`))
		out[tb] = s
	}
	return out
}

// TestUpgradeFrom00010KeepsEveryRowAndTheChain migrates a database that holds
// real data at version 10 (connections in every state, usage, costs,
// rollups, alerts, a budget, audit chains) to the latest version: every row
// is still there unchanged, the chains still verify, and new events continue
// them under the database's own chaining.
func TestUpgradeFrom00010KeepsEveryRowAndTheChain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := pgtest.Fresh(t)
	migrateTo(t, dbURL, 10)
	raw, err := sqlx.Open("postgres", dbURL)
	require.NoError(t, err)
	defer raw.Close()

	alice, bob := newUser(), newUser()
	conns := map[string]string{}
	for i, st := range []string{"pending", "active", "invalid", "needs_reconnect", "compromised"} {
		id := uuid.NewString()
		conns[st] = id
		owner := alice
		if i%2 == 1 {
			owner = bob
		}
		_, err := raw.Exec(`INSERT INTO tokka.connections (id, user_id, provider, label, key_hint, sealed_key, status,
				last_error, last_sync_request_at)
			VALUES ($1, $2, 'openai', $3, 'sk-admin-…abcd', 'v2:00', $3, CASE WHEN $3 <> 'active' THEN 'why ' || $3 END,
				now() - interval '1 hour')`, id, owner.ID, st)
		require.NoError(t, err)
	}
	_, err = raw.Exec(`
		INSERT INTO tokka.usage_daily (connection_id, user_id, provider, day, family, model, output_tokens, requests)
		SELECT c.id, c.user_id, 'openai', d::date, 'completions', 'm' || (extract(day FROM d)::int % 3), 7, 1
		FROM tokka.connections c, generate_series('2026-01-20'::date, '2026-03-05'::date, interval '1 day') d`)
	require.NoError(t, err)
	_, err = raw.Exec(`
		INSERT INTO tokka.cost_daily (connection_id, user_id, provider, day, model, amount_usd, amount, currency)
		SELECT c.id, c.user_id, 'openai', d::date, 'm1', 0.0000001 * extract(day FROM d), 1, 'usd'
		FROM tokka.connections c, generate_series('2026-01-20'::date, '2026-03-05'::date, interval '1 day') d`)
	require.NoError(t, err)
	_, err = raw.Exec(`INSERT INTO tokka.alerts (user_id, kind, severity, connection_id, dedup_key, title, detail)
		VALUES ($1, 'key_access', 'critical', $2, 'incident x', 'quarantined', '{"a":1}'),
		       ($3, 'budget_threshold', 'warning', NULL, 'b:1', 'half', '{}')`, alice.ID, conns["compromised"], bob.ID)
	require.NoError(t, err)
	_, err = raw.Exec(`INSERT INTO tokka.budgets (id, user_id, name, amount_usd, scope, thresholds, webhook_secret)
		VALUES ($1, $2, 'monthly', 100, 'all', '{50,100}', 'whsec_' || repeat('ab', 32))`, uuid.NewString(), bob.ID)
	require.NoError(t, err)
	require.NoError(t, pgtest.SeedAuditChain(ctx, raw, alice.ID, 40))
	require.NoError(t, pgtest.SeedAuditChain(ctx, raw, bob.ID, 25))
	d, err := postgres.Open(ctx, dbURL, 2)
	require.NoError(t, err)
	defer d.Close()
	// The rollups as that version's code built them (today's storage
	// speaks the newer schema).
	_, err = raw.Exec(`
		INSERT INTO tokka.usage_monthly
		SELECT connection_id, user_id, provider, date_trunc('month', day)::date, max(day), model, project_id,
		       api_key_id, service_tier, sum(input_uncached_tokens), sum(cache_read_tokens),
		       sum(cache_write_5m_tokens), sum(cache_write_1h_tokens), sum(output_tokens), sum(requests)
		FROM tokka.usage_daily
		GROUP BY connection_id, user_id, provider, date_trunc('month', day), model, project_id, api_key_id, service_tier;
		INSERT INTO tokka.cost_monthly
		SELECT connection_id, user_id, provider, date_trunc('month', day)::date, max(day), model, project_id,
		       api_key_id, sum(amount_usd)
		FROM tokka.cost_daily
		GROUP BY connection_id, user_id, provider, date_trunc('month', day), model, project_id, api_key_id;
		INSERT INTO tokka.spend_daily
		SELECT connection_id, user_id, provider, day, sum(amount_usd)
		FROM tokka.cost_daily GROUP BY connection_id, user_id, provider, day`)
	require.NoError(t, err)

	columns := tableColumns(t, raw)
	before := tableSnapshot(t, raw, columns)
	for _, tb := range []string{"connections", "usage_daily", "cost_daily", "usage_monthly", "cost_monthly",
		"spend_daily", "alerts", "budgets", "audit_events"} {
		require.NotRegexp(t, `^0:`, before[tb], "%s has rows to keep", tb)
	}
	require.NoError(t, postgres.Migrate(ctx, dbURL))
	after := tableSnapshot(t, raw, ownedByTeams(columns))
	for tb, s := range before {
		require.Equal(t, s, after[tb], "tokka.%s changed in the upgrade", tb)
	}

	for u, n := range map[*tokka.User]int64{&alice: 40, &bob: 25} {
		v, err := d.VerifyAuditChain(ctx, *u, false)
		require.NoError(t, err)
		require.True(t, v.Intact)
		require.EqualValues(t, n, v.Events)
	}
	// New events continue the chains, written the new way.
	label := "after the upgrade"
	_, err = d.UpdateConnection(ctx, alice, conns["pending"], tokka.ConnectionUpdate{Label: &label},
		tokka.AuditEvent{Action: tokka.ActionConnectionRenamed, Outcome: tokka.OutcomeSuccess, Actor: "api:u"})
	require.NoError(t, err)
	_, _, err = d.RequestSync(ctx, alice, conns["compromised"], time.Minute,
		tokka.AuditEvent{Action: tokka.ActionSyncRequested, Outcome: tokka.OutcomeSuccess, Actor: "api:u"})
	require.Equal(t, tokka.CodeConflict, tokka.ErrorCode(err), "still quarantined")
	v, err := d.VerifyAuditChain(ctx, alice, false)
	require.NoError(t, err)
	require.True(t, v.Intact)
	require.EqualValues(t, 41, v.Events)
	require.EqualValues(t, 1, v.Checked)
}

// TestDefinerFunctionsWorkForANonSuperuserOwner runs the migrations as a
// plain role that owns the database (as on Supabase, where the migrating
// role is no superuser) and uses the result through a separate login role
// that is a member of the application roles, as deploy/login-roles.sql sets
// up: the SECURITY DEFINER functions, which run as that owner under forced
// row-level security, and the audit trigger work for real (a superuser, as
// in every other test, would bypass row-level security and hide a missing
// policy).
func TestDefinerFunctionsWorkForANonSuperuserOwner(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	admin := pgtest.SQL(t)
	suffix := uuid.NewString()[:8]
	owner, login, name := "tokka_owner_"+suffix, "tokka_login_"+suffix, "tokka_test_owner_"+suffix
	for _, stmt := range []string{
		`CREATE ROLE ` + owner + ` LOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT`,
		`CREATE ROLE ` + login + ` LOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT`,
		`GRANT authenticated, tokka_syncer TO ` + login,
		`CREATE DATABASE ` + name + ` OWNER ` + owner,
	} {
		_, err := admin.Exec(stmt)
		require.NoError(t, err, stmt)
	}
	t.Cleanup(func() {
		_, _ = admin.Exec(`DROP DATABASE IF EXISTS ` + name + ` WITH (FORCE)`)
		_, _ = admin.Exec(`DROP ROLE IF EXISTS ` + login)
		_, _ = admin.Exec(`DROP ROLE IF EXISTS ` + owner)
	})
	as := func(role string) string {
		u, err := url.Parse(pgtest.URL(t))
		require.NoError(t, err)
		u.User, u.Path = url.User(role), "/"+name
		return u.String()
	}
	require.NoError(t, postgres.Migrate(ctx, as(owner)))
	d, err := postgres.Open(ctx, as(login), 2)
	require.NoError(t, err)
	defer d.Close()

	u := newUser()
	id := uuid.NewString()
	_, err = d.CreateConnection(ctx, u, tokka.NewConnection{ID: id, Provider: "openai", Label: "x", KeyHint: "h",
		SealedKey: "v2:00"}, tokka.AuditEvent{Action: tokka.ActionKeyCreated, Outcome: tokka.OutcomeSuccess, Actor: "api:o"})
	require.NoError(t, err)
	c, err := d.UpdateConnection(ctx, u, id, tokka.ConnectionUpdate{SealedKey: "v2:01", KeyHint: "h2"},
		tokka.AuditEvent{Action: tokka.ActionKeyReplaced, Outcome: tokka.OutcomeSuccess, Actor: "api:o"})
	require.NoError(t, err)
	require.Equal(t, "h2", c.KeyHint)
	_, wait, err := d.RequestSync(ctx, u, id, time.Minute,
		tokka.AuditEvent{Action: tokka.ActionSyncRequested, Outcome: tokka.OutcomeSuccess, Actor: "api:o"})
	require.NoError(t, err)
	require.Zero(t, wait)
	_, _, err = d.RequestSync(ctx, u, id, time.Minute,
		tokka.AuditEvent{Action: tokka.ActionSyncRequested, Outcome: tokka.OutcomeSuccess, Actor: "api:o"})
	require.Equal(t, tokka.CodeRateLimited, tokka.ErrorCode(err))
	ls, err := d.LeaseDue(ctx, "syncer:o", 10, time.Minute)
	require.NoError(t, err)
	require.Len(t, ls, 1)
	require.NoError(t, d.RecordKeyUse(ctx, ls[0], tokka.AuditEvent{Action: tokka.ActionKeyDecrypted,
		Outcome: tokka.OutcomeSuccess, Actor: "syncer:o"}))

	v, err := d.VerifyAuditChain(ctx, u, false)
	require.NoError(t, err)
	require.True(t, v.Intact, "broken at %v: %v", v.FirstBrokenID, v.Problem)
	require.EqualValues(t, 4, v.Events)
	v, err = d.VerifyAuditChain(ctx, u, false)
	require.NoError(t, err)
	require.EqualValues(t, 4, v.Events)
	require.Zero(t, v.Checked, "the checkpoint was written")
}
