// Package seal is the public half of Tokka's key custody: it seals a provider
// key to the syncer's public key and parses stored blobs, but it holds no
// private key and cannot open anything. The api links this package; only the
// syncer links package keyring, which derives the private key and opens blobs.
//
// # Formats
//
// A sealed key (v2) is stored as
//
//	v2:<kid>:<hex(encapsulated key)>:<hex(ciphertext+tag)>
//
// sealed with HPKE (RFC 9180, crypto/hpke) using KEM MLKEM768-X25519, KDF
// HKDF-SHA256 and AEAD AES-256-GCM, info "tokka/v2/provider-key", and the
// row's Binding as additional authenticated data. The seed's format (v1),
// "iv:authTag:ciphertext" with AES-256-GCM and a 16-byte IV, is parsed here
// so the syncer can import and rewrap it; nothing writes v1 any more.
//
// All hex is lowercase. A blob that does not have exactly one of these shapes
// is rejected with ErrCannotOpen, the same error a failed decryption returns.
package seal

import (
	"crypto/hpke"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// Info is the HPKE info string of v2 blobs. It is versioned so a future
// format can never be confused with this one.
const Info = "tokka/v2/provider-key"

// PublicKeyPrefix starts the text form of a PublicKey (ENCRYPTION_PUBLIC_KEY).
const PublicKeyPrefix = "tpk2:"

// Sizes fixed by the suite: MLKEM768-X25519 (X-Wing) public keys are the
// ML-KEM-768 encapsulation key followed by the X25519 point, encapsulations
// the ML-KEM-768 ciphertext followed by the ephemeral X25519 point.
const (
	// PublicKeySize is the length of a serialized public key in bytes.
	PublicKeySize = 1184 + 32
	// EncSize is the length of an encapsulated key in bytes.
	EncSize = 1088 + 32
	// TagSize is the AES-256-GCM authentication tag length in bytes.
	TagSize = 16
	// KIDSize is the length of a key id in hex characters.
	KIDSize = 16
	// V1IVSize is the seed format's GCM nonce length in bytes.
	V1IVSize = 16
	// MaxKeySize bounds a plaintext key in bytes; provider admin keys are a
	// few hundred bytes at most, and the bound keeps blobs (and the work an
	// oversized stored value can cause) small.
	MaxKeySize = 4096
)

// maxBlobLen bounds the text ParseBlob looks at, so a huge value is rejected
// before any hex is decoded.
const maxBlobLen = len("v2:") + KIDSize + 1 + 2*EncSize + 1 + 2*(MaxKeySize+TagSize)

// ErrCannotOpen is the one error for a blob that is malformed or does not open:
// bad shape, bad hex, wrong lengths, unknown key id, wrong key, tampering or a
// binding to another row. One value for all of them means a caller (or an
// attacker watching errors) cannot tell a bit flip from a truncation or a
// copied blob, and no part of the input ever reaches error text.
var ErrCannotOpen = errors.New("sealed key cannot be opened")

// ErrEmptyKey is returned by Seal for a nil or empty key.
var ErrEmptyKey = errors.New("seal: key is empty")

// ErrKeyTooLong is returned by Seal for a key longer than MaxKeySize.
var ErrKeyTooLong = errors.New("seal: key is too long")

// ErrIncompleteBinding is returned by Seal when the binding lacks a team id,
// connection id or provider.
var ErrIncompleteBinding = errors.New("seal: binding needs a team id, a connection id and a provider")

// ErrBadPublicKey is returned by ParsePublicKey and NewPublicKey for anything
// that is not a valid public key of this suite.
var ErrBadPublicKey = errors.New("seal: not a valid tokka public key (want " + PublicKeyPrefix + "<hex>, as printed by `syncer public-key`)")

// Suite returns the HPKE ciphersuite of v2 blobs (KEM, KDF, AEAD). It never
// fails; the values are public parameters, not secrets.
func Suite() (hpke.KEM, hpke.KDF, hpke.AEAD) {
	return hpke.MLKEM768X25519(), hpke.HKDFSHA256(), hpke.AES256GCM()
}

// PublicKey is the syncer's public key: anything holding it can seal a
// provider key that only the syncer can open. It is safe for concurrent use.
type PublicKey struct {
	pk  hpke.PublicKey
	raw []byte
	kid string
}

// NewPublicKey wraps a serialized MLKEM768-X25519 public key. It returns
// ErrBadPublicKey when raw has the wrong length or is not a valid key.
func NewPublicKey(raw []byte) (*PublicKey, error) {
	if len(raw) != PublicKeySize {
		return nil, ErrBadPublicKey
	}
	kem, _, _ := Suite()
	pk, err := kem.NewPublicKey(raw)
	if err != nil {
		return nil, ErrBadPublicKey
	}
	b := append([]byte(nil), raw...)
	return &PublicKey{pk: pk, raw: b, kid: KeyID(b)}, nil
}

// ParsePublicKey parses the text form produced by String:
// "tpk2:" followed by the lowercase hex of the serialized public key
// (2432 hex digits). Surrounding white space is ignored, since the value
// usually comes from an environment variable or a file. It returns
// ErrBadPublicKey for anything else; the input is never echoed.
func ParsePublicKey(text string) (*PublicKey, error) {
	text = strings.TrimSpace(text)
	h, ok := strings.CutPrefix(text, PublicKeyPrefix)
	if !ok || len(h) != 2*PublicKeySize || !isLowerHex(h) {
		return nil, ErrBadPublicKey
	}
	raw, err := hex.DecodeString(h)
	if err != nil {
		return nil, ErrBadPublicKey
	}
	return NewPublicKey(raw)
}

// String returns the text form "tpk2:<lowercase hex>", the value of
// ENCRYPTION_PUBLIC_KEY, or "" for a nil key. It never fails; the key is
// public, so printing it is harmless.
func (p *PublicKey) String() string {
	if p == nil {
		return ""
	}
	return PublicKeyPrefix + hex.EncodeToString(p.raw)
}

// Bytes returns a copy of the serialized public key. It never fails.
func (p *PublicKey) Bytes() []byte { return append([]byte(nil), p.raw...) }

// HPKE returns the key as a crypto/hpke public key. It never fails.
func (p *PublicKey) HPKE() hpke.PublicKey { return p.pk }

// KID returns the key id: the first 16 hex characters of SHA-256 of the
// serialized public key. Blobs carry it so the syncer can pick the right
// private key during a rotation. It never fails.
func (p *PublicKey) KID() string { return p.kid }

// Seal encrypts key to p, bound to the row b, and returns the v2 text
// "v2:<kid>:<hex(enc)>:<hex(ciphertext+tag)>". It returns ErrEmptyKey,
// ErrKeyTooLong or ErrIncompleteBinding for bad input, and a wrapped error
// (never containing key material) if HPKE fails.
func (p *PublicKey) Seal(key *secret.Key, b Binding) (string, error) {
	switch {
	case key.Len() == 0:
		return "", ErrEmptyKey
	case key.Len() > MaxKeySize:
		return "", ErrKeyTooLong
	case !b.Complete():
		return "", ErrIncompleteBinding
	}
	_, kdf, aead := Suite()
	// A fresh HPKE context per blob: the encapsulation is random, so sealing
	// the same key twice gives unrelated blobs.
	enc, sender, err := hpke.NewSender(p.pk, kdf, aead, []byte(Info))
	if err != nil {
		return "", fmt.Errorf("seal: hpke sender: %w", err)
	}
	ct, err := sender.Seal(b.AAD(), key.Bytes())
	if err != nil {
		return "", fmt.Errorf("seal: hpke seal: %w", err)
	}
	return Blob{Version: 2, KID: p.kid, Enc: enc, Ciphertext: ct}.String(), nil
}

// Binding names the row a blob belongs to. It is the AEAD's additional data:
// the syncer opens a blob with the binding of the row it read it from, so a
// blob copied into another connection, another user's row or under another
// provider fails to open instead of handing out someone else's key.
//
// Fields are compared byte for byte; use the canonical text of each id (the
// lowercase UUID form Postgres returns) on both sides.
type Binding struct {
	TeamID       string
	ConnectionID string
	Provider     tokka.Provider
}

// bindingLabel starts every AAD so it cannot collide with data another
// protocol (or a future version of this one) authenticates.
const bindingLabel = "tokka/v2/binding"

// Complete reports whether every field of b is set; Seal refuses, and the
// keyring will not open with, an incomplete binding. It never fails.
func (b Binding) Complete() bool {
	return b.TeamID != "" && b.ConnectionID != "" && b.Provider != ""
}

// AAD returns the additional authenticated data for b: the label
// "tokka/v2/binding" followed by each field (team id, connection id,
// provider) as a 4-byte big-endian length and its bytes. Length prefixes make
// the encoding injective, so no two different bindings share an AAD whatever
// characters the fields contain. It never fails.
func (b Binding) AAD() []byte {
	fields := [...]string{b.TeamID, b.ConnectionID, string(b.Provider)}
	n := len(bindingLabel)
	for _, f := range fields {
		n += 4 + len(f)
	}
	out := make([]byte, 0, n)
	out = append(out, bindingLabel...)
	for _, f := range fields {
		out = binary.BigEndian.AppendUint32(out, uint32(len(f)))
		out = append(out, f...)
	}
	return out
}

// Blob is a parsed sealed key. It contains only public data (ciphertext,
// nonce, key id); opening it needs package keyring.
type Blob struct {
	// Version is 1 for the seed format and 2 for HPKE blobs.
	Version int
	// KID is the key id a v2 blob was sealed to; empty for v1, which has none.
	KID string
	// Enc is the HPKE encapsulated key (v2 only), EncSize bytes.
	Enc []byte
	// IV is the AES-GCM nonce (v1 only), V1IVSize bytes.
	IV []byte
	// Tag is the AES-GCM tag (v1 only), TagSize bytes.
	Tag []byte
	// Ciphertext is, for v2, the HPKE ciphertext with its tag appended; for
	// v1, the AES-GCM ciphertext without the tag.
	Ciphertext []byte
}

// ParseBlob parses a stored blob of either version without any secret. Every
// malformed input returns ErrCannotOpen: v2 needs "v2:", a 16-digit kid, an
// encapsulation of exactly EncSize bytes and a ciphertext of at least TagSize
// bytes; v1 needs a 16-byte IV, a 16-byte tag and a non-empty ciphertext; all
// hex lowercase, nothing else in the string. An accepted blob's String is the
// input itself.
func ParseBlob(s string) (Blob, error) {
	if len(s) > maxBlobLen {
		return Blob{}, ErrCannotOpen
	}
	if rest, ok := strings.CutPrefix(s, "v2:"); ok {
		return parseV2(rest)
	}
	return parseV1(s)
}

func parseV2(s string) (Blob, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return Blob{}, ErrCannotOpen
	}
	kid, encHex, ctHex := parts[0], parts[1], parts[2]
	if len(kid) != KIDSize || !isLowerHex(kid) {
		return Blob{}, ErrCannotOpen
	}
	enc, ok := decodeHex(encHex)
	if !ok || len(enc) != EncSize {
		return Blob{}, ErrCannotOpen
	}
	ct, ok := decodeHex(ctHex)
	if !ok || len(ct) < TagSize || len(ct) > MaxKeySize+TagSize {
		return Blob{}, ErrCannotOpen
	}
	return Blob{Version: 2, KID: kid, Enc: enc, Ciphertext: ct}, nil
}

