package postgres_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/postgres"
)

// TestMigration00016KeepsEveryName replays migration 00016 over labels and
// budget names already stored (plain, accented, emoji, 100 code points):
// every one is unchanged, and a label of 100 flags (200 code points), which
// the api counts as 100 characters, can then be stored. Its Down keeps
// every value of up to 100 code points and shortens longer ones. It
// migrates down, so it has a database of its own.
func TestMigration00016KeepsEveryName(t *testing.T) {
	t.Parallel()
	url, raw, downAgain := beforeMigration(t, 16)
	ctx := context.Background()

	u := newUser()
	names := []string{"Production org", "Équipe données", "👩‍💻 team 🇫🇷", strings.Repeat("x", 100)}
	for _, n := range names {
		_, err := raw.Exec(`INSERT INTO tokka.connections (id, user_id, provider, label, key_hint, sealed_key)
			VALUES ($1, $2, 'openai', $3, 'h', 'v2:00')`, uuid.NewString(), u.ID, n)
		require.NoError(t, err)
		_, err = raw.Exec(`INSERT INTO tokka.budgets (id, user_id, name, amount_usd, scope, webhook_secret)
			VALUES ($1, $2, $3, 5, 'all', $4)`, uuid.NewString(), u.ID, n, "whsec_"+strings.Repeat("0", 64))
		require.NoError(t, err)
	}
	snapshot := func() string {
		var s string
		require.NoError(t, raw.QueryRow(`SELECT
			(SELECT string_agg(id || label, ',' ORDER BY id) FROM tokka.connections) ||
			(SELECT string_agg(id || name, ',' ORDER BY id) FROM tokka.budgets)`).Scan(&s))
		return s
	}
	want := snapshot()
	flags := strings.Repeat("🇫🇷", 100)
	_, err := raw.Exec(`INSERT INTO tokka.connections (id, user_id, provider, label, key_hint, sealed_key)
		VALUES ($1, $2, 'openai', $3, 'h', 'v2:00')`, uuid.NewString(), u.ID, flags)
	require.ErrorContains(t, err, "connections_label_check", "before 00016 the database counted code points")

	require.NoError(t, postgres.Migrate(ctx, url))
	require.Equal(t, want, snapshot(), "the upgrade changes no name")
	long := uuid.NewString()
	_, err = raw.Exec(`INSERT INTO tokka.connections (id, team_id, provider, label, key_hint, sealed_key)
		VALUES ($1, $2, 'openai', $3, 'h', 'v2:00')`, long, u.ID, flags)
	require.NoError(t, err)
	_, err = raw.Exec(`INSERT INTO tokka.budgets (id, team_id, name, amount_usd, scope, webhook_secret)
		VALUES ($1, $2, $3, 5, 'all', $4)`, uuid.NewString(), u.ID, strings.Repeat("x", 401), "whsec_"+strings.Repeat("0", 64))
	require.ErrorContains(t, err, "budgets_name_check", "the database still bounds names")

	downAgain()
	var label string
	require.NoError(t, raw.QueryRow(`SELECT label FROM tokka.connections WHERE id = $1`, long).Scan(&label))
	require.Equal(t, strings.Repeat("🇫🇷", 50), label, "the downgrade keeps the first 100 code points")
	_, err = raw.Exec(`DELETE FROM tokka.connections WHERE id = $1`, long)
	require.NoError(t, err)
	require.Equal(t, want, snapshot(), "the downgrade changes nothing else")
	require.NoError(t, postgres.Migrate(ctx, url))
}
