package authtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/golang-jwt/jwt/v5"
)

// Key is an asymmetric signing key of the kind a Supabase project uses
// (ES256 recommended, RS256), identified by its kid.
type Key struct {
	KID     string
	Alg     string // "ES256" or "RS256"
	private crypto.Signer
}

// NewES256Key returns a fresh P-256 key; it fails only if the system's
// random source does.
func NewES256Key(kid string) (*Key, error) {
	pk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("authtest: generate ES256 key: %w", err)
	}
	return &Key{KID: kid, Alg: jwt.SigningMethodES256.Alg(), private: pk}, nil
}

// NewRS256Key returns a fresh RSA-2048 key; it fails only if the system's
// random source does.
func NewRS256Key(kid string) (*Key, error) {
	pk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("authtest: generate RS256 key: %w", err)
	}
	return &Key{KID: kid, Alg: jwt.SigningMethodRS256.Alg(), private: pk}, nil
}

// Public returns the key's public half (*ecdsa.PublicKey or *rsa.PublicKey).
func (k *Key) Public() crypto.PublicKey { return k.private.Public() }

// Private returns the private key, for tests that forge tokens by hand.
func (k *Key) Private() crypto.Signer { return k.private }

// SignClaims signs any claim set with the key, with alg, kid and typ headers
// as the Auth server writes them. It fails only if signing fails.
func (k *Key) SignClaims(claims jwt.Claims) (string, error) {
	method := jwt.GetSigningMethod(k.Alg)
	if method == nil {
		return "", fmt.Errorf("authtest: unknown alg %q", k.Alg)
	}
	tok := jwt.NewWithClaims(method, claims)
	tok.Header["kid"] = k.KID
	return tok.SignedString(k.private)
}

// JWK returns the public JWK the Auth server publishes for the key:
// use "sig", key_ops ["verify"], with kid and alg.
func (k *Key) JWK() map[string]any {
	m := map[string]any{"kid": k.KID, "alg": k.Alg, "use": "sig", "key_ops": []string{"verify"}}
	b64 := base64.RawURLEncoding.EncodeToString
	switch pub := k.Public().(type) {
	case *ecdsa.PublicKey:
		raw, _ := pub.Bytes() // 0x04 || X || Y, 32 bytes each for P-256
		m["kty"], m["crv"], m["x"], m["y"] = "EC", "P-256", b64(raw[1:33]), b64(raw[33:65])
	case *rsa.PublicKey:
		m["kty"], m["n"], m["e"] = "RSA", b64(pub.N.Bytes()), b64(big.NewInt(int64(pub.E)).Bytes())
	}
	return m
}

// JWKS returns a JWK Set document listing the keys' public halves.
func JWKS(keys ...*Key) []byte {
	doc := struct {
		Keys []map[string]any `json:"keys"`
	}{Keys: []map[string]any{}}
	for _, k := range keys {
		doc.Keys = append(doc.Keys, k.JWK())
	}
	b, _ := json.Marshal(doc)
	return b
}

// KeySet is an http.Handler serving a JWKS like the Auth server's
// /.well-known/jwks.json. Keys can be swapped while it serves (rotation,
// revocation), and it counts the requests it answers.
type KeySet struct {
	mu       sync.Mutex
	doc      []byte
	requests atomic.Int64
}

// NewKeySet returns a KeySet publishing keys.
func NewKeySet(keys ...*Key) *KeySet {
	s := &KeySet{}
	s.Set(keys...)
	return s
}

// Set replaces the published keys.
func (s *KeySet) Set(keys ...*Key) { s.SetRaw(JWKS(keys...)) }

// SetRaw replaces the published document with raw bytes, for tests that
// serve hostile or malformed key sets.
func (s *KeySet) SetRaw(doc []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.doc = doc
}

// Requests returns how many times the key set was fetched.
func (s *KeySet) Requests() int64 { return s.requests.Load() }

// ServeHTTP answers like the Auth server: JSON, cacheable for 10 minutes.
func (s *KeySet) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	s.requests.Add(1)
	s.mu.Lock()
	doc := s.doc
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=600")
	_, _ = w.Write(doc)
}
