package fakeprovider

import (
	"crypto/sha256"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The fake's directory (projects, workspaces, API keys, admin keys) is a pure
// function of the organisation and its rename generation (Server.Rename):
// names change with the generation, ids never do. Only the keys' times are
// the Server's: fresh by its clock unless a test ages or backdates a key
// (AgeKey, BackdateKey), and AddAdminKey adds an admin key, so each key
// hygiene alert can be driven on purpose. The names are hostile on
// purpose: the first project's starts with "=" (a spreadsheet formula) and
// carries non-ASCII text and an emoji, and the archived project's is longer
// than any label Tokka lets a person type.
//
// A key with the marker -usageonly is a key restricted to usage reads: every
// directory endpoint answers it 403, while its usage and costs are served.

// LongName is the archived OpenAI project's (and archived Anthropic
// workspace's) name before any rename: 296 characters, 576 bytes.
var LongName = "Old experiments " + strings.Repeat("ünïcødé ", 35)

// FirstProjectName is the name of an organisation's first project (OpenAI)
// or its extra workspace (Anthropic) at rename generation gen: it starts
// with "=", so a CSV export must neutralise it. It never fails.
func FirstProjectName(gen int) string {
	return renamed("=Research — Forschung 研究 🚀", gen)
}

// APIKeyName is the name of the API key of project (workspace) number p at
// rename generation gen. It never fails.
func APIKeyName(p, gen int) string {
	return renamed("service key "+strconv.Itoa(p+1)+" ✓", gen)
}

// renamed appends the rename generation, so every rename changes every name.
func renamed(name string, gen int) string {
	if gen == 0 {
		return name
	}
	return name + " (v" + strconv.Itoa(gen+1) + ")"
}

// FakeKey is an API key or admin key as the fake lists it.
type FakeKey struct {
	ID         string
	Name       string
	Redacted   string // the provider's redacted value
	CreatedAt  time.Time
	LastUsedAt *time.Time
	ProjectID  string // "" for admin keys and Anthropic's default workspace
}

// OpenAIProjectKeys returns the API keys of the project with index p of
// OpenAIProjects (the archived project is index -1) at rename generation gen:
// one each, the key usage is booked to. It never fails.
func OpenAIProjectKeys(key string, projectID string, gen int) []FakeKey {
	org := OrgOf(key)
	for i, p := range OpenAIProjects(key) {
		if p.ID != projectID {
			continue
		}
		idx := i - 1 // the archived project comes first
		id := "key_" + ident(org, "openai-apikey", idx, 8)
		if idx < 0 {
			id = "key_" + ident(org, "openai-apikey-archived", 0, 8)
		}
		used := p.CreatedAt.Add(48 * time.Hour)
		return []FakeKey{{ID: id, Name: APIKeyName(idx, gen), Redacted: "sk-proj-...." + id[len(id)-4:],
			CreatedAt: p.CreatedAt, LastUsedAt: &used, ProjectID: p.ID}}
	}
	return nil
}

// OpenAIAdminKeys returns the organisation's admin keys at rename generation
// gen: two, one never used. The first is key itself: its redacted value is
// key's first eight characters and last four, as OpenAI redacts, so Tokka
// can tell which admin key it holds. The times are the organisation's
// history; the Server serves them moved to its clock (see keyTimes). It
// never fails.
func OpenAIAdminKeys(key string, gen int) []FakeKey {
	org := OrgOf(key)
	created := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(newStream(org, "openai-admin-created").n(300*24)) * time.Hour)
	used := created.Add(24 * time.Hour)
	var out []FakeKey
	for i, name := range []string{"Tokka (read usage)", "ops — Wartung"} {
		id := "key_" + ident(org, "openai-adminkey", i, 8)
		k := FakeKey{ID: id, Name: renamed(name, gen), Redacted: "sk-admin...." + id[len(id)-4:], CreatedAt: created.Add(time.Duration(i) * time.Hour)}
		if i == 0 {
			k.LastUsedAt = &used
			if len(key) >= 16 {
				k.Redacted = key[:8] + "...." + key[len(key)-4:]
			}
		}
		out = append(out, k)
	}
	return out
}

// AnthropicWorkspace is a workspace of an Anthropic organisation as GET
// /v1/organizations/workspaces lists it.
type AnthropicWorkspace struct {
	ID         string
	Name       string
	CreatedAt  time.Time
	ArchivedAt *time.Time
}

