package anthropic

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"time"

	"github.com/tokka-dev/tokka/pkg/provider"
	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// directoryWorkspace is one element of GET /v1/organizations/workspaces
// (type "workspace": id, name, created_at, archived_at, display_color).
type directoryWorkspace struct {
	ID         string  `json:"id"`
	Name       string  `json:"name"`
	ArchivedAt *string `json:"archived_at"`
}

// directoryKey is one element of GET /v1/organizations/api_keys (type
// "api_key"). partial_key_hint is the provider's redacted value; the
// workspace is workspace_id (deprecated in favour of scope, whose shape is
// UNVERIFIED, so only workspace_id is read). The listing has no last-used
// time (UNVERIFIED: none is documented).
type directoryKey struct {
	ID             string  `json:"id"`
	Name           string  `json:"name"`
	PartialKeyHint string  `json:"partial_key_hint"`
	CreatedAt      *string `json:"created_at"`
	LastUsedAt     *string `json:"last_used_at"`
	Status         string  `json:"status"`
	WorkspaceID    *string `json:"workspace_id"`
}

// directoryPageSize is the page size asked for: the listings allow 1 to 1000
// (default 20); 100 keeps each answer small.
const directoryPageSize = "100"

// Directory lists the organisation's workspaces (archived included) and its
// API keys. The Admin API lists no admin keys. A part the key is refused
// (401 or 403) is named in Unavailable. Other errors are *provider.Error as
// provider.List describes, KindBadResponse for an element without a
// plausible id or with a malformed time.
func (c *Client) Directory(ctx context.Context, key *secret.Key) (tokka.Directory, error) {
	var dir tokka.Directory
	err := c.list(ctx, key, "workspaces", url.Values{"include_archived": {"true"}}, func(raw json.RawMessage) error {
		var w directoryWorkspace
		if err := json.Unmarshal(raw, &w); err != nil || !provider.CheckID(w.ID) {
			return badData("a workspace has no plausible id")
		}
		dir.Projects = append(dir.Projects, tokka.DirectoryProject{ID: w.ID, Kind: tokka.KindWorkspace,
			Name: provider.DirectoryName(w.Name), Archived: w.ArchivedAt != nil})
		return nil
	})
	switch {
	case provider.Refused(err):
		dir.Unavailable = append(dir.Unavailable, tokka.PartWorkspaces)
	case err != nil:
		return tokka.Directory{}, err
	}
	err = c.list(ctx, key, "api_keys", url.Values{}, func(raw json.RawMessage) error {
		var k directoryKey
		if err := json.Unmarshal(raw, &k); err != nil || !provider.CheckID(k.ID) {
			return badData("an API key has no plausible id")
		}
		created, err := rfc3339(k.CreatedAt)
		if err != nil {
			return err
		}
		used, err := rfc3339(k.LastUsedAt)
		if err != nil {
			return err
		}
		ws := str(k.WorkspaceID)
		if !provider.CheckID(ws) {
			ws = ""
		}
		dir.Keys = append(dir.Keys, tokka.DirectoryKey{ID: k.ID, Name: provider.DirectoryName(k.Name),
			Hint: provider.KeyHint(k.PartialKeyHint), CreatedAt: created, LastUsedAt: used,
			Status: provider.KeyStatus(k.Status), ProjectID: ws})
		return nil
	})
	switch {
	case provider.Refused(err):
		dir.Unavailable = append(dir.Unavailable, tokka.PartAPIKeys)
	case err != nil:
		return tokka.Directory{}, err
	}
	return dir, nil
}

// rfc3339 parses an optional RFC 3339 time.
func rfc3339(v *string) (*time.Time, error) {
	if v == nil || *v == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339, *v)
	if err != nil {
		return nil, badData("a key's time is not an RFC 3339 time")
	}
	t = t.UTC()
	return &t, nil
}

// list pages through GET /v1/organizations/<endpoint> (after_id = the
// previous page's last_id).
func (c *Client) list(ctx context.Context, key *secret.Key, endpoint string, q url.Values, each func(json.RawMessage) error) error {
	q.Set("limit", directoryPageSize)
	return provider.List(ctx, provider.Listed{
		HTTP: c.httpClient(), URL: strings.TrimRight(c.BaseURL, "/") + "/v1/organizations/" + endpoint,
		Name: "organizations/" + endpoint, Authorize: c.authorize(key), MaxPages: c.MaxPages, Query: q, After: "after_id",
	}, each)
}
