package httpapi_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// namedFixture syncs a day of OpenAI usage on two projects and keys with
// their directory names (one formula-looking, one unknown), and returns the
// connection id.
func namedFixture(t *testing.T, b *testBundle, u user, projectName string) string {
	t.Helper()
	id := b.createConnection(t, u, tokka.OpenAI, "sk-admin-names0123456789abcdef")["id"].(string)
	day := time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC)
	usage := []tokka.UsageRow{
		{Day: day, Family: "completions", Model: "gpt-a", ProjectID: "proj_named", APIKeyID: "key_named", Tokens: tokka.Tokens{InputUncachedTokens: 100, Requests: 1}},
		{Day: day, Family: "completions", Model: "gpt-a", ProjectID: "proj_unknown", APIKeyID: "key_unknown", Tokens: tokka.Tokens{InputUncachedTokens: 7, Requests: 1}},
	}
	costs := []tokka.CostRow{{Day: day, Model: "gpt-a", ProjectID: "proj_named", APIKeyID: "key_named", AmountUSD: dec("2"), Amount: dec("2"), Currency: "usd"}}
	syncResult(t, b, id, tokka.SyncResult{Window: tokka.Window{From: day, To: day.AddDate(0, 0, 1)}, Usage: usage, Costs: costs,
		Directory: &tokka.Directory{
			Projects:    []tokka.DirectoryProject{{ID: "proj_named", Kind: tokka.KindProject, Name: projectName}},
			Keys:        []tokka.DirectoryKey{{ID: "key_named", Name: "service key ✓", Hint: "sk-proj-...abcd", Status: "active"}},
			Unavailable: tokka.DirectoryParts{tokka.PartAdminKeys},
		}})
	return id
}