// AnthropicWorkspaces returns the organisation's workspaces at rename
// generation gen, oldest first: an archived one, and the extra workspace
// AnthropicDayAt books usage to when the organisation has one. The default
// workspace is not listed (the API lists it only with include_default). It
// never fails.
func AnthropicWorkspaces(key string, gen int) []AnthropicWorkspace {
	org := OrgOf(key)
	created := time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(newStream(org, "anthropic-created").n(300*24)) * time.Hour)
	archived := created.Add(6 * time.Hour)
	out := []AnthropicWorkspace{{ID: "wrkspc_" + ident(org, "anthropic-workspace-archived", 0, 11),
		Name: renamed(LongName, gen), CreatedAt: created, ArchivedAt: &archived}}
	if newStream(org, "anthropic-org").n(2) == 1 { // the same draw AnthropicDayAt makes
		out = append(out, AnthropicWorkspace{ID: "wrkspc_" + ident(org, "anthropic-workspace", 1, 11),
			Name: FirstProjectName(gen), CreatedAt: created.Add(24 * time.Hour)})
	}
	return out
}

// AnthropicAPIKeys returns the organisation's API keys at rename generation
// gen: the one of the default workspace and the one of the extra workspace
// (when there is one), the keys usage is booked to. It never fails.
func AnthropicAPIKeys(key string, gen int) []FakeKey {
	org := OrgOf(key)
	workspaces := []string{""}
	for _, w := range AnthropicWorkspaces(key, gen) {
		if w.ArchivedAt == nil {
			workspaces = append(workspaces, w.ID)
		}
	}
	created := time.Date(2024, 3, 2, 0, 0, 0, 0, time.UTC)
	var out []FakeKey
	for w, ws := range workspaces {
		id := "apikey_" + ident(org, "anthropic-apikey", w, 12)
		used := created.Add(72 * time.Hour)
		out = append(out, FakeKey{ID: id, Name: APIKeyName(w, gen), Redacted: "sk-ant-api03-" + id[7:10] + "..." + id[len(id)-4:],
			CreatedAt: created, LastUsedAt: &used, ProjectID: ws})
	}
	return out
}

// FreshKeyAge is how old the Server says every listed key is (created
// FreshKeyAge ago and, unless never used, used a day ago) until AgeKey or
// BackdateKey says otherwise: a new fake organisation calls for no key
// hygiene alert, whatever the real date.
const FreshKeyAge = 10 * 24 * time.Hour

// keyOverride is a listed key's times as a test set them.
type keyOverride struct {
	created  *time.Time
	lastUsed *time.Time
}

// keyTimes returns k with its times as the Server serves them now: fresh
// (FreshKeyAge) unless a test aged or backdated the key.
func (s *Server) keyTimes(key string, k FakeKey) FakeKey {
	now := s.now().Truncate(time.Second)
	created, used := now.Add(-FreshKeyAge), now.Add(-24*time.Hour)
	k.CreatedAt = created
	if k.LastUsedAt != nil {
		k.LastUsedAt = &used
	}
	s.mu.Lock()
	o := s.overrides[sha256.Sum256([]byte(OrgOf(key)))][k.ID]
	s.mu.Unlock()
	if o.created != nil {
		k.CreatedAt = *o.created
	}
	if o.lastUsed != nil {
		k.LastUsedAt = o.lastUsed
	}
	return k
}

// AgeKey makes the listed key id of key's organisation last used at
// lastUsed (and created a day before it, when the key is newer). It never
// fails.
func (s *Server) AgeKey(key, id string, lastUsed time.Time) {
	created := lastUsed.Add(-24 * time.Hour)
	s.override(key, id, func(o *keyOverride) { o.lastUsed, o.created = &lastUsed, &created })
}

// BackdateKey makes the listed key id of key's organisation created at
// created. It never fails.
func (s *Server) BackdateKey(key, id string, created time.Time) {
	s.override(key, id, func(o *keyOverride) { o.created = &created })
}

func (s *Server) override(key, id string, set func(*keyOverride)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := sha256.Sum256([]byte(OrgOf(key)))
	if s.overrides[h] == nil {
		s.overrides[h] = map[string]keyOverride{}
	}
	o := s.overrides[h][id]
	set(&o)
	s.overrides[h][id] = o
}

