package incident_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/authtest"
	"github.com/tokka-dev/tokka/pkg/incident"
	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

func TestParseWindow(t *testing.T) {
	t.Parallel()
	w, err := incident.ParseWindow("2026-11-20", "2026-11-21", "")
	require.NoError(t, err)
	require.Equal(t, time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC), w.From)
	require.Equal(t, time.Date(2026, 11, 21, 23, 59, 59, 999999000, time.UTC), w.To, "a --to date is its last instant")
	require.Equal(t, "INC-20261120T000000Z-20261121T235959Z", w.Ref, "the default reference comes from the window")

	w, err = incident.ParseWindow("2026-11-20T09:00:00+01:00", "2026-11-20T10:00:00Z", "INC-7")
	require.NoError(t, err)
	require.Equal(t, time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC), w.From)
	require.Equal(t, "INC-7", w.Ref)

	for _, c := range []struct{ from, to, ref, want string }{
		{"", "2026-11-20", "", "--from and --to are required"},
		{"yesterday", "2026-11-20", "", "--from:"},
		{"2026-11-20", "2026-11-19", "", "--from must be before --to"},
		{"2026-11-20", "2026-11-21", "INC 7; rm", "--ref:"},
	} {
		_, err := incident.ParseWindow(c.from, c.to, c.ref)
		require.ErrorContains(t, err, c.want, "%+v", c)
	}
}

// TestAuthDirectory drives gotrue-go's AdminGetUser against the fake Auth
// server, which answers like GoTrue (authtest), and checks that the
// service-role key is sent as GoTrue and the gateway expect, that keys GoTrue
// would refuse are refused up front with a reason, and that the key never
// appears in an error.
func TestAuthDirectory(t *testing.T) {
	t.Parallel()
	jwtSecret := []byte("directory-test-secret-directory-test-secret")
	key, err := authtest.ServiceKey{}.HS256(jwtSecret)
	require.NoError(t, err)
	auth := authtest.NewAuthServer(jwtSecret)
	auth.APIKey = key // the gateway wants an apikey; without SUPABASE_ANON_KEY it is the service key
	known, noEmail, deleted := uuid.NewString(), uuid.NewString(), uuid.NewString()
	auth.AddUser(known, "ada@example.com")
	auth.AddUser(noEmail, "")
	auth.AddUser(deleted, "gone@example.com")
	auth.DeleteUser(deleted)
	srv := httptest.NewServer(auth)
	t.Cleanup(srv.Close)
	ctx := context.Background()

	d, err := incident.NewAuthDirectory(incident.AuthConfig{URL: srv.URL + "/", ServiceRoleKey: secret.FromString(key)})
	require.NoError(t, err)
	addr, err := d.Email(ctx, known)
	require.NoError(t, err)
	require.Equal(t, "ada@example.com", addr)
	_, err = d.Email(ctx, noEmail)
	require.ErrorIs(t, err, incident.ErrNoAddress)
	_, err = d.Email(ctx, uuid.NewString())
	require.ErrorIs(t, err, incident.ErrNoAddress, "an unknown user has no address")
	_, err = d.Email(ctx, deleted)
	require.ErrorIs(t, err, incident.ErrNoAddress, "a deleted user has no address")
	require.Equal(t, []string{known, noEmail}, auth.AdminLookups()[:2])

	// Keys the Auth server would refuse. A JWT naming a user, or with
	// another role, is refused before any request, saying why.
	for _, c := range []struct {
		name string
		tok  authtest.Token
		want string
	}{
		{"service token with a sub", authtest.Token{Role: "service_role"}, "carries a sub claim"},
		{"a user's token", authtest.Token{}, "is not a service_role key"},
	} {
		bad, err := c.tok.HS256(jwtSecret)
		require.NoError(t, err)
		_, err = incident.NewAuthDirectory(incident.AuthConfig{URL: srv.URL, ServiceRoleKey: secret.FromString(bad)})
		require.ErrorContains(t, err, c.want, c.name)
		require.NotContains(t, err.Error(), bad)
	}
	lookups := len(auth.AdminLookups())
	wrong, err := incident.NewAuthDirectory(incident.AuthConfig{URL: srv.URL, ServiceRoleKey: secret.FromString("anon"), APIKey: key})
	require.NoError(t, err)
	_, err = wrong.Email(ctx, known)
	require.ErrorContains(t, err, "check SUPABASE_SERVICE_ROLE_KEY")
	forged, err := authtest.ServiceKey{}.HS256([]byte("another-secret-another-secret-another-secret"))
	require.NoError(t, err)
	wrong, err = incident.NewAuthDirectory(incident.AuthConfig{URL: srv.URL, ServiceRoleKey: secret.FromString(forged), APIKey: key})
	require.NoError(t, err)
	_, err = wrong.Email(ctx, known)
	require.ErrorContains(t, err, "refused the service-role key (403)")
	require.Len(t, auth.AdminLookups(), lookups, "refused keys looked nobody up")

	// Whatever GoTrue says in a body stays out of errors: a server that
	// echoes the key in a 500, and GoTrue's user_not_found 403 (a key in a
	// format not checked up front) turned into advice.
	var status atomic.Int32
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(int(status.Load()))
		if status.Load() == http.StatusForbidden {
			_, _ = w.Write([]byte(`{"code":403,"error_code":"user_not_found","msg":"User from sub claim in JWT does not exist"}`))
			return
		}
		_, _ = w.Write([]byte(`{"code":500,"msg":"echoing ` + r.Header.Get("Authorization") + `"}`))
	}))
	t.Cleanup(echo.Close)
	opaque := "sb_secret_" + strings.Repeat("k", 32)
	d, err = incident.NewAuthDirectory(incident.AuthConfig{URL: echo.URL, ServiceRoleKey: secret.FromString(opaque)})
	require.NoError(t, err)
	status.Store(http.StatusInternalServerError)
	_, err = d.Email(ctx, known)
	require.ErrorContains(t, err, "answered 500")
	require.NotContains(t, err.Error(), opaque, "the response body (which may echo the key) is never quoted")
	status.Store(http.StatusForbidden)
	_, err = d.Email(ctx, known)
	require.ErrorContains(t, err, "403 user_not_found")
	require.ErrorContains(t, err, "devtoken -role service_role")

	_, err = incident.NewAuthDirectory(incident.AuthConfig{URL: "auth:9999", ServiceRoleKey: secret.FromString(key)})
	require.ErrorContains(t, err, "SUPABASE_AUTH_URL")
	_, err = incident.NewAuthDirectory(incident.AuthConfig{URL: srv.URL})
	require.ErrorContains(t, err, "SUPABASE_SERVICE_ROLE_KEY")
}

