package openai

import (
	"context"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"

	"github.com/tokka-dev/tokka/pkg/provider"
	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// directoryProject is one element of GET /v1/organization/projects.
type directoryProject struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	ArchivedAt *int64 `json:"archived_at"`
	Status     string `json:"status"`
}

// directoryKey is one element of GET /v1/organization/projects/{id}/api_keys
// (organization.project.api_key) or GET /v1/organization/admin_api_keys
// (organization.admin_api_key). Neither documents a status field: a listed
// key is a live key (UNVERIFIED; a status, when present, is kept).
type directoryKey struct {
	ID            string `json:"id"`
	Name          string `json:"name"`
	RedactedValue string `json:"redacted_value"`
	CreatedAt     *int64 `json:"created_at"`
	LastUsedAt    *int64 `json:"last_used_at"`
	Status        string `json:"status"`
}

// Directory lists the organisation's projects (archived included), each
// project's API keys and the admin keys. A part the key is refused (401 or
// 403: a key restricted to usage reads) is named in Unavailable; when the
// projects are refused, so are the project keys (they are listed per
// project). Other errors are *provider.Error as provider.List describes,
// KindBadResponse for an element without a plausible id; nothing is
// returned unless every readable part was read completely.
func (c *Client) Directory(ctx context.Context, key *secret.Key) (tokka.Directory, error) {
	var dir tokka.Directory
	projects := []directoryProject{}
	err := c.list(ctx, key, "organization/projects", url.Values{"include_archived": {"true"}}, func(raw json.RawMessage) error {
		var p directoryProject
		if err := json.Unmarshal(raw, &p); err != nil || !provider.CheckID(p.ID) {
			return badData("a project has no plausible id")
		}
		projects = append(projects, p)
		dir.Projects = append(dir.Projects, tokka.DirectoryProject{ID: p.ID, Kind: tokka.KindProject,
			Name: provider.DirectoryName(p.Name), Archived: p.ArchivedAt != nil || p.Status == "archived"})
		return nil
	})
	switch {
	case provider.Refused(err):
		dir.Unavailable = append(dir.Unavailable, tokka.PartProjects, tokka.PartAPIKeys)
	case err != nil:
		return tokka.Directory{}, err
	default:
		keysRefused := false
		for _, p := range projects {
			err := c.list(ctx, key, "organization/projects/"+url.PathEscape(p.ID)+"/api_keys", url.Values{}, func(raw json.RawMessage) error {
				k, err := decodeKey(raw, false)
				k.ProjectID = p.ID
				dir.Keys = append(dir.Keys, k)
				return err
			})
			if provider.Refused(err) {
				keysRefused = true
				continue
			}
			if err != nil {
				return tokka.Directory{}, err
			}
		}
		if keysRefused {
			dir.Unavailable = append(dir.Unavailable, tokka.PartAPIKeys)
		}
	}
	err = c.list(ctx, key, "organization/admin_api_keys", url.Values{}, func(raw json.RawMessage) error {
		k, err := decodeKey(raw, true)
		dir.Keys = append(dir.Keys, k)
		return err
	})
	switch {
	case provider.Refused(err):
		dir.Unavailable = append(dir.Unavailable, tokka.PartAdminKeys)
	case err != nil:
		return tokka.Directory{}, err
	}
	return dir, nil
}

// decodeKey reads one key of a listing, keeping of its value only the
// provider's redacted form.
func decodeKey(raw json.RawMessage, admin bool) (tokka.DirectoryKey, error) {
	var k directoryKey
	if err := json.Unmarshal(raw, &k); err != nil || !provider.CheckID(k.ID) {
		return tokka.DirectoryKey{}, badData("a key has no plausible id")
	}
	status := k.Status
	if status == "" {
		status = "active"
	}
	return tokka.DirectoryKey{ID: k.ID, Admin: admin, Name: provider.DirectoryName(k.Name),
		Hint: provider.KeyHint(k.RedactedValue), CreatedAt: provider.UnixTime(k.CreatedAt),
		LastUsedAt: provider.UnixTime(k.LastUsedAt), Status: provider.KeyStatus(status)}, nil
}

// list pages through GET /v1/<endpoint> (limit 100, the documented maximum,
// after = the previous page's last_id).
func (c *Client) list(ctx context.Context, key *secret.Key, endpoint string, q url.Values, each func(json.RawMessage) error) error {
	q.Set("limit", strconv.Itoa(projectsPerPage))
	return provider.List(ctx, provider.Listed{
		HTTP: c.httpClient(), URL: strings.TrimRight(c.BaseURL, "/") + "/v1/" + endpoint, Name: endpoint,
		Authorize: c.authorize(key), MaxPages: c.MaxPages, Query: q, After: "after",
	}, each)
}
