package auth_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

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
