// Package keyring is the private half of Tokka's key custody: it derives the
// syncer's HPKE private keys from ENCRYPTION_KEY (and retired keys) and opens
// sealed provider keys. Only the syncer may link it; the api seals with
// package seal alone, and a test (split_test.go) fails if cmd/api ever
// depends on this package.
package keyring

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hpke"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"

	"github.com/tokka-dev/tokka/pkg/seal"
	"github.com/tokka-dev/tokka/pkg/secret"
)

// MinKeyLen is the shortest ENCRYPTION_KEY (or retired key) accepted, in bytes.
const MinKeyLen = 32

// ErrKeyTooShort is wrapped by New when a configured key has fewer than
// MinKeyLen bytes. The error text names which key, never its value.
var ErrKeyTooShort = errors.New("an encryption key must be at least 32 bytes")

// Keyring holds the private keys derived from the current ENCRYPTION_KEY and
// from each retired key. It is immutable after New and safe for concurrent
// use. It prints as its key ids only.
type Keyring struct {
	current *entry
	retired []*entry
	byKID   map[string]*entry
	// opened, when set, is shown every key Open hands out. It is nil except
	// in this package's own tests, which use it to check that callers such
	// as Rewrap wipe what they open; it cannot be set from outside.
	opened func(*secret.Key)
}

// entry is everything derived from one configured key.
type entry struct {
	kid  string
	priv hpke.PrivateKey
	pub  *seal.PublicKey
	// v1 opens seed-format blobs: AES-256-GCM keyed with SHA-256(key), 16-byte
	// nonce, as the seed wrote them.
	v1 cipher.AEAD
}

// New derives a Keyring from current (ENCRYPTION_KEY, used to seal and open)
// and retired (decrypt-only keys from before a rotation). Each key is taken
// byte for byte, as the seed did. It returns an error wrapping ErrKeyTooShort
// for any key shorter than MinKeyLen bytes, and a wrapped error if derivation
// fails; no error contains key material. A retired key equal to the current
// key or to an earlier retired key is ignored.
func New(current string, retired []string) (*Keyring, error) {
	if len(current) < MinKeyLen {
		return nil, fmt.Errorf("keyring: ENCRYPTION_KEY is %d bytes: %w", len(current), ErrKeyTooShort)
	}
	cur, err := derive(current)
	if err != nil {
		return nil, fmt.Errorf("keyring: ENCRYPTION_KEY: %w", err)
	}
	k := &Keyring{current: cur, byKID: map[string]*entry{cur.kid: cur}}
	for i, r := range retired {
		if len(r) < MinKeyLen {
			return nil, fmt.Errorf("keyring: retired key %d of %d is %d bytes: %w", i+1, len(retired), len(r), ErrKeyTooShort)
		}
		e, err := derive(r)
		if err != nil {
			return nil, fmt.Errorf("keyring: retired key %d of %d: %w", i+1, len(retired), err)
		}
		if _, dup := k.byKID[e.kid]; dup {
			continue
		}
		k.retired = append(k.retired, e)
		k.byKID[e.kid] = e
	}
	return k, nil
}

// derive turns one configured key into its HPKE key pair and v1 cipher. The
// same SHA-256 serves as the HPKE ikm (which DeriveKeyPair feeds through a
// labelled HKDF, so the KEM never sees it raw) and as the seed's AES key,
// which compatibility with existing v1 blobs dictates.
func derive(key string) (*entry, error) {
	sum := sha256.Sum256([]byte(key))
	defer clear(sum[:])
	kem, _, _ := seal.Suite()
	priv, err := kem.DeriveKeyPair(sum[:])
	if err != nil {
		return nil, fmt.Errorf("derive key pair: %w", err)
	}
	pub, err := seal.NewPublicKey(priv.PublicKey().Bytes())
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	block, err := aes.NewCipher(sum[:])
	if err != nil {
		return nil, fmt.Errorf("v1 cipher: %w", err)
	}
	gcm, err := cipher.NewGCMWithNonceSize(block, seal.V1IVSize)
	if err != nil {
		return nil, fmt.Errorf("v1 cipher: %w", err)
	}
	return &entry{kid: pub.KID(), priv: priv, pub: pub, v1: gcm}, nil
}

// PublicKey returns the current public key, the one new blobs are sealed to
// and whose String is ENCRYPTION_PUBLIC_KEY for the api. It never fails.
func (k *Keyring) PublicKey() *seal.PublicKey { return k.current.pub }

// KIDs returns the key ids this keyring can open, current first, then the
// retired ones in configuration order. It never fails.
func (k *Keyring) KIDs() []string {
	out := make([]string, 0, 1+len(k.retired))
	out = append(out, k.current.kid)
	for _, e := range k.retired {
		out = append(out, e.kid)
	}
	return out
}

// Seal seals key to the current public key, like PublicKey().Seal, with the
// same errors.
func (k *Keyring) Seal(key *secret.Key, b seal.Binding) (string, error) {
	return k.current.pub.Seal(key, b)
}