// Usage rows, the summary's top projects and keys and the CSV export carry
// the names beside the ids (null, or an empty cell, when unknown); a
// formula-looking name is neutralised in the CSV; a rename shows after the
// next sync; the connection says which parts its key could not read.
func TestNamesBesideIdsEverywhere(t *testing.T) {
	t.Parallel()
	b := setup(t, at(nov5))
	alice := b.newUser(t)
	conn := namedFixture(t, b, alice, "=cmd|' /C calc'!A0")

	status, _, body := b.do(t, alice, http.MethodGet, "/v1/usage?from=2026-11-01&to=2026-11-05&group_by=project,api_key", nil)
	require.Equal(t, http.StatusOK, status, string(body))
	var p struct{ Data []map[string]any }
	require.NoError(t, json.Unmarshal(body, &p))
	require.Len(t, p.Data, 2)
	byProject := map[string]map[string]any{}
	for _, r := range p.Data {
		byProject[r["project_id"].(string)] = r
	}
	require.Equal(t, "=cmd|' /C calc'!A0", byProject["proj_named"]["project_name"])
	require.Equal(t, "service key ✓", byProject["proj_named"]["api_key_name"])
	require.Nil(t, byProject["proj_named"]["workspace_name"])
	for _, k := range []string{"project_name", "workspace_name", "api_key_name"} {
		v, present := byProject["proj_unknown"][k]
		require.True(t, present, k)
		require.Nil(t, v, k)
	}

	status, _, body = b.do(t, alice, http.MethodGet, "/v1/usage/summary", nil)
	require.Equal(t, http.StatusOK, status, string(body))
	var s struct {
		TopProjects []map[string]any `json:"top_projects"`
		TopAPIKeys  []map[string]any `json:"top_api_keys"`
	}
	require.NoError(t, json.Unmarshal(body, &s))
	require.Equal(t, "proj_named", s.TopProjects[0]["name"])
	require.Equal(t, "=cmd|' /C calc'!A0", s.TopProjects[0]["project_name"])
	require.Equal(t, "key_named", s.TopAPIKeys[0]["name"])
	require.Equal(t, "service key ✓", s.TopAPIKeys[0]["api_key_name"])

	status, _, body = b.do(t, alice, http.MethodGet, "/v1/usage/export.csv?from=2026-11-01&to=2026-11-05&group_by=project,api_key", nil)
	require.Equal(t, http.StatusOK, status)
	records, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	require.NoError(t, err)
	require.Equal(t, []string{"project_id", "project_name", "workspace_name", "api_key_id", "api_key_name"}, records[0][:5])
	rows := map[string][]string{}
	for _, r := range records[1:] {
		rows[r[0]] = r
	}
	require.Equal(t, []string{"proj_named", "'=cmd|' /C calc'!A0", "", "key_named", "service key ✓"}, rows["proj_named"][:5])
	require.Equal(t, []string{"proj_unknown", "", "", "key_unknown", ""}, rows["proj_unknown"][:5])

	// Filters still take ids.
	status, _, body = b.do(t, alice, http.MethodGet, "/v1/usage?from=2026-11-01&to=2026-11-05&group_by=project&project=proj_named", nil)
	require.Equal(t, http.StatusOK, status, string(body))
	require.NoError(t, json.Unmarshal(body, &p))
	require.Len(t, p.Data, 1)

	// The connection names the directory parts its key could not read.
	status, _, body = b.do(t, alice, http.MethodGet, "/v1/connections/"+conn, nil)
	require.Equal(t, http.StatusOK, status, string(body))
	var c map[string]any
	require.NoError(t, json.Unmarshal(body, &c))
	require.Equal(t, []any{"admin_keys"}, c["directory_unavailable"])

	// A rename shows after the next sync.
	day := time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC)
	syncResult(t, b, conn, tokka.SyncResult{Window: tokka.Window{From: day, To: day.AddDate(0, 0, 1)},
		Usage:     []tokka.UsageRow{{Day: day, Family: "completions", Model: "gpt-a", ProjectID: "proj_named", Tokens: tokka.Tokens{InputUncachedTokens: 1}}},
		Directory: &tokka.Directory{Projects: []tokka.DirectoryProject{{ID: "proj_named", Kind: tokka.KindProject, Name: "Research"}}}})
	status, _, body = b.do(t, alice, http.MethodGet, "/v1/usage?from=2026-11-01&to=2026-11-05&group_by=project", nil)
	require.Equal(t, http.StatusOK, status, string(body))
	require.NoError(t, json.Unmarshal(body, &p))
	require.Len(t, p.Data, 1)
	require.Equal(t, "Research", p.Data[0]["project_name"])

	// Another user sees none of these names.
	status, _, body = b.do(t, b.newUser(t), http.MethodGet, "/v1/usage?from=2026-11-01&to=2026-11-05&group_by=project", nil)
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, string(body), `"data":[]`)
}

// Rows whose every figure is zero are left out unless include_zero=true;
// a bad include_zero is a 400.
func TestZeroRowsLeftOutUnlessAsked(t *testing.T) {
	t.Parallel()
	b := setup(t, at(nov5))
	alice := b.newUser(t)
	spendFixture(t, b, alice)
	q := "/v1/usage?from=2026-11-01&to=2026-11-01&group_by=model&provider=anthropic"
	models := func(path string) []string {
		t.Helper()
		status, _, body := b.do(t, alice, http.MethodGet, path, nil)
		require.Equal(t, http.StatusOK, status, string(body))
		var p struct{ Data []map[string]any }
		require.NoError(t, json.Unmarshal(body, &p))
		var out []string
		for _, r := range p.Data {
			out = append(out, r["model"].(string))
		}
		return out
	}
	require.Equal(t, []string{"claude-b"}, models(q))
	require.Len(t, models(q+"&include_zero=true"), 6)
	status, _, _ := b.do(t, alice, http.MethodGet, q+"&include_zero=yes", nil)
	require.Equal(t, http.StatusBadRequest, status)
}
