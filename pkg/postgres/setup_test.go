package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/pgtest"
	"github.com/tokka-dev/tokka/pkg/postgres"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// testBundle is the storage under test and what a test needs around it:
// the storage pool, a raw pool as the migrating role (which owns the
// tables and, in tests, is a superuser) and that database's URL. With
// withReplica it also holds the private primary and its streaming replica.
type testBundle struct {
	db  *postgres.DB
	sql *sqlx.DB
	url string

	primary, replica *pgtest.Server // withReplica
	standby          *sqlx.DB       // the replica, as its superuser (withReplica)
}

// options are what a test may change about the storage it gets.
type options struct {
	ownDatabase bool
	replica     bool
}

type option func(*options)

// ownDatabase gives the test a fresh database of its own, for tests whose
// subject works across every row (leasing the due set, rebuilding rollups).
func ownDatabase() option { return func(o *options) { o.ownDatabase = true } }

// withReplica runs storage on a private primary whose reads go to a real
// streaming replica of it.
func withReplica() option { return func(o *options) { o.replica = true } }

// setup returns storage on the package database, or on what opts ask for;
// everything it opens is closed when the test ends.
func setup(t *testing.T, opts ...option) *testBundle {
	t.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	switch {
	case o.replica:
		return setupReplica(t)
	case o.ownDatabase:
		url := pgtest.Fresh(t)
		d, raw := pgtest.OpenURL(t, url)
		return &testBundle{db: d, sql: raw, url: url}
	default:
		return &testBundle{db: pgtest.Open(t), sql: pgtest.SQL(t), url: pgtest.URL(t)}
	}
}

func setupReplica(t *testing.T) *testBundle {
	t.Helper()
	ctx := context.Background()
	primary := pgtest.StartServer(t)
	replica := primary.StartReplica(t)
	d, raw := pgtest.OpenURL(t, primary.URL())
	require.NoError(t, d.OpenReadReplica(ctx, replica.URL(), 4, time.Hour))
	standby, err := sqlx.Open("postgres", replica.URL())
	require.NoError(t, err)
	t.Cleanup(func() { _ = standby.Close() })
	return &testBundle{db: d, sql: raw, url: primary.URL(), primary: primary, replica: replica, standby: standby}
}

// newUser is a new Supabase user with an email and the claims the api
// would pass on.
func newUser() tokka.User {
	id := uuid.NewString()
	return tokka.User{ID: id, Email: id[:8] + "@example.com",
		Claims: []byte(`{"sub":"` + id + `","role":"authenticated","aud":"authenticated"}`)}
}

// addConnection stores a connection of provider p for u through storage,
// as the api does (with its key.created event), with a placeholder blob;
// these tests are about the database, not the crypto.
func (b *testBundle) addConnection(t *testing.T, u tokka.User, p tokka.Provider) string {
	t.Helper()
	id := uuid.NewString()
	_, err := b.db.CreateConnection(context.Background(), u, tokka.NewConnection{
		ID: id, Provider: p, Label: "org", KeyHint: "sk-admin-…abcd", SealedKey: "v2:00",
	}, tokka.AuditEvent{Action: tokka.ActionKeyCreated, Outcome: tokka.OutcomeSuccess, Actor: "api:test"})
	require.NoError(t, err)
	return id
}

// insertConnection stores an openai connection for u straight into the
// table, as the syncer or another api process would: this process's
// storage does not know it was written, and no event is recorded. It is
// not due for a sync, so no test's lease picks it up.
func (b *testBundle) insertConnection(t *testing.T, u tokka.User) string {
	t.Helper()
	id := uuid.NewString()
	_, err := b.sql.Exec(`INSERT INTO tokka.connections (id, team_id, provider, label, key_hint, sealed_key, next_sync_at)
		VALUES ($1, $2, 'openai', 'behind', 'sk-admin-…abcd', 'v2:00', now() + interval '1 year')`, id, u.ID)
	require.NoError(t, err)
	return id
}

// begin starts a transaction on the raw pool as role, with u's claims (the
// identity authenticated acts as). The caller commits or rolls it back.
func (b *testBundle) begin(t *testing.T, role string, u tokka.User) *sqlx.Tx {
	t.Helper()
	tx, err := b.sql.Beginx()
	require.NoError(t, err)
	_, err = tx.Exec(`SELECT set_config('request.jwt.claims', $1, true), set_config('role', $2, true)`, string(u.Claims), role)
	if err != nil {
		_ = tx.Rollback()
	}
	require.NoError(t, err)
	return tx
}

// inRole runs fn in a transaction as role, with u's claims, and commits it
// when fn succeeds; it returns fn's or the commit's error.
func (b *testBundle) inRole(t *testing.T, role string, u tokka.User, fn func(tx *sqlx.Tx) error) error {
	t.Helper()
	tx := b.begin(t, role, u)
	defer tx.Rollback() //nolint:errcheck
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// exec runs one statement as role (with u's claims) in a transaction that
// is rolled back, returning the rows it affected and its error.
func (b *testBundle) exec(t *testing.T, role string, u tokka.User, query string, args ...any) (int64, error) {
	t.Helper()
	tx := b.begin(t, role, u)
	defer tx.Rollback() //nolint:errcheck
	res, err := tx.Exec(query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// as is exec for a test that wants only the statement's error.
func (b *testBundle) as(t *testing.T, role string, u tokka.User, query string, args ...any) error {
	t.Helper()
	_, err := b.exec(t, role, u, query, args...)
	return err
}