// Open decrypts blob, which must have been sealed for the row b, into a
// secret.Key the caller must Wipe when done. v2 blobs are opened with the
// private key their kid names; v1 blobs (which carry no kid and no binding)
// are tried against the current key, then each retired key. Every failure —
// malformed blob, incomplete binding, unknown kid, wrong key, tampering, a
// binding to another row — returns exactly seal.ErrCannotOpen, so callers and
// logs learn nothing about which part was wrong.
func (k *Keyring) Open(blob string, b seal.Binding) (*secret.Key, error) {
	p, err := seal.ParseBlob(blob)
	if err != nil {
		return nil, seal.ErrCannotOpen
	}
	return k.OpenBlob(p, b)
}

// OpenBlob is Open for a blob its caller has already parsed (the syncer
// parses each blob once, for its audit label, and opens the parsed form),
// with Open's errors.
func (k *Keyring) OpenBlob(p seal.Blob, b seal.Binding) (*secret.Key, error) {
	key, err := k.open(p, b)
	if err != nil {
		return nil, err
	}
	if k.opened != nil {
		k.opened(key)
	}
	return key, nil
}

func (k *Keyring) open(p seal.Blob, b seal.Binding) (*secret.Key, error) {
	if !b.Complete() {
		return nil, seal.ErrCannotOpen
	}
	switch p.Version {
	case 2:
		return k.openV2(p, b)
	case 1:
		return k.openV1(p)
	}
	return nil, seal.ErrCannotOpen
}

func (k *Keyring) openV2(p seal.Blob, b seal.Binding) (*secret.Key, error) {
	e, ok := k.byKID[p.KID]
	if !ok {
		return nil, seal.ErrCannotOpen
	}
	_, kdf, aead := seal.Suite()
	r, err := hpke.NewRecipient(p.Enc, e.priv, kdf, aead, []byte(seal.Info))
	if err != nil {
		return nil, seal.ErrCannotOpen
	}
	pt, err := r.Open(b.AAD(), p.Ciphertext)
	if err != nil {
		return nil, seal.ErrCannotOpen
	}
	return own(pt), nil
}

func (k *Keyring) openV1(p seal.Blob) (*secret.Key, error) {
	// Go's GCM wants the tag appended to the ciphertext.
	sealed := make([]byte, 0, len(p.Ciphertext)+len(p.Tag))
	sealed = append(append(sealed, p.Ciphertext...), p.Tag...)
	// The seed format has no key id, so each configured key gets a try; GCM
	// authentication makes a wrong key fail rather than yield garbage.
	for _, e := range k.entries() {
		pt, err := e.v1.Open(nil, p.IV, sealed, nil)
		if err == nil {
			return own(pt), nil
		}
	}
	return nil, seal.ErrCannotOpen
}

// own moves a decrypted buffer into a secret.Key and zeroes the original, so
// the only live copy of the plaintext is the one Wipe will clear.
func own(pt []byte) *secret.Key {
	key := secret.New(pt)
	clear(pt)
	return key
}

func (k *Keyring) entries() []*entry {
	return append([]*entry{k.current}, k.retired...)
}

// NeedsRewrap reports whether blob is anything but a well-formed v2 blob
// under the current key: a v1 blob, a v2 blob under a retired or unknown kid,
// or a malformed value. Malformed values count so that a rewrap pass calls
// Rewrap on them and gets seal.ErrCannotOpen (and can flag the connection)
// instead of silently skipping them. It decrypts nothing and never fails.
func (k *Keyring) NeedsRewrap(blob string) bool {
	p, err := seal.ParseBlob(blob)
	if err != nil {
		return true
	}
	return p.Version != 2 || p.KID != k.current.kid
}

// Rewrap opens blob for the row b and, unless it is already a v2 blob under
// the current key, seals it again to the current key; it returns the blob to
// store (the input itself when nothing changed, which makes it idempotent).
// It returns seal.ErrCannotOpen when the blob does not open, and a wrapped
// seal error if re-sealing fails. The plaintext is wiped before it returns.
func (k *Keyring) Rewrap(blob string, b seal.Binding) (string, error) {
	key, err := k.Open(blob, b)
	if err != nil {
		return "", err
	}
	defer key.Wipe()
	if !k.NeedsRewrap(blob) {
		return blob, nil
	}
	out, err := k.Seal(key, b)
	if err != nil {
		return "", fmt.Errorf("keyring: rewrap: %w", err)
	}
	return out, nil
}

// String describes the keyring by its key ids; private keys are never
// printed.
func (k *Keyring) String() string {
	if k == nil {
		return "keyring(nil)"
	}
	return "keyring(" + strings.Join(k.KIDs(), ",") + ")"
}

// GoString is String, so %#v cannot dump private keys either.
func (k *Keyring) GoString() string { return k.String() }

// Format prints String for every verb, so no fmt verb reaches the fields.
func (k *Keyring) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(k.String())) }
