package openai_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/fakeprovider"
	"github.com/tokka-dev/tokka/pkg/provider"
	"github.com/tokka-dev/tokka/pkg/providertest"
	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// The directory is read page by page (one element per page here), archived
// projects included, with each project's keys and the admin keys; names are
// the provider's, hostile ones included, and only the redacted value of a
// key is kept. A rename at the provider shows at the next read.
func TestDirectoryPagesThroughEveryList(t *testing.T) {
	t.Parallel()
	b := setup(t, providertest.WithPagedFake(1))
	fake, client := b.Fake, b.client
	const k = "sk-admin-dir-org_dirtest-1"
	dir, err := client.Directory(context.Background(), secret.FromString(k))
	require.NoError(t, err)
	require.Empty(t, dir.Unavailable)

	projects := fakeprovider.OpenAIProjects(k)
	require.Len(t, dir.Projects, len(projects), "every page was read")
	for i, p := range projects {
		require.Equal(t, tokka.DirectoryProject{ID: p.ID, Kind: tokka.KindProject, Name: p.Name, Archived: p.ArchivedAt != nil}, dir.Projects[i])
	}
	require.True(t, dir.Projects[0].Archived)
	require.Equal(t, fakeprovider.LongName, dir.Projects[0].Name)
	require.Equal(t, fakeprovider.FirstProjectName(0), dir.Projects[1].Name)
	require.True(t, strings.HasPrefix(dir.Projects[1].Name, "="))

	var keys, admins int
	for _, key := range dir.Keys {
		require.NotEmpty(t, key.Name)
		require.Contains(t, key.Hint, "....", "the provider's redacted value")
		require.LessOrEqual(t, len(key.Hint), provider.MaxKeyHint)
		require.NotNil(t, key.CreatedAt)
		require.Equal(t, "active", key.Status)
		if key.Admin {
			admins++
			require.Empty(t, key.ProjectID)
			continue
		}
		keys++
		want := fakeprovider.OpenAIProjectKeys(k, key.ProjectID, 0)
		require.Len(t, want, 1)
		require.Equal(t, want[0].ID, key.ID)
		require.Equal(t, want[0].Name, key.Name)
	}
	require.Equal(t, len(projects), keys, "one key per project, archived included")
	require.Equal(t, 2, admins)

	fake.Rename(k)
	again, err := client.Directory(context.Background(), secret.FromString(k))
	require.NoError(t, err)
	require.Equal(t, fakeprovider.FirstProjectName(1), again.Projects[1].Name)
	require.Equal(t, dir.Projects[1].ID, again.Projects[1].ID, "ids stay")
}

// A key restricted to usage reads is refused every directory list: that is
// no error, the parts are named unavailable, and nothing is retried.
func TestDirectoryRefusedPartsAreUnavailable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	fake, client := b.Fake, b.client
	const k = "sk-admin-dir-usageonly-1"
	dir, err := client.Directory(context.Background(), secret.FromString(k))
	require.NoError(t, err)
	require.Empty(t, dir.Projects)
	require.Empty(t, dir.Keys)
	require.ElementsMatch(t, tokka.DirectoryParts{tokka.PartProjects, tokka.PartAPIKeys, tokka.PartAdminKeys}, dir.Unavailable)
	require.Equal(t, 2, fake.Requests(k), "projects and admin keys, once each")

	// Its usage is served all the same.
	_, err = client.Usage(context.Background(), secret.FromString(k), tokka.DayWindow(providertest.FakeNow, 2))
	require.NoError(t, err)
}

// A redacted value that is not one (a provider returning a whole key) is
// never kept; a list that never ends is a bad response.
func TestDirectoryKeepsOnlyRedactedValues(t *testing.T) {
	t.Parallel()
	require.Empty(t, provider.KeyHint("sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"))
	require.Empty(t, provider.KeyHint("sk-proj-"+strings.Repeat("a", 80)+"...abcd"))
	require.Equal(t, "sk-proj-...abcd", provider.KeyHint("sk-proj-...abcd"))
	require.Equal(t, "sk-ant-api03-R2D...igAA", provider.KeyHint("sk-ant-api03-R2D...igAA"))

	b := setup(t, jsonBody(`{"object":"list","data":[{"id":"proj_1","name":"x"}],"has_more":true,"last_id":"proj_1"}`))
	_, err := b.client.Directory(context.Background(), secret.FromString("sk-admin-x"))
	pe := providertest.RequireKind(t, err, tokka.OpenAI, provider.KindBadResponse)
	require.Contains(t, pe.Reason, "same page cursor twice")
}
