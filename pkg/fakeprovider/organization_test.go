package fakeprovider_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/fakeprovider"
)

// Two keys with one -org_ marker are two admin keys of one organisation:
// the same usage, costs, projects and organisation id, served through
// every endpoint. Keys without the marker keep the data they always had.
func TestKeysOfOneOrganisationServeTheSameData(t *testing.T) {
	t.Parallel()
	b := setup(t)
	oa, ob := "sk-admin-first-org_acme-001", "sk-admin-second-org_acme-002"
	aa, ab := "sk-ant-admin01-first-org_acme-001", "sk-ant-admin01-second-org_acme-002"
	require.Equal(t, fakeprovider.OrgOf(oa), fakeprovider.OrgOf(ob))
	require.Equal(t, oaiKey, fakeprovider.OrgOf(oaiKey), "an unmarked key is its own organisation")
	require.NotEqual(t, fakeprovider.OrgOf(oa), fakeprovider.OrgOf("sk-admin-x-org_other-001"))

	day := now.AddDate(0, 0, -3).Truncate(24 * time.Hour)
	require.Equal(t, fakeprovider.OpenAIDay(oa, day), fakeprovider.OpenAIDay(ob, day))
	require.Equal(t, fakeprovider.AnthropicDay(aa, day), fakeprovider.AnthropicDay(ab, day))
	require.NotEqual(t, fakeprovider.OpenAIDay(oa, day), fakeprovider.OpenAIDay(oaiKey, day))

	q := "?start_time=" + unix(day) + "&end_time=" + unix(day.AddDate(0, 0, 1)) + "&bucket_width=1d&group_by[]=project_id&group_by[]=line_item"
	require.Equal(t, b.openai(t, oa, "/v1/organization/costs"+q).Body.String(), b.openai(t, ob, "/v1/organization/costs"+q).Body.String())
	aq := "?starting_at=" + day.Format(time.RFC3339) + "&ending_at=" + day.AddDate(0, 0, 1).Format(time.RFC3339) + "&group_by[]=description"
	require.Equal(t, b.anthropic(t, aa, "2023-06-01", "/v1/organizations/cost_report"+aq).Body.String(),
		b.anthropic(t, ab, "2023-06-01", "/v1/organizations/cost_report"+aq).Body.String())
	require.Equal(t, b.openai(t, oa, "/v1/organization/projects?include_archived=true").Body.String(),
		b.openai(t, ob, "/v1/organization/projects?include_archived=true").Body.String())
	require.Equal(t, b.anthropic(t, aa, "2023-06-01", "/v1/organizations/me").Body.String(),
		b.anthropic(t, ab, "2023-06-01", "/v1/organizations/me").Body.String())

	// The projects usage is booked to are the organisation's projects.
	projects := map[string]bool{}
	for _, p := range fakeprovider.OpenAIProjects(oa) {
		projects[p.ID] = true
	}
	for d := 0; d < 10; d++ {
		for _, r := range fakeprovider.OpenAIDay(oa, day.AddDate(0, 0, -d)) {
			require.True(t, projects[r.ProjectID], r.ProjectID)
		}
	}
}

type projectList struct {
	Object string `json:"object"`
	Data   []struct {
		ID         string `json:"id"`
		Object     string `json:"object"`
		Name       string `json:"name"`
		CreatedAt  int64  `json:"created_at"`
		ArchivedAt *int64 `json:"archived_at"`
		Status     string `json:"status"`
	} `json:"data"`
	FirstID *string `json:"first_id"`
	LastID  *string `json:"last_id"`
	HasMore bool    `json:"has_more"`
}

