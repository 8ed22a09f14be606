// Package authtest mints access tokens with exactly the claim set a Supabase
// Auth server puts in them (see shared reference supabase-auth.md §1), for
// tests and for the local development stack, and serves the public side of
// asymmetric signing keys as a JWKS the way the Auth server does. It is never
// used to verify.
package authtest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// Token describes a user's access token; zero fields take realistic values.
type Token struct {
	Subject   string // user id; default a new UUID
	Email     string
	Issuer    string // omitted when empty, as the Auth server does without GOTRUE_JWT_ISSUER
	Role      string // default "authenticated"
	Audience  string // default "authenticated"
	SessionID string // default a new UUID
	IssuedAt  time.Time
	TTL       time.Duration // default 1h (GOTRUE_JWT_EXP)
	// Anonymous marks a Supabase anonymous sign-in (is_anonymous: true).
	Anonymous bool
	// EmailUnverified sets user_metadata.email_verified to false, as for a
	// user who has not yet confirmed their address.
	EmailUnverified bool
}

// Claims returns the Supabase claim set for t.
func (t Token) Claims() jwt.MapClaims {
	if t.Subject == "" {
		t.Subject = uuid.NewString()
	}
	if t.Role == "" {
		t.Role = "authenticated"
	}
	if t.Audience == "" {
		t.Audience = "authenticated"
	}
	if t.SessionID == "" {
		t.SessionID = uuid.NewString()
	}
	if t.IssuedAt.IsZero() {
		t.IssuedAt = time.Now()
	}
	if t.TTL == 0 {
		t.TTL = time.Hour
	}
	iat := t.IssuedAt.Unix()
	c := jwt.MapClaims{
		"sub":   t.Subject,
		"aud":   t.Audience,
		"exp":   t.IssuedAt.Add(t.TTL).Unix(),
		"iat":   iat,
		"email": t.Email,
		"phone": "",
		"app_metadata": map[string]any{
			"provider": "email", "providers": []string{"email"},
		},
		"user_metadata": map[string]any{
			"email": t.Email, "email_verified": !t.EmailUnverified, "phone_verified": false, "sub": t.Subject,
		},
		"role":         t.Role,
		"aal":          "aal1",
		"amr":          []map[string]any{{"method": "password", "timestamp": iat}},
		"session_id":   t.SessionID,
		"is_anonymous": t.Anonymous,
	}
	if t.Issuer != "" {
		c["iss"] = t.Issuer
	}
	return c
}

// HS256 signs t with the project's legacy JWT secret, without a kid header,
// as the Auth server does by default. It fails only if signing fails.
func (t Token) HS256(secret []byte) (string, error) {
	return jwt.NewWithClaims(jwt.SigningMethodHS256, t.Claims()).SignedString(secret)
}

// HS256Raw signs payload, a JSON text taken byte for byte, under the
// header the Auth server writes for HS256 ({"alg":"HS256","typ":"JWT"}).
// Tests use it for payloads no claim map can express, such as a claim named
// twice. It never fails.
func HS256Raw(payload string, secret []byte) string {
	enc := base64.RawURLEncoding.EncodeToString
	signingInput := enc([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc([]byte(payload))
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(signingInput))
	return signingInput + "." + enc(m.Sum(nil))
}

// Sign signs t with an asymmetric signing key, with the key's kid in the
// header, as the Auth server does when GOTRUE_JWT_KEYS is configured. It
// fails only if signing fails.
func (t Token) Sign(k *Key) (string, error) {
	return k.SignClaims(t.Claims())
}
