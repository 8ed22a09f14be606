package secret

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
)

// MinFingerprintSecretLength is the shortest KEY_FINGERPRINT_SECRET accepted,
// in bytes: HMAC-SHA256's own key size.
const MinFingerprintSecretLength = 32

// Fingerprinter computes keyed digests (HMAC-SHA256) of things Tokka must
// recognise again without keeping them: a pasted key, a request body that
// may hold one. Without its secret a stored digest is useless, even to test
// a guessed key (the idea of Vault's audit-log hashing). The secret is held
// like a Key: never printed, and Wipe clears it.
type Fingerprinter struct {
	secret *Key
}

// NewFingerprinter copies secret into a Fingerprinter. It fails when secret
// is shorter than MinFingerprintSecretLength bytes; the error never contains
// the secret.
func NewFingerprinter(secret []byte) (*Fingerprinter, error) {
	if len(secret) < MinFingerprintSecretLength {
		return nil, fmt.Errorf("the fingerprint secret must be at least %d bytes, got %d", MinFingerprintSecretLength, len(secret))
	}
	return &Fingerprinter{secret: New(secret)}, nil
}

// Labels keep the digests of different purposes apart.
const (
	keyFingerprintLabel = "tokka/key-fingerprint/v1"
)

// Key returns the fingerprint of a provider key as held by one user: HMAC
// over a label, the user id, the provider and the key. The user id is part of
// it, so the same key in two accounts yields two unrelated fingerprints and
// the stored values link no accounts. It never fails.
func (f *Fingerprinter) Key(userID, provider string, k *Key) []byte {
	return f.Digest(keyFingerprintLabel, []byte(userID), []byte(provider), k.Bytes())
}

// Digest returns HMAC over label and each part, every one written as a
// 4-byte big-endian length and its bytes, so distinct inputs never collide
// by concatenation. It never fails.
func (f *Fingerprinter) Digest(label string, parts ...[]byte) []byte {
	m := hmac.New(sha256.New, f.secret.Bytes())
	field(m, []byte(label))
	for _, p := range parts {
		field(m, p)
	}
	return m.Sum(nil)
}

func field(h hash.Hash, b []byte) {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b)))
	h.Write(n[:])
	h.Write(b)
}

// String implements fmt.Stringer with a redaction, so a Fingerprinter in a
// log line or an error never shows its secret.
func (Fingerprinter) String() string { return redacted }

// GoString implements fmt.GoStringer (the %#v verb) with a redaction.
func (Fingerprinter) GoString() string { return redacted }