// GET /v1/organization/projects answers in OpenAI's list shape, pages
// with limit and after, leaves archived projects out unless asked, and
// checks the key like every endpoint.
func TestOpenAIProjectsListing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	all := fakeprovider.OpenAIProjects(oaiKey)
	require.GreaterOrEqual(t, len(all), 2)
	w := b.openai(t, oaiKey, "/v1/organization/projects")
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	active := decode[projectList](t, w)
	require.Equal(t, "list", active.Object)
	require.Len(t, active.Data, len(all)-1, "archived projects only on request")
	for _, p := range active.Data {
		require.Equal(t, "organization.project", p.Object)
		require.Equal(t, "active", p.Status)
		require.Nil(t, p.ArchivedAt)
		require.Regexp(t, regexp.MustCompile(`^proj_[0-9a-f]{24}$`), p.ID)
		require.NotEmpty(t, p.Name)
		require.Positive(t, p.CreatedAt)
	}

	var ids []string
	after := ""
	for i := 0; i < 10; i++ {
		target := "/v1/organization/projects?include_archived=true&limit=1"
		if after != "" {
			target += "&after=" + url.QueryEscape(after)
		}
		page := decode[projectList](t, b.openai(t, oaiKey, target))
		require.Len(t, page.Data, 1)
		require.Equal(t, page.Data[0].ID, *page.FirstID)
		require.Equal(t, page.Data[0].ID, *page.LastID)
		ids = append(ids, page.Data[0].ID)
		if page.Data[0].ArchivedAt != nil {
			require.Equal(t, "archived", page.Data[0].Status)
		}
		if !page.HasMore {
			break
		}
		after = *page.LastID
	}
	require.Len(t, ids, len(all))
	for i, p := range all {
		require.Equal(t, p.ID, ids[i])
	}

	for _, bad := range []string{"limit=0", "limit=101", "limit=x", "include_archived=maybe", "after=proj_nope"} {
		requireOpenAIError(t, b.openai(t, oaiKey, "/v1/organization/projects?"+bad), http.StatusBadRequest)
	}
	requireOpenAIError(t, b.openai(t, "", "/v1/organization/projects"), http.StatusUnauthorized)
	requireOpenAIError(t, b.openai(t, "sk-proj-abc0123456789", "/v1/organization/projects"), http.StatusForbidden)
	e := requireOpenAIError(t, b.openai(t, "sk-admin-x-revoked-CANARY", "/v1/organization/projects"), http.StatusUnauthorized)
	require.Contains(t, e["message"], "CANARY", "hostile like every endpoint: the key is echoed")
	e = requireOpenAIError(t, b.openai(t, "sk-other0123456789abcdef", "/v1/organization/projects"), http.StatusUnauthorized)
	require.NotContains(t, e["message"], "0123456789abc")
}

// GET /v1/organizations/me answers in Anthropic's shape with a UUID that is
// the organisation's, and checks the key and version like every endpoint.
func TestAnthropicOrganizationsMe(t *testing.T) {
	t.Parallel()
	b := setup(t)
	w := b.anthropic(t, antKey, "2023-06-01", "/v1/organizations/me")
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	require.NotEmpty(t, w.Header().Get("request-id"))
	org := decode[map[string]string](t, w)
	require.Len(t, org, 3)
	id, name := fakeprovider.AnthropicOrganization(antKey)
	require.Equal(t, map[string]string{"id": id, "name": name, "type": "organization"}, org)
	require.Regexp(t, regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`), id)
	other, _ := fakeprovider.AnthropicOrganization("sk-ant-admin01-someone-else")
	require.NotEqual(t, id, other)

	requireAnthropicError(t, b.anthropic(t, "", "2023-06-01", "/v1/organizations/me"), http.StatusUnauthorized, "authentication_error")
	requireAnthropicError(t, b.anthropic(t, "sk-ant-api03-notadmin", "2023-06-01", "/v1/organizations/me"), http.StatusUnauthorized, "authentication_error")
	msg := requireAnthropicError(t, b.anthropic(t, "sk-ant-admin01-x-revoked-CANARY", "2023-06-01", "/v1/organizations/me"), http.StatusUnauthorized, "authentication_error")
	require.Contains(t, msg, "CANARY")
	requireAnthropicError(t, b.anthropic(t, antKey, "", "/v1/organizations/me"), http.StatusBadRequest, "invalid_request_error")
}

// The organisation endpoints count in Requests but not in the data
// requests the fault markers count, so a -flaky key's usage pages still
// fail once each and then succeed.
func TestOrganisationRequestsDoNotShiftFaults(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const key = "sk-admin-org-flaky-0001"
	require.Equal(t, http.StatusOK, b.openai(t, key, "/v1/organization/projects").Code)
	q := "/v1/organization/costs?start_time=" + unix(now.AddDate(0, 0, -2).Truncate(24*time.Hour)) + "&bucket_width=1d"
	require.Equal(t, http.StatusInternalServerError, b.openai(t, key, q).Code, "the first data request still fails")
	require.Equal(t, http.StatusOK, b.openai(t, key, q).Code)
	require.Equal(t, 3, b.fake.Requests(key))
	require.False(t, strings.Contains(fakeprovider.OrgOf(key), "org:"))
}
