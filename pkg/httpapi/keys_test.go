package httpapi_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// The key inventory lists the organisation's API and admin keys with the
// provider's redacted value and nothing more of them, the project's name,
// and the cost attributed to each key over the last 30 days (null where
// none was); it pages like every list, and another user's connection is a
// 404 with nothing of it.
func TestConnectionKeysInventory(t *testing.T) {
	t.Parallel()
	b := setup(t, at(nov5))
	alice, mallory := b.newUser(t), b.newUser(t)
	const pasted = "sk-admin-inventory0123456789abcdef"
	id := b.createConnection(t, alice, tokka.OpenAI, pasted)["id"].(string)

	status, _, body := b.do(t, alice, http.MethodGet, "/v1/connections/"+id+"/keys", nil)
	require.Equal(t, http.StatusOK, status, string(body))
	require.JSONEq(t, `{"data": [], "has_more": false, "next_cursor": null}`, string(body), "nothing before the first sync")

	day := nov5.AddDate(0, 0, -2)
	old := nov5.AddDate(0, 0, -40) // outside the 30 days
	created, used := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), time.Date(2026, 11, 4, 8, 0, 0, 0, time.UTC)
	costs := []tokka.CostRow{
		{Day: day, Model: "gpt-a", ProjectID: "proj_a", APIKeyID: "key_a", AmountUSD: dec("2.5"), Amount: dec("2.5"), Currency: "usd"},
		{Day: day, Model: "gpt-b", ProjectID: "proj_a", APIKeyID: "key_a", AmountUSD: dec("0.25"), Amount: dec("0.25"), Currency: "usd"},
		{Day: old, Model: "gpt-a", ProjectID: "proj_a", APIKeyID: "key_a", AmountUSD: dec("100"), Amount: dec("100"), Currency: "usd"},
	}
	syncResult(t, b, id, tokka.SyncResult{Window: tokka.Window{From: old, To: nov5}, Costs: costs,
		Directory: &tokka.Directory{
			Projects: []tokka.DirectoryProject{{ID: "proj_a", Kind: tokka.KindProject, Name: "Research"}},
			Keys: []tokka.DirectoryKey{
				{ID: "key_a", Name: "service key", Hint: "sk-proj-...abcd", Status: "active", ProjectID: "proj_a", CreatedAt: &created, LastUsedAt: &used},
				{ID: "key_b", Admin: true, Name: "ops", Hint: "sk-admin...cdef", Status: "active", CreatedAt: &created},
				{ID: "key_c", Name: "idle", Hint: "", Status: "active", ProjectID: "proj_gone"},
			},
		}})

	status, _, body = b.do(t, alice, http.MethodGet, "/v1/connections/"+id+"/keys?limit=2", nil)
	require.Equal(t, http.StatusOK, status, string(body))
	var p struct {
		Data       []map[string]any `json:"data"`
		HasMore    bool             `json:"has_more"`
		NextCursor *string          `json:"next_cursor"`
	}
	require.NoError(t, json.Unmarshal(body, &p))
	require.True(t, p.HasMore)
	require.Len(t, p.Data, 2)
	require.Equal(t, map[string]any{"id": "key_a", "kind": "api", "name": "service key", "redacted_hint": "sk-proj-...abcd",
		"status": "active", "created_at": "2025-01-02T03:04:05Z", "last_used_at": "2026-11-04T08:00:00Z",
		"project_id": "proj_a", "project_name": "Research", "workspace_name": nil, "spend_30d_usd": "2.75"}, p.Data[0])
	require.Equal(t, "admin", p.Data[1]["kind"])
	require.Equal(t, "sk-admin...cdef", p.Data[1]["redacted_hint"])
	require.Nil(t, p.Data[1]["spend_30d_usd"])
	require.Nil(t, p.Data[1]["project_id"])
	require.Nil(t, p.Data[1]["last_used_at"])

	status, _, body = b.do(t, alice, http.MethodGet, "/v1/connections/"+id+"/keys?limit=2&cursor="+*p.NextCursor, nil)
	require.Equal(t, http.StatusOK, status, string(body))
	p.Data, p.NextCursor = nil, nil
	require.NoError(t, json.Unmarshal(body, &p))
	require.False(t, p.HasMore)
	require.Nil(t, p.NextCursor)
	require.Len(t, p.Data, 1)
	require.Equal(t, "key_c", p.Data[0]["id"])
	require.Nil(t, p.Data[0]["project_name"], "a project the directory does not know has no name")

	for _, who := range []user{mallory} {
		status, _, body = b.do(t, who, http.MethodGet, "/v1/connections/"+id+"/keys", nil)
		require.Equal(t, http.StatusNotFound, status, string(body))
		require.NotContains(t, string(body), "key_a")
	}
	status, _, _ = b.do(t, alice, http.MethodGet, "/v1/connections/not-a-uuid/keys", nil)
	require.Equal(t, http.StatusNotFound, status)
	status, _, body = b.do(t, alice, http.MethodGet, "/v1/connections/"+id+"/keys?cursor=bogus", nil)
	require.Equal(t, http.StatusBadRequest, status, string(body))
	status, _, body = b.do(t, alice, http.MethodGet, "/v1/connections/"+id+"/keys?limit=0", nil)
	require.Equal(t, http.StatusBadRequest, status, string(body))
	status, _, body = b.do(t, alice, http.MethodGet, "/v1/connections/"+id+"/keys?sort=name", nil)
	require.Equal(t, http.StatusBadRequest, status, string(body))
	require.NotContains(t, b.logs.String(), pasted[9:len(pasted)-4])
}