// AddAdminKey creates a new admin key in key's organisation, created and
// last used now (by the fake's clock), and returns it: the next listing of
// the organisation's admin keys includes it. It never fails.
func (s *Server) AddAdminKey(key, name string) FakeKey {
	now := s.now().Truncate(time.Second)
	s.mu.Lock()
	defer s.mu.Unlock()
	h := sha256.Sum256([]byte(OrgOf(key)))
	id := "key_" + ident(OrgOf(key), "openai-adminkey-added", len(s.addedAdmin[h]), 8)
	k := FakeKey{ID: id, Name: name, Redacted: "sk-admin...." + id[len(id)-4:], CreatedAt: now, LastUsedAt: &now}
	s.addedAdmin[h] = append(s.addedAdmin[h], k)
	return k
}

// addedAdminKeys returns the admin keys AddAdminKey created in key's
// organisation.
func (s *Server) addedAdminKeys(key string) []FakeKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.addedAdmin[sha256.Sum256([]byte(OrgOf(key)))])
}

// Rename changes every directory name of key's organisation (a new rename
// generation) and returns the generation (1 after the first call). Ids stay.
// The generation belongs to the organisation marker, so it renames that
// organisation at both providers. It never fails.
func (s *Server) Rename(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := sha256.Sum256([]byte(OrgOf(key)))
	s.renames[h]++
	return s.renames[h]
}

// generation is key's organisation's rename generation.
func (s *Server) generation(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.renames[sha256.Sum256([]byte(OrgOf(key)))]
}

// listPage cuts one page out of all, a list ordered by id's position: limit
// (1..max, default 20, capped by Options.ListPageSize) elements after the
// element whose id is after. It reports false (and has answered 400 through
// fail) for a bad limit or an unknown cursor.
func listPage[T any](s *Server, all []T, id func(T) string, limitParam, after string, maxLimit int, fail func(param, msg string)) ([]T, bool, bool) {
	limit := 20
	if limitParam != "" {
		n, err := strconv.Atoi(limitParam)
		if err != nil || n < 1 || n > maxLimit {
			fail("limit", "Invalid value for 'limit': must be between 1 and "+strconv.Itoa(maxLimit)+".")
			return nil, false, false
		}
		limit = n
	}
	if s.opts.ListPageSize > 0 {
		limit = min(limit, s.opts.ListPageSize)
	}
	start := 0
	if after != "" {
		i := slices.IndexFunc(all, func(v T) bool { return id(v) == after })
		if i < 0 {
			fail("after", "Invalid value for cursor: no such object.")
			return nil, false, false
		}
		start = i + 1
	}
	end := min(start+limit, len(all))
	return all[start:end], end < len(all), true
}

type oaiKey struct {
	ID            string  `json:"id"`
	Object        string  `json:"object"`
	Name          string  `json:"name"`
	RedactedValue string  `json:"redacted_value"`
	CreatedAt     int64   `json:"created_at"`
	LastUsedAt    *int64  `json:"last_used_at"`
	Owner         oaiUser `json:"owner"`
}

type oaiUser struct {
	Type string `json:"type"`
}

type oaiKeyList struct {
	Object  string   `json:"object"`
	Data    []oaiKey `json:"data"`
	FirstID *string  `json:"first_id"`
	LastID  *string  `json:"last_id"`
	HasMore bool     `json:"has_more"`
}

// openAIKeys serves GET /v1/organization/projects/{id}/api_keys (projectID
// set) and GET /v1/organization/admin_api_keys: limit 1–100 (default 20),
// after (a key id of the listing).
func (s *Server) openAIKeys(w http.ResponseWriter, r *http.Request, key, projectID string, admin bool) {
	gen := s.generation(key)
	var keys []FakeKey
	object := "organization.project.api_key"
	if admin {
		for _, k := range OpenAIAdminKeys(key, gen) {
			keys = append(keys, s.keyTimes(key, k))
		}
		keys, object = append(keys, s.addedAdminKeys(key)...), "organization.admin_api_key"
	} else {
		if !slices.ContainsFunc(OpenAIProjects(key), func(p OpenAIProject) bool { return p.ID == projectID }) {
			oaiFail(w, http.StatusNotFound, "invalid_request_error", "", "No such project: "+projectID, "")
			return
		}
		for _, k := range OpenAIProjectKeys(key, projectID, gen) {
			keys = append(keys, s.keyTimes(key, k))
		}
	}
	fail := func(param, msg string) { oaiFail(w, http.StatusBadRequest, "invalid_request_error", param, msg, "") }
	q := r.URL.Query()
	page, more, ok := listPage(s, keys, func(k FakeKey) string { return k.ID }, q.Get("limit"), q.Get("after"), 100, fail)
	if !ok {
		return
	}
	out := oaiKeyList{Object: "list", Data: []oaiKey{}, HasMore: more}
	for _, k := range page {
		ok := oaiKey{ID: k.ID, Object: object, Name: k.Name, RedactedValue: k.Redacted, CreatedAt: k.CreatedAt.Unix(),
			Owner: oaiUser{Type: "service_account"}}
		if k.LastUsedAt != nil {
			at := k.LastUsedAt.Unix()
			ok.LastUsedAt = &at
		}
		out.Data = append(out.Data, ok)
	}
	if len(out.Data) > 0 {
		out.FirstID, out.LastID = &out.Data[0].ID, &out.Data[len(out.Data)-1].ID
	}
	writeJSON(w, http.StatusOK, out)
}