func parseV1(s string) (Blob, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return Blob{}, ErrCannotOpen
	}
	iv, ok := decodeHex(parts[0])
	if !ok || len(iv) != V1IVSize {
		return Blob{}, ErrCannotOpen
	}
	tag, ok := decodeHex(parts[1])
	if !ok || len(tag) != TagSize {
		return Blob{}, ErrCannotOpen
	}
	ct, ok := decodeHex(parts[2])
	if !ok || len(ct) == 0 || len(ct) > MaxKeySize {
		return Blob{}, ErrCannotOpen
	}
	return Blob{Version: 1, IV: iv, Tag: tag, Ciphertext: ct}, nil
}

// String serializes b in its version's stored form; for a blob from
// ParseBlob it returns exactly the parsed text. A Blob with an unknown
// version serializes to "".
func (b Blob) String() string {
	switch b.Version {
	case 1:
		return hex.EncodeToString(b.IV) + ":" + hex.EncodeToString(b.Tag) + ":" + hex.EncodeToString(b.Ciphertext)
	case 2:
		return "v2:" + b.KID + ":" + hex.EncodeToString(b.Enc) + ":" + hex.EncodeToString(b.Ciphertext)
	}
	return ""
}

// decodeHex decodes lowercase hex only. Upper case is refused so that every
// accepted blob has exactly one spelling (and re-serializes to itself).
func decodeHex(s string) ([]byte, bool) {
	if !isLowerHex(s) {
		return nil, false
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, false
	}
	return b, true
}

func isLowerHex(s string) bool {
	if len(s)%2 != 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
