package anthropic_test

import (
	"context"
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

// Organization reads GET /v1/organizations/me with the key and version
// headers and returns its id in lower case; two keys of one organisation
// get the same id from the fake provider.
func TestOrganizationIsOrganizationsMe(t *testing.T) {
	t.Parallel()
	b := setup(t, providertest.Handle(func(w http.ResponseWriter, r *http.Request) {
		require.Equal(t, "/v1/organizations/me", r.URL.Path)
		require.Equal(t, goldenKey, r.Header.Get("x-api-key"))
		require.Equal(t, "2023-06-01", r.Header.Get("anthropic-version"))
		_, _ = w.Write([]byte(`{"id":"12345678-1234-4234-8234-1234567890AB","name":"Acme","type":"organization"}`))
	}))
	org, err := b.client.Organization(context.Background(), secret.FromString(goldenKey))
	require.NoError(t, err)
	require.Equal(t, tokka.Organization{ID: "12345678-1234-4234-8234-1234567890ab"}, org)

	f := setup(t)
	a, err := f.client.Organization(context.Background(), secret.FromString("sk-ant-admin01-one-org_shared-1"))
	require.NoError(t, err)
	c, err := f.client.Organization(context.Background(), secret.FromString("sk-ant-admin01-two-org_shared-2"))
	require.NoError(t, err)
	require.Equal(t, a, c)
	id, _ := fakeprovider.AnthropicOrganization("sk-ant-admin01-one-org_shared-1")
	require.Equal(t, id, a.ID)
	d, err := f.client.Organization(context.Background(), secret.FromString("sk-ant-admin01-three"))
	require.NoError(t, err)
	require.NotEqual(t, a.ID, d.ID)
}

// An answer without a plausible id is a bad response; a rejected key is a
// key-free auth error, not retried.
func TestOrganizationGuards(t *testing.T) {
	t.Parallel()
	for _, body := range []string{`{`, `{"type":"organization"}`, `{"id":"","type":"organization"}`,
		`{"id":"has space","type":"organization"}`, `{"id":"x","type":"user"}`} {
		b := setup(t, providertest.Handle(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(body)) }))
		_, err := b.client.Organization(context.Background(), secret.FromString(goldenKey))
		pe := requireKind(t, err, provider.KindBadResponse)
		require.Contains(t, pe.Reason, "(organizations/me)", body)
	}
	f := setup(t)
	for _, k := range []string{"sk-ant-admin01-revoked-Q7w8E9r0T1y2U3i4", "sk-ant-api03-NotAnAdminKey-Z9x8C7v6B5n4"} {
		_, err := f.client.Organization(context.Background(), secret.FromString(k))
		requireKind(t, err, provider.KindAuth)
		for i := 0; i+8 <= len(k); i++ {
			require.False(t, strings.Contains(err.Error(), k[i:i+8]), "the error holds a piece of the key")
		}
		require.Equal(t, 1, f.Fake.Requests(k))
	}
}
