package syncer_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/fakeprovider"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// namedRows reads u's usage of the last 35 days grouped by project and key,
// as the api does.
func (b *testBundle) namedRows(t *testing.T, userID string) []tokka.UsageGroup {
	t.Helper()
	u := tokka.User{ID: userID, Claims: []byte(`{"sub":"` + userID + `","role":"authenticated"}`)}
	w := tokka.DayWindow(time.Now(), 35)
	rows, err := b.db.Usage(context.Background(), u, tokka.UsageQuery{From: w.From, To: w.To.AddDate(0, 0, -1),
		GroupBy: []string{"provider", "project", "api_key"}})
	require.NoError(t, err)
	require.NotEmpty(t, rows)
	return rows
}

// One sync reads the directory with the same key use and writes it with
// the usage under the same sync.succeeded event: afterwards every project
// and key id in the usage has its name, and a rename at the provider shows
// after the next sync.
func TestSyncStoresDirectoryNamesInTheSameEvent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	user := uuid.NewString()
	keys := map[tokka.Provider]string{
		tokka.OpenAI:    "sk-admin-names-org_n" + user[:8],
		tokka.Anthropic: "sk-ant-admin01-names-org_n" + user[:8],
	}
	ids := map[tokka.Provider]string{}
	for p, k := range keys {
		ids[p] = b.addConnection(t, user, p, k)
	}
	s := b.syncer(t, "one", nil, nil)
	_, err := s.RunOnce(context.Background())
	require.NoError(t, err)
	for p, id := range ids {
		require.Equal(t, []string{"key.created:success", "key.decrypted:success", "sync.succeeded:success"}, b.actions(t, id), p)
		var detail string
		require.NoError(t, b.sql.Get(&detail, `SELECT detail FROM tokka.audit_events WHERE connection_id = $1 AND action = 'sync.succeeded'`, id))
		require.Contains(t, detail, "directory: ")
		require.NotContains(t, detail, "unavailable")
	}
	check := func(gen int) {
		t.Helper()
		for _, r := range b.namedRows(t, user) {
			p, project, key := r.Group["provider"], r.Group["project_id"], r.Group["api_key_id"]
			if project != "" {
				if p == "openai" {
					require.NotNil(t, r.ProjectName, project)
					require.Nil(t, r.WorkspaceName)
				} else {
					require.NotNil(t, r.WorkspaceName, project)
					require.Equal(t, fakeprovider.FirstProjectName(gen), *r.WorkspaceName)
				}
			}
			if key != "" {
				require.NotNil(t, r.APIKeyName, key)
				require.Contains(t, *r.APIKeyName, "service key")
			}
			if p == "openai" && project == fakeprovider.OpenAIProjects(keys[tokka.OpenAI])[1].ID {
				require.Equal(t, fakeprovider.FirstProjectName(gen), *r.ProjectName)
			}
		}
	}
	check(0)

	b.fake.Rename(keys[tokka.OpenAI]) // the marker's organisation at both providers
	_, err = b.sql.Exec(`UPDATE tokka.connections SET next_sync_at = now() WHERE id = ANY($1)`,
		pqArray(ids[tokka.OpenAI], ids[tokka.Anthropic]))
	require.NoError(t, err)
	_, err = s.RunOnce(context.Background())
	require.NoError(t, err)
	check(1)
}

// A key restricted to usage reads (403 on every directory list) syncs its
// usage to the cent, is not marked invalid, and its connection says which
// parts it could not read; its rows carry no names.
func TestUsageOnlyKeySyncsWithNamesUnavailable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	user := uuid.NewString()
	keys := map[tokka.Provider]string{
		tokka.OpenAI:    "sk-admin-usageonly-" + user[:8],
		tokka.Anthropic: "sk-ant-admin01-usageonly-" + user[:8],
	}
	want := map[tokka.Provider]string{tokka.OpenAI: "{admin_keys,api_keys,projects}", tokka.Anthropic: "{api_keys,workspaces}"}
	ids := map[tokka.Provider]string{}
	for p, k := range keys {
		ids[p] = b.addConnection(t, user, p, k)
	}
	_, err := b.syncer(t, "one", nil, nil).RunOnce(context.Background())
	require.NoError(t, err)
	w := tokka.DayWindow(time.Now(), 35)
	for p, id := range ids {
		st, reason := b.status(t, id)
		require.Equal(t, "active", st, reason)
		_, _, cost := expected(p, keys[p], w)
		_, _, got := b.stored(t, id)
		require.True(t, cost.Equal(got), "%s: want %s, got %s", p, cost, got)
		var parts string
		require.NoError(t, b.sql.Get(&parts, `SELECT directory_unavailable::text FROM tokka.connections WHERE id = $1`, id))
		require.Equal(t, want[p], parts)
	}
	for _, r := range b.namedRows(t, user) {
		require.Equal(t, tokka.Names{}, r.Names)
	}
}
