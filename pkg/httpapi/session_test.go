package httpapi_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/httpapi"
)

// TestKeyChangesNeedALiveSession: adding, replacing and deleting a key ask
// the Auth server (a fake answering like the real one) whether the session
// is still live. After sign-out the still-unexpired JWT reads as before but
// cannot change keys; an unreachable Auth server fails closed with 503.
func TestKeyChangesNeedALiveSession(t *testing.T) {
	t.Parallel()
	b := setup(t, liveSessions())
	alice := b.newUser(t)
	id := b.connect(t, alice)
	gone := b.connect(t, alice)
	calls := b.authSrv.Requests()
	require.EqualValues(t, 2, calls, "each key change asks the Auth server")

	status, _, body := b.do(t, alice, http.MethodPatch, "/v1/connections/"+id,
		map[string]string{"api_key": "sk-admin-replaced0123456789abcdef"})
	require.Equal(t, http.StatusOK, status, string(body))
	status, _, _ = b.do(t, alice, http.MethodDelete, "/v1/connections/"+gone, nil)
	require.Equal(t, http.StatusNoContent, status)
	require.EqualValues(t, 4, b.authSrv.Requests())

	// Reads and other mutations do not ask.
	status, _, _ = b.do(t, alice, http.MethodGet, "/v1/connections", nil)
	require.Equal(t, http.StatusOK, status)
	status, _, _ = b.do(t, alice, http.MethodGet, "/v1/connections/"+id, nil)
	require.Equal(t, http.StatusOK, status)
	require.EqualValues(t, 4, b.authSrv.Requests())

	// Sign out: the JWT is still within its lifetime.
	b.authSrv.Logout(alice.sid)
	var before string
	require.NoError(t, b.sql.Get(&before, `SELECT label || key_hint || sealed_key FROM tokka.connections WHERE id = $1`, id))
	for _, tc := range []struct {
		method, path string
		body         any
	}{
		{http.MethodPost, "/v1/connections", newConnBody("sk-admin-aftersignout0123456789")},
		{http.MethodPatch, "/v1/connections/" + id, map[string]string{"api_key": "sk-admin-aftersignout0123456789"}},
		{http.MethodPatch, "/v1/connections/" + id, map[string]string{"label": "renamed after sign-out"}},
		{http.MethodDelete, "/v1/connections/" + id, nil},
	} {
		status, h, body := b.do(t, alice, tc.method, tc.path, tc.body)
		requireProblem(t, status, h, body, http.StatusUnauthorized, tc.method+" "+tc.path)
		require.Contains(t, string(body), "session has ended")
	}
	var after string
	require.NoError(t, b.sql.Get(&after, `SELECT label || key_hint || sealed_key FROM tokka.connections WHERE id = $1`, id))
	require.Equal(t, before, after, "a signed-out session changed a key")
	require.Equal(t, 1, b.countConnections(t, alice.id))
	status, _, _ = b.do(t, alice, http.MethodGet, "/v1/connections/"+id, nil)
	require.Equal(t, http.StatusOK, status, "reads verify the signature only (by design)")

	// A deleted user is refused the same way.
	bob := b.newUser(t)
	b.connect(t, bob)
	b.authSrv.DeleteUser(bob.id)
	status, h, body := b.do(t, bob, http.MethodPost, "/v1/connections", newConnBody("sk-admin-deleteduser0123456789"))
	requireProblem(t, status, h, body, http.StatusUnauthorized, "deleted user")

	// The Auth server is down: fail closed, store nothing.
	carol := b.newUser(t)
	b.authSrv.SetDown(true)
	status, h, body = b.do(t, carol, http.MethodPost, "/v1/connections", newConnBody("sk-admin-authdown0123456789abc"))
	requireProblem(t, status, h, body, http.StatusServiceUnavailable, "Auth server down")
	require.Zero(t, b.countConnections(t, carol.id))
	b.authSrv.SetDown(false)
	b.connect(t, carol)
	require.NotContains(t, b.logs.String(), alice.token[len(alice.token)-20:], "tokens must never be logged")
}

// TestRateLimitRunsBeforeTheSessionCheck: a flood of key changes is turned
// away by the rate limiter without reaching the Auth server.
func TestRateLimitRunsBeforeTheSessionCheck(t *testing.T) {
	t.Parallel()
	b := setup(t, liveSessions(), fromIP(uniqueLoopback()), configured(httpapi.Config{RateLimits: httpapi.RateLimits{PerUser: 2, Window: 24 * time.Hour}}))
	alice := b.newUser(t)
	b.connect(t, alice)
	b.connect(t, alice)
	for i := 0; i < 5; i++ {
		status, h, body := b.do(t, alice, http.MethodPost, "/v1/connections", newConnBody("sk-admin-flood0123456789abcdef"))
		requireProblem(t, status, h, body, http.StatusTooManyRequests, "flood")
	}
	require.EqualValues(t, 2, b.authSrv.Requests())
	var p httpapi.Problem
	_, _, body := b.do(t, alice, http.MethodPost, "/v1/connections", newConnBody("sk-admin-flood0123456789abcdef"))
	require.NoError(t, json.Unmarshal(body, &p))
	require.Contains(t, p.Detail, "retry after")
}

// TestWithoutAnAuthServerTheSignatureDecides: the local HS256 stack has no
// Auth server to ask; key changes work on the signature alone.
func TestWithoutAnAuthServerTheSignatureDecides(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice := b.newUser(t)
	id := b.connect(t, alice)
	status, _, _ := b.do(t, alice, http.MethodDelete, "/v1/connections/"+id, nil)
	require.Equal(t, http.StatusNoContent, status)
}
