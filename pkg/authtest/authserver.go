package authtest

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// AuthServer answers GET /user the way the Supabase Auth server does, so
// tests can check live sessions without the real server (which cannot be
// installed here; see the shared reference, §4). It verifies HS256 tokens
// with the project secret, and afterwards answers:
//
//   - 401 {"message":"No API key found in request"} without the apikey
//     header, when APIKey is set (the Supabase gateway's answer);
//   - 403 session_not_found once the token's session was signed out;
//   - 403 user_not_found once the token's user was deleted;
//   - 200 with the user as JSON otherwise: the token's email, confirmed
//     (email_confirmed_at set) unless Unconfirm named the user, and the
//     token's is_anonymous.
//
// It also answers the admin API's GET /admin/users/{id} (see serveAdmin and
// AddUser). Paths may carry a prefix (/auth/v1/user behind the gateway).
type AuthServer struct {
	// APIKey, when set, is required in the apikey header.
	APIKey string

	secret   []byte
	mu       sync.Mutex
	ended    map[string]bool // session ids signed out
	deleted  map[string]bool // user ids deleted
	pending  map[string]bool // user ids whose email is not confirmed
	down     atomic.Bool
	requests atomic.Int64
	admin    adminDirectory // the admin API's users (admin.go)
}

// NewAuthServer returns an AuthServer that trusts tokens signed with secret.
func NewAuthServer(secret []byte) *AuthServer {
	return &AuthServer{secret: secret, ended: map[string]bool{}, deleted: map[string]bool{}, pending: map[string]bool{}}
}

// Unconfirm makes the server report the user's email as not confirmed
// (email_confirmed_at null), as for a sign-up that never clicked the link.
func (s *AuthServer) Unconfirm(userID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending[userID] = true
}

// Confirm undoes Unconfirm, as the user's click on the link would.
func (s *AuthServer) Confirm(userID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.pending, userID)
}

// Logout ends a session, as POST /logout does.
func (s *AuthServer) Logout(sessionID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ended[sessionID] = true
}

// DeleteUser removes a user, as the admin API does.
func (s *AuthServer) DeleteUser(userID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deleted[userID] = true
}

// SetDown makes the server answer 503 to everything (true) or recover.
func (s *AuthServer) SetDown(down bool) { s.down.Store(down) }

// Requests returns how many requests the server received.
func (s *AuthServer) Requests() int64 { return s.requests.Load() }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// ServeHTTP implements GET …/user and the admin API.
func (s *AuthServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	if s.down.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"message": "upstream unavailable"})
		return
	}
	if strings.Contains(r.URL.Path, "/admin/users/") {
		s.serveAdmin(w, r)
		return
	}
	if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/user") {
		writeJSON(w, http.StatusNotFound, map[string]any{"code": 404, "error_code": "not_found", "msg": "Not Found"})
		return
	}
	claims, ok := s.bearerClaims(w, r)
	if !ok {
		return
	}
	sub, _ := claims["sub"].(string)
	sid, _ := claims["session_id"].(string)
	s.mu.Lock()
	ended, deleted, pending := s.ended[sid], s.deleted[sub], s.pending[sub]
	s.mu.Unlock()
	switch {
	case deleted:
		writeJSON(w, http.StatusForbidden, map[string]any{"code": 403, "error_code": "user_not_found",
			"msg": "User from sub claim in JWT does not exist"})
		return
	case ended:
		writeJSON(w, http.StatusForbidden, map[string]any{"code": 403, "error_code": "session_not_found",
			"msg": "Session from session_id claim in JWT does not exist"})
		return
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	email, _ := claims["email"].(string)
	anonymous, _ := claims["is_anonymous"].(bool)
	var confirmedAt any = now
	if pending {
		confirmedAt = nil
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"id": sub, "aud": "authenticated", "role": "authenticated", "email": email, "phone": "",
		"email_confirmed_at": confirmedAt, "confirmed_at": confirmedAt, "last_sign_in_at": now,
		"app_metadata":  map[string]any{"provider": "email", "providers": []string{"email"}},
		"user_metadata": map[string]any{"email": email, "email_verified": !pending, "phone_verified": false, "sub": sub},
		"identities":    []any{}, "created_at": now, "updated_at": now, "is_anonymous": anonymous,
	})
}

// bearerClaims checks a request the way GoTrue does before any endpoint
// looks at it: the gateway's apikey (when APIKey is set), then a Bearer
// token signed with the project secret. On failure it has written GoTrue's
// answer and returns false.
func (s *AuthServer) bearerClaims(w http.ResponseWriter, r *http.Request) (jwt.MapClaims, bool) {
	if s.APIKey != "" && r.Header.Get("apikey") != s.APIKey {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"message": "No API key found in request"})
		return nil, false
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"code": 401, "error_code": "no_authorization",
			"msg": "This endpoint requires a valid Bearer token"})
		return nil, false
	}
	claims := jwt.MapClaims{}
	if _, err := jwt.ParseWithClaims(token, claims, func(*jwt.Token) (any, error) { return s.secret, nil },
		jwt.WithValidMethods([]string{"HS256"})); err != nil {
		writeJSON(w, http.StatusForbidden, map[string]any{"code": 403, "error_code": "bad_jwt",
			"msg": "invalid JWT: unable to parse or verify signature"})
		return nil, false
	}
	return claims, true
}
