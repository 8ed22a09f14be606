package tokka

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/shopspring/decimal"
)

// DirectoryPart names one list of a provider organisation's directory, so a
// connection can say which of them its key may not read.
type DirectoryPart string

// The directory parts. OpenAI has projects, project API keys and admin keys;
// Anthropic has workspaces and API keys.
const (
	PartProjects   DirectoryPart = "projects"
	PartWorkspaces DirectoryPart = "workspaces"
	PartAPIKeys    DirectoryPart = "api_keys"
	PartAdminKeys  DirectoryPart = "admin_keys"
)

// Kinds of DirectoryProject: an OpenAI project or an Anthropic workspace.
// Both land in the usage rows' project_id.
const (
	KindProject   = "project"
	KindWorkspace = "workspace"
)

// Directory is what a sync learned about the organisation behind a key: its
// projects (or workspaces) and keys, ids being the identity and names the
// latest seen. Unavailable lists the parts the key was refused (a key
// restricted to usage reads): those parts are not in the lists, and what was
// stored for them earlier stays.
type Directory struct {
	Projects    []DirectoryProject
	Keys        []DirectoryKey
	Unavailable DirectoryParts
}

// DirectoryProject is an OpenAI project or an Anthropic workspace.
type DirectoryProject struct {
	ID       string
	Kind     string // KindProject or KindWorkspace
	Name     string
	Archived bool
}

// DirectoryKey is an API key or admin key of the organisation. It never holds
// more of the key than the provider's own redacted value (Hint).
type DirectoryKey struct {
	ID         string
	Admin      bool // an admin key (OpenAI admin_api_keys), not a project/workspace key
	Name       string
	Hint       string // the provider's redacted value ("sk-proj-...abc", "sk-ant-api03-R2D...igAA"); "" when none
	CreatedAt  *time.Time
	LastUsedAt *time.Time
	Status     string // "active", "inactive", "archived", "expired"; "" when the provider says nothing
	ProjectID  string // the project or workspace the key belongs to; "" for admin keys and the default workspace
	// Held marks the admin key this connection holds, as the syncer matched
	// it against the provider's redacted value while the key was open
	// (secret.Key.MatchesHint); it is not stored.
	Held bool
}

// Kinds of OrgKey.
const (
	KeyKindAPI   = "api"
	KeyKindAdmin = "admin"
)

// OrgKey is one key of a connection's provider organisation as the key
// inventory lists it: never more of the key than the provider's redacted
// value. Spend30dUSD is the cost the provider's cost report attributed to
// the key over the last 30 days (nil when it attributes none to it: admin
// keys, and providers that do not split cost by key).
type OrgKey struct {
	ID            string           `db:"id" json:"id"`
	Kind          string           `db:"kind" json:"kind"`
	Name          string           `db:"name" json:"name"`
	RedactedHint  string           `db:"redacted_hint" json:"redacted_hint"`
	Status        string           `db:"status" json:"status"`
	CreatedAt     *time.Time       `db:"created_at" json:"created_at"`
	LastUsedAt    *time.Time       `db:"last_used_at" json:"last_used_at"`
	ProjectID     *string          `db:"project_id" json:"project_id"`
	ProjectName   *string          `db:"project_name" json:"project_name"`
	WorkspaceName *string          `db:"workspace_name" json:"workspace_name"`
	Spend30dUSD   *decimal.Decimal `db:"spend_30d_usd" json:"spend_30d_usd"`
}

// Names are the directory names shown beside a row's ids: ProjectName when
// its project_id is an OpenAI project, WorkspaceName when it is an Anthropic
// workspace, APIKeyName for its api_key_id. Each is nil when the directory
// does not know the id (never synced, or the key may not read it).
type Names struct {
	ProjectName   *string
	WorkspaceName *string
	APIKeyName    *string
}

// DirectoryParts is a list of directory parts; it prints as a JSON array
// (never null) and scans from a Postgres text[] of plain identifiers.
type DirectoryParts []DirectoryPart

// MarshalJSON writes the parts as an array, [] when there are none. It never fails.
func (p DirectoryParts) MarshalJSON() ([]byte, error) {
	out := make([]string, len(p))
	for i, v := range p {
		out[i] = string(v)
	}
	return json.Marshal(out)
}

// Scan implements sql.Scanner for a text[] whose elements need no quoting
// (the column's CHECK allows only the part names). It fails for anything else.
func (p *DirectoryParts) Scan(src any) error {
	var s string
	switch v := src.(type) {
	case nil:
		*p = DirectoryParts{}
		return nil
	case []byte:
		s = string(v)
	case string:
		s = v
	default:
		return fmt.Errorf("tokka: cannot scan %T into DirectoryParts", src)
	}
	if len(s) < 2 || s[0] != '{' || s[len(s)-1] != '}' || strings.ContainsAny(s, `"\`) {
		return fmt.Errorf("tokka: %q is not a plain text array", s)
	}
	*p = DirectoryParts{}
	if inner := s[1 : len(s)-1]; inner != "" {
		for _, v := range strings.Split(inner, ",") {
			*p = append(*p, DirectoryPart(v))
		}
	}
	return nil
}

// Strings returns the parts as strings (for storage). It never fails.
func (p DirectoryParts) Strings() []string {
	out := make([]string, len(p))
	for i, v := range p {
		out[i] = string(v)
	}
	return out
}
