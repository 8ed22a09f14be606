package anthropic_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/fakeprovider"
	"github.com/tokka-dev/tokka/pkg/providertest"
	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// Workspaces (archived included) and API keys are read page by page (one
// element per page here); a rename shows at the next read.
func TestDirectoryPagesThroughWorkspacesAndKeys(t *testing.T) {
	t.Parallel()
	b := setup(t, providertest.WithPagedFake(1))
	fake, client := b.Fake, b.client
	// Find an organisation with an extra workspace, so usage has one.
	k := ""
	for _, c := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		if len(fakeprovider.AnthropicWorkspaces("sk-ant-admin01-org_"+c, 0)) == 2 {
			k = "sk-ant-admin01-org_" + c
			break
		}
	}
	require.NotEmpty(t, k)
	dir, err := client.Directory(context.Background(), secret.FromString(k))
	require.NoError(t, err)
	require.Empty(t, dir.Unavailable)
	ws := fakeprovider.AnthropicWorkspaces(k, 0)
	require.Len(t, dir.Projects, len(ws))
	for i, w := range ws {
		require.Equal(t, tokka.DirectoryProject{ID: w.ID, Kind: tokka.KindWorkspace, Name: w.Name, Archived: w.ArchivedAt != nil}, dir.Projects[i])
	}
	keys := fakeprovider.AnthropicAPIKeys(k, 0)
	require.Len(t, dir.Keys, len(keys))
	for i, want := range keys {
		got := dir.Keys[i]
		require.Equal(t, want.ID, got.ID)
		require.Equal(t, want.Name, got.Name)
		require.Equal(t, want.Redacted, got.Hint)
		require.Equal(t, want.ProjectID, got.ProjectID)
		require.Equal(t, "active", got.Status)
		require.False(t, got.Admin)
	}

	fake.Rename(k)
	again, err := client.Directory(context.Background(), secret.FromString(k))
	require.NoError(t, err)
	require.Equal(t, fakeprovider.FirstProjectName(1), again.Projects[1].Name)
}

// A key restricted to usage reads gets 403 on the directory: no error, the
// parts are unavailable, and its usage is still served.
func TestDirectoryRefusedIsUnavailable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	fake, client := b.Fake, b.client
	const k = "sk-ant-admin01-usageonly-1"
	dir, err := client.Directory(context.Background(), secret.FromString(k))
	require.NoError(t, err)
	require.ElementsMatch(t, tokka.DirectoryParts{tokka.PartWorkspaces, tokka.PartAPIKeys}, dir.Unavailable)
	require.Empty(t, dir.Projects)
	require.Equal(t, 2, fake.Requests(k), "each refusal is final, not retried")
	_, err = client.Usage(context.Background(), secret.FromString(k), tokka.DayWindow(providertest.FakeNow, 2))
	require.NoError(t, err)
}
