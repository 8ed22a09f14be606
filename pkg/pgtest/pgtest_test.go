package pgtest_test

import (
	"context"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/db"
	"github.com/tokka-dev/tokka/pkg/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// newestMigration is the highest version in db/migrations.
func newestMigration(t *testing.T) int64 {
	t.Helper()
	files, err := fs.Glob(db.Migrations, "migrations/*.sql")
	require.NoError(t, err)
	var newest int64
	for _, f := range files {
		v, err := strconv.ParseInt(strings.SplitN(path.Base(f), "_", 2)[0], 10, 64)
		require.NoError(t, err)
		newest = max(newest, v)
	}
	return newest
}

// TestDatabasesComeFromTheSharedTemplate: the package database and every
// Fresh one are fully migrated copies of one template that is named for this
// migration set, marked as a template and closed to connections (so cloning
// it can never fail on a stray session).
func TestDatabasesComeFromTheSharedTemplate(t *testing.T) {
	t.Parallel()
	admin := pgtest.SQL(t)
	var tmpl struct {
		Template bool `db:"datistemplate"`
		Connect  bool `db:"datallowconn"`
	}
	require.NoError(t, admin.Get(&tmpl, `SELECT datistemplate, datallowconn FROM pg_database WHERE datname = $1`,
		pgtest.TemplateName()))
	require.True(t, tmpl.Template)
	require.False(t, tmpl.Connect)

	for _, url := range []string{pgtest.URL(t), pgtest.Fresh(t)} {
		raw, err := sqlx.Open("postgres", url)
		require.NoError(t, err)
		defer raw.Close()
		var version int64
		require.NoError(t, raw.Get(&version, `SELECT max(version_id) FROM tokka.goose_db_version WHERE is_applied`))
		require.Equal(t, newestMigration(t), version, url)
	}
}

// TestFreshDatabasesAreIsolated: parallel tests clone at once, and each sees
// only what it wrote.
func TestFreshDatabasesAreIsolated(t *testing.T) {
	t.Parallel()
	for i := range 4 {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			_, raw := pgtest.OpenURL(t, pgtest.Fresh(t))
			key := uuid.NewString()
			_, err := raw.Exec(`INSERT INTO tokka.rate_limits (bucket_key, window_start, hit_count) VALUES ($1, now(), 1)`, key)
			require.NoError(t, err)
			var keys []string
			require.NoError(t, raw.Select(&keys, `SELECT bucket_key FROM tokka.rate_limits`))
			require.Equal(t, []string{key}, keys)
		})
	}
}

// TestTxIsRolledBackWhenTheTestEnds: what a test writes through Tx is
// visible inside it and gone once it ends.
func TestTxIsRolledBackWhenTheTestEnds(t *testing.T) {
	t.Parallel()
	key := uuid.NewString()
	t.Run("writes", func(t *testing.T) {
		tx := pgtest.Tx(t)
		_, err := tx.Exec(`INSERT INTO tokka.rate_limits (bucket_key, window_start, hit_count) VALUES ($1, now(), 1)`, key)
		require.NoError(t, err)
		var n int
		require.NoError(t, tx.Get(&n, `SELECT count(*) FROM tokka.rate_limits WHERE bucket_key = $1`, key))
		require.Equal(t, 1, n)
	})
	var n int
	require.NoError(t, pgtest.SQL(t).GetContext(context.Background(), &n,
		`SELECT count(*) FROM tokka.rate_limits WHERE bucket_key = $1`, key))
	require.Zero(t, n)
}
