package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

func directoryOf(projectName, keyName string) *tokka.Directory {
	used := time.Date(2026, 10, 29, 8, 0, 0, 0, time.UTC)
	return &tokka.Directory{
		Projects: []tokka.DirectoryProject{{ID: "proj_x", Kind: tokka.KindProject, Name: projectName},
			{ID: "proj_old", Kind: tokka.KindProject, Name: "old", Archived: true}},
		Keys: []tokka.DirectoryKey{{ID: "key_x", Name: keyName, Hint: "sk-proj-...abcd", CreatedAt: &used, LastUsedAt: &used,
			Status: "active", ProjectID: "proj_x"},
			{ID: "key_admin", Admin: true, Name: "admin", Hint: "sk-admin...wxyz", Status: "active"}},
	}
}

// A sync stores the directory in the same transaction as the usage and the
// sync.succeeded event; usage rows then carry the names beside the ids, a
// later sync's names replace the earlier ones, refused parts are recorded on
// the connection, and another user sees none of it, as role authenticated.
func TestDirectoryNamesUsageAndStayPrivate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, ownDatabase())
	alice, bob := newUser(), newUser()
	conn := b.addConnection(t, alice, "openai")
	day := time.Date(2026, 10, 30, 0, 0, 0, 0, time.UTC)
	usage, costs := someRows(day, "1.25")
	usage[0].APIKeyID, costs[0].APIKeyID = "key_x", "key_x"
	w := tokka.Window{From: day, To: day.AddDate(0, 0, 1)}
	sync := func(dir *tokka.Directory) {
		t.Helper()
		l := leaseAll(t, b.db, "syncer:dir")[conn]
		r := syncResult(w, usage, costs)
		r.Directory = dir
		require.NoError(t, b.db.CompleteSync(ctx, l, r))
		_, err := b.sql.Exec(`UPDATE tokka.connections SET next_sync_at = now() - interval '1 second' WHERE id = $1`, conn)
		require.NoError(t, err)
	}
	q := tokka.UsageQuery{From: day, To: day, GroupBy: []string{"project", "api_key"}}
	names := func(u tokka.User) []tokka.Names {
		t.Helper()
		rows, err := b.db.Usage(ctx, u, q)
		require.NoError(t, err)
		var out []tokka.Names
		for _, r := range rows {
			out = append(out, r.Names)
		}
		return out
	}
	ptr := func(s string) *string { return &s }

	sync(directoryOf("=Research 研究", "service key"))
	require.Equal(t, []tokka.Names{{ProjectName: ptr("=Research 研究"), APIKeyName: ptr("service key")}}, names(alice))

	sync(directoryOf("Research (renamed)", "service key 2"))
	require.Equal(t, []tokka.Names{{ProjectName: ptr("Research (renamed)"), APIKeyName: ptr("service key 2")}}, names(alice),
		"the latest name wins; ids are the identity")
	var n int
	require.NoError(t, b.sql.Get(&n, `SELECT count(*) FROM tokka.directory_projects WHERE connection_id = $1`, conn))
	require.Equal(t, 2, n)
	var hint string
	require.NoError(t, b.sql.Get(&hint, `SELECT redacted_hint FROM tokka.directory_keys WHERE id = 'key_x'`))
	require.Equal(t, "sk-proj-...abcd", hint)

	// A key refused its directory: the parts are recorded, the names
	// stored earlier stay.
	sync(&tokka.Directory{Unavailable: tokka.DirectoryParts{tokka.PartProjects, tokka.PartAPIKeys, tokka.PartAdminKeys}})
	c, err := b.db.GetConnection(ctx, alice, conn)
	require.NoError(t, err)
	require.Equal(t, tokka.DirectoryParts{"admin_keys", "api_keys", "projects"}, c.DirectoryUnavailable)
	require.Equal(t, tokka.StatusActive, c.Status)
	require.Equal(t, []tokka.Names{{ProjectName: ptr("Research (renamed)"), APIKeyName: ptr("service key 2")}}, names(alice))

	// Bob, as role authenticated, sees no directory row of Alice's and
	// cannot write one.
	for _, table := range []string{"tokka.directory_projects", "tokka.directory_keys"} {
		tx := b.begin(t, "authenticated", bob)
		var n int
		require.NoError(t, tx.Get(&n, `SELECT count(*) FROM `+table))
		require.Zero(t, n, table)
		_, err := tx.Exec(`UPDATE ` + table + ` SET name = 'pwned'`)
		require.True(t, denied(err), "authenticated never writes %s: %v", table, err)
		require.NoError(t, tx.Rollback())
		tx = b.begin(t, "authenticated", alice)
		require.NoError(t, tx.Get(&n, `SELECT count(*) FROM `+table))
		require.Positive(t, n, table)
		_, err = tx.Exec(`UPDATE ` + table + ` SET name = 'mine'`)
		require.True(t, denied(err), "the owner reads but never writes %s: %v", table, err)
		require.NoError(t, tx.Rollback())
	}
	require.Empty(t, names(bob))
}

// Groups whose every figure is zero are left out unless asked for.
func TestAllZeroGroupsAreLeftOutUnlessAsked(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, ownDatabase())
	u := newUser()
	conn := b.addConnection(t, u, "openai")
	day := time.Date(2026, 10, 30, 0, 0, 0, 0, time.UTC)
	usage, costs := someRows(day, "1.25")
	usage = append(usage, tokka.UsageRow{Day: day, Family: "completions", Model: "", ProjectID: "proj_x"})
	costs = append(costs, tokka.CostRow{Day: day, Model: "zero", AmountUSD: decimal.Zero, Amount: decimal.Zero, Currency: "usd"})
	l := leaseAll(t, b.db, "syncer:zero")[conn]
	require.NoError(t, b.db.CompleteSync(ctx, l, syncResult(tokka.Window{From: day, To: day.AddDate(0, 0, 1)}, usage, costs)))

	q := tokka.UsageQuery{From: day, To: day, GroupBy: []string{"model"}}
	rows, err := b.db.Usage(ctx, u, q)
	require.NoError(t, err)
	require.Len(t, rows, 1)
	require.Equal(t, "m", rows[0].Group["model"])
	q.IncludeZero = true
	rows, err = b.db.Usage(ctx, u, q)
	require.NoError(t, err)
	require.Len(t, rows, 3)
}
