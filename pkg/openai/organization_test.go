package openai_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/fakeprovider"
	"github.com/tokka-dev/tokka/pkg/provider"
	"github.com/tokka-dev/tokka/pkg/providertest"
	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// Organization lists every project, archived ones included, page by page
// (after = the previous page's last_id), and two keys of one organisation
// get the same projects from the fake provider.
func TestOrganizationIsTheProjectList(t *testing.T) {
	t.Parallel()
	const pages = 3
	b := setup(t, providertest.Handle(func(w http.ResponseWriter, r *http.Request) {
		require.Equal(t, "/v1/organization/projects", r.URL.Path)
		q := r.URL.Query()
		require.Equal(t, "true", q.Get("include_archived"))
		require.Equal(t, "100", q.Get("limit"))
		require.Equal(t, "Bearer "+goldenKey, r.Header.Get("Authorization"))
		n := 0
		if a := q.Get("after"); a != "" {
			_, err := fmt.Sscanf(a, "proj_%d", &n)
			require.NoError(t, err)
		}
		w.Header().Set("x-request-id", "req_projects")
		_, _ = fmt.Fprintf(w, `{"object":"list","data":[{"id":"proj_%d","object":"organization.project","name":"p","created_at":1,"archived_at":null,"status":"active"},{"id":"proj_%d","object":"organization.project","name":"q","created_at":2,"archived_at":3,"status":"archived"}],"first_id":"proj_%d","last_id":"proj_%d","has_more":%t}`,
			n+1, n+2, n+1, n+2, n+2 < 2*pages)
	}))
	org, err := b.client.Organization(context.Background(), secret.FromString(goldenKey))
	require.NoError(t, err)
	require.Equal(t, tokka.Organization{ProjectIDs: []string{"proj_1", "proj_2", "proj_3", "proj_4", "proj_5", "proj_6"}}, org)
	require.Len(t, b.Requests(), pages)

	f := setup(t)
	a, err := f.client.Organization(context.Background(), secret.FromString("sk-admin-one-org_shared-1"))
	require.NoError(t, err)
	c, err := f.client.Organization(context.Background(), secret.FromString("sk-admin-two-org_shared-2"))
	require.NoError(t, err)
	require.Equal(t, a, c)
	var want []string
	for _, p := range fakeprovider.OpenAIProjects("sk-admin-one-org_shared-1") {
		want = append(want, p.ID)
	}
	require.Equal(t, want, a.ProjectIDs)
	d, err := f.client.Organization(context.Background(), secret.FromString("sk-admin-three-org_other-3"))
	require.NoError(t, err)
	for _, id := range d.ProjectIDs {
		require.NotContains(t, a.ProjectIDs, id, "another organisation shares no project")
	}
}

// A malformed listing, a cursor that repeats or is missing, or a listing
// that never ends is a bad response naming the endpoint; a rejected key is a
// key-free auth error.
func TestOrganizationGuards(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		body   string
		reason string
	}{
		"not json":      {`{"object":"list","data":`, "not the expected JSON (organization/projects)"},
		"no data":       {`{"object":"list"}`, "not the expected JSON (organization/projects)"},
		"empty id":      {`{"object":"list","data":[{"id":""}],"has_more":false}`, "no plausible id"},
		"no cursor":     {`{"object":"list","data":[{"id":"proj_1"}],"has_more":true,"last_id":null}`, "gave no last_id"},
		"same cursor":   {`{"object":"list","data":[{"id":"proj_1"}],"has_more":true,"last_id":"proj_1"}`, "same page cursor twice"},
		"endless pages": {``, "kept paging past"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			n := 0
			b := setup(t, providertest.Handle(func(w http.ResponseWriter, r *http.Request) {
				n++
				if tc.body == "" {
					_, _ = fmt.Fprintf(w, `{"object":"list","data":[{"id":"proj_%d"}],"has_more":true,"last_id":"proj_%d"}`, n, n)
					return
				}
				_, _ = w.Write([]byte(tc.body))
			}))
			_, err := b.client.Organization(context.Background(), secret.FromString(goldenKey))
			pe := requireKind(t, err, provider.KindBadResponse)
			require.Contains(t, pe.Reason, tc.reason)
		})
	}

	f := setup(t)
	for _, k := range []string{"sk-admin-revoked-Q7w8E9r0T1y2U3i4", "sk-proj-NotAnAdminKey-Z9x8C7v6B5n4"} {
		_, err := f.client.Organization(context.Background(), secret.FromString(k))
		pe := requireKind(t, err, provider.KindAuth)
		for i := 0; i+8 <= len(k); i++ {
			require.False(t, strings.Contains(err.Error(), k[i:i+8]), "the error holds a piece of the key")
		}
		require.NotEmpty(t, pe.Reason)
		require.Equal(t, 1, f.Fake.Requests(k), "auth failures are not retried")
	}
}
