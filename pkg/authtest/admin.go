package authtest

import (
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// ServiceKey describes a service_role key shaped exactly like the ones
// Supabase issues (shared reference supabase-auth.md, last section): role
// service_role, iss, iat and exp, and no sub or session_id. A sub would make
// GoTrue look that user up before anything else and refuse the key when no
// such user exists.
type ServiceKey struct {
	Issuer   string // default "supabase", what Supabase's own service keys carry
	IssuedAt time.Time
	TTL      time.Duration // default 10 years, like a project's keys
}

// Claims returns the service key's claim set.
func (k ServiceKey) Claims() jwt.MapClaims {
	if k.Issuer == "" {
		k.Issuer = "supabase"
	}
	if k.IssuedAt.IsZero() {
		k.IssuedAt = time.Now()
	}
	if k.TTL == 0 {
		k.TTL = 10 * 365 * 24 * time.Hour
	}
	return jwt.MapClaims{
		"iss":  k.Issuer,
		"role": "service_role",
		"iat":  k.IssuedAt.Unix(),
		"exp":  k.IssuedAt.Add(k.TTL).Unix(),
	}
}

// HS256 signs the service key with the project's JWT secret, as a
// self-hosted GoTrue expects; it fails only if signing fails.
func (k ServiceKey) HS256(secret []byte) (string, error) {
	return jwt.NewWithClaims(jwt.SigningMethodHS256, k.Claims()).SignedString(secret)
}

// adminDirectory is the users the fake admin API knows, and the ids it was
// asked for.
type adminDirectory struct {
	mu      sync.Mutex
	emails  map[string]string
	created map[string]time.Time
	asked   []string
}

// AddUser makes a user known to the admin API (GET /admin/users/{id}) with
// an email address ("" for a user without one, e.g. a phone sign-up).
func (s *AuthServer) AddUser(id, email string) {
	d := &s.admin
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.emails == nil {
		d.emails, d.created = map[string]string{}, map[string]time.Time{}
	}
	d.emails[strings.ToLower(id)] = email
	d.created[strings.ToLower(id)] = time.Now().UTC()
}

// AdminLookups returns the user ids the admin API was asked for with an
// accepted service key, in order.
func (s *AuthServer) AdminLookups() []string {
	s.admin.mu.Lock()
	defer s.admin.mu.Unlock()
	return slices.Clone(s.admin.asked)
}

// serveAdmin answers GET …/admin/users/{id} the way GoTrue does (checked
// against a real server, see the shared reference):
//
//   - 401 no_authorization without a bearer token, 403 bad_jwt when it does
//     not verify with the project secret;
//   - 403 user_not_found ("User from sub claim in JWT does not exist") when
//     the token carries a sub that is not a known user: GoTrue loads the
//     token's user before it looks at the role, service keys included;
//   - 403 not_admin unless the role is service_role (or supabase_admin);
//   - 404 user_not_found for an unknown or deleted id, 200 with the user
//     otherwise.
func (s *AuthServer) serveAdmin(w http.ResponseWriter, r *http.Request) {
	_, rawID, _ := strings.Cut(r.URL.Path, "/admin/users/")
	if r.Method != http.MethodGet || rawID == "" || strings.Contains(rawID, "/") {
		writeJSON(w, http.StatusNotFound, map[string]any{"code": 404, "error_code": "not_found", "msg": "Not Found"})
		return
	}
	claims, ok := s.bearerClaims(w, r)
	if !ok {
		return
	}
	if sub, _ := claims["sub"].(string); sub != "" {
		if _, known := s.adminUser(sub); !known {
			writeJSON(w, http.StatusForbidden, map[string]any{"code": 403, "error_code": "user_not_found",
				"msg": "User from sub claim in JWT does not exist"})
			return
		}
	}
	if role, _ := claims["role"].(string); role != "service_role" && role != "supabase_admin" {
		writeJSON(w, http.StatusForbidden, map[string]any{"code": 403, "error_code": "not_admin", "msg": "User not allowed"})
		return
	}
	id, err := uuid.Parse(rawID)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"code": 400, "error_code": "validation_failed",
			"msg": "user_id must be an UUID"})
		return
	}
	s.admin.mu.Lock()
	s.admin.asked = append(s.admin.asked, id.String())
	s.admin.mu.Unlock()
	email, known := s.adminUser(id.String())
	if !known {
		writeJSON(w, http.StatusNotFound, map[string]any{"code": 404, "error_code": "user_not_found", "msg": "User not found"})
		return
	}
	s.admin.mu.Lock()
	created := s.admin.created[id.String()].Format(time.RFC3339Nano)
	s.admin.mu.Unlock()
	var confirmed any
	if email != "" {
		confirmed = created
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"id": id.String(), "aud": "authenticated", "role": "authenticated", "email": email, "phone": "",
		"email_confirmed_at": confirmed, "confirmed_at": confirmed, "last_sign_in_at": created,
		"app_metadata":  map[string]any{"provider": "email", "providers": []string{"email"}},
		"user_metadata": map[string]any{"email": email, "email_verified": email != "", "phone_verified": false, "sub": id.String()},
		"identities":    []any{}, "created_at": created, "updated_at": created, "is_anonymous": false,
	})
}

// adminUser returns a known, not deleted user's address.
func (s *AuthServer) adminUser(id string) (string, bool) {
	id = strings.ToLower(id)
	s.mu.Lock()
	deleted := s.deleted[id]
	s.mu.Unlock()
	s.admin.mu.Lock()
	defer s.admin.mu.Unlock()
	email, known := s.admin.emails[id]
	return email, known && !deleted
}