func TestMessageSaysWhatToDoAndNoMoreOfTheKeyThanItsHint(t *testing.T) {
	t.Parallel()
	w, err := incident.ParseWindow("2026-11-20", "2026-11-21", "INC-9")
	require.NoError(t, err)
	label, hint, status := "Production", "sk-admin-…Q7xZ", "compromised"
	before := w.From.Add(-time.Hour)
	after := w.To.Add(time.Hour)
	deleted := w.To.Add(-time.Hour)
	msg := incident.Message(w, "", []tokka.AffectedConnection{
		{ConnectionID: uuid.NewString(), Provider: "openai", Present: true, Label: &label, KeyHint: &hint,
			Status: &status, KeySetAt: &before, Decryptions: 3},
		{ConnectionID: uuid.NewString(), Provider: "anthropic", Present: true, Label: &label, KeyHint: &hint,
			Status: &status, KeySetAt: &after},
		{ConnectionID: "0b7f3d1e-7f59-4a5e-9a43-4f5bb1b0e0aa", Provider: "openai", DeletedAt: &deleted},
	})
	require.Contains(t, msg.Subject, "INC-9")
	for _, want := range []string{
		"WHAT HAPPENED", "WHAT MAY HAVE BEEN COMPROMISED", "WHAT TOKKA IS DOING", "WHAT YOU SHOULD DO NOW",
		`OpenAI connection "Production" (key sk-admin-…Q7xZ): no longer used by Tokka; it was decrypted for syncing 3 times`,
		`Anthropic connection "Production": you have replaced its key since`,
		"OpenAI connection 0b7f3d1e-7f59-4a5e-9a43-4f5bb1b0e0aa (deleted on 2026-11-21)",
		"Revoke each key listed above", "Create a new Admin API key", "2026-11-20 00:00:00 to 2026-11-21 23:59:59 (UTC)",
	} {
		require.Contains(t, msg.Body, want)
	}
}

// TestMessageShowsTheRealWindow: a window inside one minute (an incident
// found and contained at once, or the end-to-end test's) used to read
// "22:08 to 22:08", a window of no length at all.
func TestMessageShowsTheRealWindow(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ from, to, want string }{
		{"2026-11-20T22:08:05Z", "2026-11-20T22:08:41Z", "2026-11-20 22:08:05 to 2026-11-20 22:08:41 (UTC)"},
		{"2026-11-20T22:08:05.120Z", "2026-11-20T22:08:05.480Z", "2026-11-20 22:08:05.120000 to 2026-11-20 22:08:05.480000 (UTC)"},
		{"2026-11-20T09:00:00+01:00", "2026-11-27", "2026-11-20 08:00:00 to 2026-11-27 23:59:59 (UTC)"},
	} {
		w, err := incident.ParseWindow(c.from, c.to, "INC-1")
		require.NoError(t, err)
		msg := incident.Message(w, "", nil)
		require.Contains(t, msg.Body, "The period concerned is "+c.want+".", c)
		require.Contains(t, msg.Body, "usage since "+strings.TrimSuffix(strings.SplitN(c.want, " to ", 2)[0], "")+" UTC", c)
	}
}
