package auth_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/auth"
)

// TestSessionCheckDefaultsAndStatusBounds: a checker with the default
// timeout confirms a live session, and the lowest 4xx the Auth server uses
// for a dead token (400, bad_jwt) ends the session rather than failing as
// "cannot confirm".
func TestSessionCheckDefaultsAndStatusBounds(t *testing.T) {
	t.Parallel()
	b := setupSessions(t)
	u, _, tok := session(t)
	c, err := auth.NewSessionChecker(auth.SessionConfig{AuthURL: b.url + "/auth/v1", AnonKey: "anon-key"})
	require.NoError(t, err)
	require.NoError(t, c.CheckSession(context.Background(), u, tok), "default timeout")

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"code":400,"error_code":"bad_jwt","msg":"invalid JWT"}`))
	}))
	t.Cleanup(srv.Close)
	c, err = auth.NewSessionChecker(auth.SessionConfig{AuthURL: srv.URL})
	require.NoError(t, err)
	require.ErrorIs(t, c.CheckSession(context.Background(), u, tok), auth.ErrSessionEnded)
}

// TestBannedUsersSessionsEnd: the Auth server answers for a user banned
// until a future time (with the default clock) and the session ends; a ban
// that has run out does not end it.
func TestBannedUsersSessionsEnd(t *testing.T) {
	t.Parallel()
	u, _, tok := session(t)
	for until, want := range map[string]error{
		time.Now().Add(time.Hour).UTC().Format(time.RFC3339):  auth.ErrSessionEnded,
		time.Now().Add(-time.Hour).UTC().Format(time.RFC3339): nil,
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"id":"` + u.ID + `","aud":"authenticated","role":"authenticated","banned_until":"` + until + `"}`))
		}))
		c, err := auth.NewSessionChecker(auth.SessionConfig{AuthURL: srv.URL})
		require.NoError(t, err)
		err = c.CheckSession(context.Background(), u, tok)
		srv.Close()
		if want == nil {
			require.NoError(t, err, "banned until %s", until)
		} else {
			require.ErrorIs(t, err, want, "banned until %s", until)
		}
	}
}