type antWorkspace struct {
	ID           string  `json:"id"`
	Type         string  `json:"type"`
	Name         string  `json:"name"`
	CreatedAt    string  `json:"created_at"`
	ArchivedAt   *string `json:"archived_at"`
	DisplayColor string  `json:"display_color"`
}

type antKey struct {
	ID             string  `json:"id"`
	Type           string  `json:"type"`
	Name           string  `json:"name"`
	PartialKeyHint string  `json:"partial_key_hint"`
	CreatedAt      string  `json:"created_at"`
	Status         string  `json:"status"`
	WorkspaceID    *string `json:"workspace_id"`
}

type antList[T any] struct {
	Data    []T     `json:"data"`
	FirstID *string `json:"first_id"`
	LastID  *string `json:"last_id"`
	HasMore bool    `json:"has_more"`
}

// anthropicDirectory serves GET /v1/organizations/workspaces (limit 1–1000,
// default 20, after_id, include_archived) and GET /v1/organizations/api_keys
// (limit, after_id).
func (s *Server) anthropicDirectory(w http.ResponseWriter, r *http.Request, key string, workspaces bool, fail func(int, string, string)) {
	gen := s.generation(key)
	q := r.URL.Query()
	bad := func(param, msg string) { fail(http.StatusBadRequest, "invalid_request_error", param+": "+msg) }
	if workspaces {
		var all []antWorkspace
		archived := q.Get("include_archived") == "true"
		for _, ws := range AnthropicWorkspaces(key, gen) {
			if ws.ArchivedAt != nil && !archived {
				continue
			}
			a := antWorkspace{ID: ws.ID, Type: "workspace", Name: ws.Name, CreatedAt: ws.CreatedAt.Format(time.RFC3339Nano), DisplayColor: "#6C5BB9"}
			if ws.ArchivedAt != nil {
				at := ws.ArchivedAt.Format(time.RFC3339Nano)
				a.ArchivedAt = &at
			}
			all = append(all, a)
		}
		page, more, ok := listPage(s, all, func(a antWorkspace) string { return a.ID }, q.Get("limit"), q.Get("after_id"), 1000, bad)
		if ok {
			writeJSON(w, http.StatusOK, antListOf(page, more, func(a antWorkspace) string { return a.ID }))
		}
		return
	}
	var all []antKey
	for _, k := range AnthropicAPIKeys(key, gen) {
		k = s.keyTimes(key, k)
		a := antKey{ID: k.ID, Type: "api_key", Name: k.Name, PartialKeyHint: k.Redacted, CreatedAt: k.CreatedAt.Format(time.RFC3339), Status: "active"}
		if k.ProjectID != "" {
			ws := k.ProjectID
			a.WorkspaceID = &ws
		}
		all = append(all, a)
	}
	page, more, ok := listPage(s, all, func(a antKey) string { return a.ID }, q.Get("limit"), q.Get("after_id"), 1000, bad)
	if ok {
		writeJSON(w, http.StatusOK, antListOf(page, more, func(a antKey) string { return a.ID }))
	}
}

func antListOf[T any](page []T, more bool, id func(T) string) antList[T] {
	out := antList[T]{Data: append([]T{}, page...), HasMore: more}
	if len(page) > 0 {
		first, last := id(page[0]), id(page[len(page)-1])
		out.FirstID, out.LastID = &first, &last
	}
	return out
}
