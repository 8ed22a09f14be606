package auth_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/auth"
	"github.com/tokka-dev/tokka/pkg/authtest"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

type sessionBundle struct {
	fake    *authtest.AuthServer
	checker *auth.SessionChecker
	url     string
}

func setupSessions(t *testing.T) *sessionBundle {
	t.Helper()
	fake := authtest.NewAuthServer([]byte(secret))
	fake.APIKey = "anon-key"
	mux := http.NewServeMux()
	mux.Handle("/auth/v1/", fake)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	c, err := auth.NewSessionChecker(auth.SessionConfig{AuthURL: srv.URL + "/auth/v1", AnonKey: "anon-key", Timeout: 2 * time.Second})
	require.NoError(t, err)
	return &sessionBundle{fake: fake, checker: c, url: srv.URL}
}

func session(t *testing.T) (tokka.User, string, string) {
	t.Helper()
	u := tokka.User{ID: uuid.NewString()}
	sid := uuid.NewString()
	return u, sid, hs(t, authtest.Token{Subject: u.ID, SessionID: sid}, secret)
}

func TestSessionCheckFollowsTheAuthServer(t *testing.T) {
	t.Parallel()
	b := setupSessions(t)
	ctx := context.Background()
	u, sid, tok := session(t)
	require.NoError(t, b.checker.CheckSession(ctx, u, tok))

	b.fake.Logout(sid)
	require.ErrorIs(t, b.checker.CheckSession(ctx, u, tok), auth.ErrSessionEnded, "signed out: the still-valid JWT must not pass")

	u2, _, tok2 := session(t)
	require.NoError(t, b.checker.CheckSession(ctx, u2, tok2), "other sessions are unaffected")
	require.ErrorIs(t, b.checker.CheckSession(ctx, tokka.User{ID: uuid.NewString()}, tok2), auth.ErrSessionEnded,
		"the Auth server's user must be the token's user")
	b.fake.DeleteUser(u2.ID)
	require.ErrorIs(t, b.checker.CheckSession(ctx, u2, tok2), auth.ErrSessionEnded)
	require.ErrorIs(t, b.checker.CheckSession(ctx, u2, "not-a-token"), auth.ErrSessionEnded)
}

func TestSessionCheckFailsClosed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u, _, tok := session(t)

	b := setupSessions(t)
	b.fake.SetDown(true)
	require.ErrorIs(t, b.checker.CheckSession(ctx, u, tok), auth.ErrSessionUnknown, "503 from the Auth server")

	for name, h := range map[string]http.HandlerFunc{
		"429":     func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTooManyRequests) },
		"500":     func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) },
		"garbage": func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("<html>")) },
		"redirect": func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://127.0.0.1:1/", http.StatusFound)
		},
		"slow": func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
	} {
		srv := httptest.NewServer(h)
		c, err := auth.NewSessionChecker(auth.SessionConfig{AuthURL: srv.URL, Timeout: 300 * time.Millisecond})
		require.NoError(t, err)
		require.ErrorIs(t, c.CheckSession(ctx, u, tok), auth.ErrSessionUnknown, name)
		srv.Close()
	}

	// Nobody listening.
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	c, err := auth.NewSessionChecker(auth.SessionConfig{AuthURL: srv.URL})
	require.NoError(t, err)
	require.ErrorIs(t, c.CheckSession(ctx, u, tok), auth.ErrSessionUnknown)

	_, err = auth.NewSessionChecker(auth.SessionConfig{AuthURL: "ftp://example.com"})
	require.Error(t, err)
}

func TestSessionCheckSendsTheAnonKey(t *testing.T) {
	t.Parallel()
	b := setupSessions(t)
	u, _, tok := session(t)
	c, err := auth.NewSessionChecker(auth.SessionConfig{AuthURL: b.url + "/auth/v1", AnonKey: "wrong"})
	require.NoError(t, err)
	// The gateway's 401 for a wrong apikey is a misconfiguration, not a
	// sign-out: refused (closed) as "cannot confirm", not let through.
	require.ErrorIs(t, c.CheckSession(context.Background(), u, tok), auth.ErrSessionUnknown)
	require.NoError(t, b.checker.CheckSession(context.Background(), u, tok))
}
