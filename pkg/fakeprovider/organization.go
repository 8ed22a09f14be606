package fakeprovider

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"time"
)

// orgMarker names a key's organisation: "-org_" and letters or digits.
var orgMarker = regexp.MustCompile(`-org_([A-Za-z0-9]+)`)

// OrgOf returns the organisation a key belongs to: "org:<name>" for a key
// with the marker -org_<name> (letters and digits; the first marker counts),
// otherwise the key itself, so every unmarked key is an organisation of its
// own and serves the data it always did. The organisation, not the key,
// decides everything the fake serves about it: usage, costs, projects and
// organisation id. Keys of the two providers never share data, even with the
// same marker. It never fails.
func OrgOf(key string) string {
	if m := orgMarker.FindStringSubmatch(key); m != nil {
		return "org:" + m[1]
	}
	return key
}

// OpenAIProject is a project of an OpenAI organisation as
// GET /v1/organization/projects lists it.
type OpenAIProject struct {
	ID         string
	Name       string
	CreatedAt  time.Time
	ArchivedAt *time.Time // nil for an active project
}

// OpenAIProjects returns the projects of key's organisation, oldest first,
// under their names before any rename (see OpenAIProjectsAt). It is a pure
// function of the organisation and never fails.
func OpenAIProjects(key string) []OpenAIProject { return OpenAIProjectsAt(key, 0) }

// OpenAIProjectsAt returns the projects of key's organisation at rename
// generation gen, oldest first: one archived project without usage (named
// LongName) and the 1 or 2 projects its usage is booked to (OpenAIDayAt),
// the first named FirstProjectName. It is a pure function of the
// organisation and gen and never fails.
func OpenAIProjectsAt(key string, gen int) []OpenAIProject {
	org := OrgOf(key)
	n := 1 + int(newStream(org, "openai-org").n(2)) // the same draw OpenAIDayAt makes
	created := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(newStream(org, "openai-created").n(300*24)) * time.Hour)
	var out []OpenAIProject
	archived := created.Add(12 * time.Hour)
	out = append(out, OpenAIProject{ID: "proj_" + ident(org, "openai-project-archived", 0, 12), Name: renamed(LongName, gen),
		CreatedAt: created, ArchivedAt: &archived})
	for p := 0; p < n; p++ {
		name := renamed("Project "+strconv.Itoa(p+1), gen)
		if p == 0 {
			name = FirstProjectName(gen)
		}
		out = append(out, OpenAIProject{ID: "proj_" + ident(org, "openai-project", p, 12),
			Name: name, CreatedAt: created.Add(time.Duration(p+1) * 24 * time.Hour)})
	}
	return out
}

// AnthropicOrganization returns the id (a UUID) and name of key's
// organisation, as GET /v1/organizations/me reports them. It is a pure
// function of the organisation and never fails.
func AnthropicOrganization(key string) (id, name string) {
	org := OrgOf(key)
	h := sha256.Sum256([]byte(org + "\x00anthropic-organization"))
	h[6] = h[6]&0x0f | 0x40 // version 4
	h[8] = h[8]&0x3f | 0x80 // RFC 4122 variant
	id = fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
	return id, "Fake organisation " + id[:8]
}

type oaiProject struct {
	ID         string `json:"id"`
	Object     string `json:"object"`
	Name       string `json:"name"`
	CreatedAt  int64  `json:"created_at"`
	ArchivedAt *int64 `json:"archived_at"`
	Status     string `json:"status"`
}

type oaiList struct {
	Object  string       `json:"object"`
	Data    []oaiProject `json:"data"`
	FirstID *string      `json:"first_id"`
	LastID  *string      `json:"last_id"`
	HasMore bool         `json:"has_more"`
}

// openAIProjects serves GET /v1/organization/projects: limit 1–100 (default
// 20), after (a project id of the listing), include_archived (default
// false).
func (s *Server) openAIProjects(w http.ResponseWriter, r *http.Request, key string) {
	q := r.URL.Query()
	limit := 20
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			oaiFail(w, http.StatusBadRequest, "invalid_request_error", "limit", "Invalid value for 'limit': must be between 1 and 100.", "")
			return
		}
		limit = n
	}
	archived := false
	switch v := q.Get("include_archived"); v {
	case "", "false":
	case "true":
		archived = true
	default:
		oaiFail(w, http.StatusBadRequest, "invalid_request_error", "include_archived", "Invalid value for 'include_archived': expected a boolean.", "")
		return
	}
	var all []oaiProject
	for _, p := range OpenAIProjectsAt(key, s.generation(key)) {
		if p.ArchivedAt != nil && !archived {
			continue
		}
		op := oaiProject{ID: p.ID, Object: "organization.project", Name: p.Name, CreatedAt: p.CreatedAt.Unix(), Status: "active"}
		if p.ArchivedAt != nil {
			at := p.ArchivedAt.Unix()
			op.ArchivedAt, op.Status = &at, "archived"
		}
		all = append(all, op)
	}
	start := 0
	if after := q.Get("after"); after != "" {
		i := slices.IndexFunc(all, func(p oaiProject) bool { return p.ID == after })
		if i < 0 {
			oaiFail(w, http.StatusBadRequest, "invalid_request_error", "after", "Invalid value for 'after': no such project.", "")
			return
		}
		start = i + 1
	}
	if s.opts.ListPageSize > 0 {
		limit = min(limit, s.opts.ListPageSize)
	}
	end := min(start+limit, len(all))
	page := oaiList{Object: "list", Data: all[start:end], HasMore: end < len(all)}
	if len(page.Data) > 0 {
		page.FirstID, page.LastID = &page.Data[0].ID, &page.Data[len(page.Data)-1].ID
	}
	writeJSON(w, http.StatusOK, page)
}

type antOrganization struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Type string `json:"type"`
}

// anthropicMe serves GET /v1/organizations/me.
func (s *Server) anthropicMe(w http.ResponseWriter, key string) {
	id, name := AnthropicOrganization(key)
	writeJSON(w, http.StatusOK, antOrganization{ID: id, Name: name, Type: "organization"})
}
