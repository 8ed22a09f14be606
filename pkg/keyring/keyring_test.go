package keyring_test

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/keyring"
	"github.com/tokka-dev/tokka/pkg/seal"
	"github.com/tokka-dev/tokka/pkg/secret"
)

// Test-only keys. The canary plaintext must never show up in error text.
const (
	keyA   = "test-only-encryption-key-A-0123456789abcdef"
	keyB   = "test-only-encryption-key-B-0123456789abcdef"
	keyC   = "test-only-encryption-key-C-0123456789abcdef"
	canary = "sk-admin-CANARY-7f3e9a1c5b2d4e6f8a0b"
)

type testBundle struct {
	kr   *keyring.Keyring
	bind seal.Binding
}

func setup(t testing.TB) *testBundle {
	t.Helper()
	kr, err := keyring.New(keyA, nil)
	require.NoError(t, err)
	return &testBundle{
		kr: kr,
		bind: seal.Binding{
			TeamID:       "0b7c1f7e-6a57-4b8e-9a43-1d0c3f6a2b11",
			ConnectionID: "5d2e8a90-3c4b-4f1e-8d7a-9e6b5c4d3a21",
			Provider:     "openai",
		},
	}
}

// requireCannotOpen asserts err is exactly seal.ErrCannotOpen, by identity
// and by text, and that the text leaks nothing.
func requireCannotOpen(t testing.TB, key *secret.Key, err error, msgAndArgs ...any) {
	t.Helper()
	require.Nil(t, key, msgAndArgs...)
	require.ErrorIs(t, err, seal.ErrCannotOpen, msgAndArgs...)
	require.Equal(t, "sealed key cannot be opened", err.Error(), msgAndArgs...)
	// Identity, not just errors.Is: nothing may wrap or replace the sentinel.
	require.True(t, err == seal.ErrCannotOpen, msgAndArgs...)
	for _, s := range []string{canary, keyA, keyB, keyC} {
		require.NotContains(t, err.Error(), s)
	}
}

func mustSeal(t testing.TB, kr *keyring.Keyring, plaintext string, b seal.Binding) string {
	t.Helper()
	s, err := kr.PublicKey().Seal(secret.FromString(plaintext), b)
	require.NoError(t, err)
	return s
}

func requireOpens(t testing.TB, kr *keyring.Keyring, blob string, b seal.Binding, want string) {
	t.Helper()
	key, err := kr.Open(blob, b)
	require.NoError(t, err)
	require.Equal(t, want, string(key.Bytes()))
	key.Wipe()
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	for _, pt := range []string{"x", canary, strings.Repeat("é鍵🔑", 100), string(make([]byte, seal.MaxKeySize))} {
		blob := mustSeal(t, tb.kr, pt, tb.bind)
		require.NotContains(t, blob, "CANARY")
		requireOpens(t, tb.kr, blob, tb.bind, pt)
		require.False(t, tb.kr.NeedsRewrap(blob))
	}
}

func TestDeterministicDerivation(t *testing.T) {
	t.Parallel()
	a1, err := keyring.New(keyA, nil)
	require.NoError(t, err)
	a2, err := keyring.New(keyA, nil)
	require.NoError(t, err)
	b, err := keyring.New(keyB, nil)
	require.NoError(t, err)
	require.Equal(t, a1.PublicKey().String(), a2.PublicKey().String())
	require.Equal(t, a1.PublicKey().KID(), a2.PublicKey().KID())
	require.NotEqual(t, a1.PublicKey().KID(), b.PublicKey().KID())
	require.Equal(t, []string{a1.PublicKey().KID()}, a1.KIDs())
	require.Equal(t, seal.KeyID(a1.PublicKey().Bytes()), a1.PublicKey().KID())
}

// The api holds only the text public key; what it seals, the syncer opens.
func TestAPISidePublicKey(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	text := tb.kr.PublicKey().String()
	require.True(t, strings.HasPrefix(text, "tpk2:"))
	pub, err := seal.ParsePublicKey(text)
	require.NoError(t, err)
	require.Equal(t, tb.kr.PublicKey().KID(), pub.KID())
	blob, err := pub.Seal(secret.FromString(canary), tb.bind)
	require.NoError(t, err)
	requireOpens(t, tb.kr, blob, tb.bind, canary)
}

func TestWrongBinding(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	blob := mustSeal(t, tb.kr, canary, tb.bind)
	other := func(f func(*seal.Binding)) seal.Binding {
		b := tb.bind
		f(&b)
		return b
	}
	cases := map[string]seal.Binding{
		"other connection of same user": other(func(b *seal.Binding) { b.ConnectionID = "9a1b2c3d-0000-4000-8000-000000000001" }),
		"other user":                    other(func(b *seal.Binding) { b.TeamID = "9a1b2c3d-0000-4000-8000-000000000002" }),
		"other provider":                other(func(b *seal.Binding) { b.Provider = "anthropic" }),
		"ids swapped":                   {TeamID: tb.bind.ConnectionID, ConnectionID: tb.bind.TeamID, Provider: tb.bind.Provider},
		"upper-case id":                 other(func(b *seal.Binding) { b.TeamID = strings.ToUpper(b.TeamID) }),
		"incomplete":                    other(func(b *seal.Binding) { b.Provider = "" }),
		"empty":                         {},
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			key, err := tb.kr.Open(blob, b)
			requireCannotOpen(t, key, err)
		})
	}
}

func TestUnknownKID(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	blob := mustSeal(t, tb.kr, canary, tb.bind)
	other, err := keyring.New(keyB, []string{keyC})
	require.NoError(t, err)
	key, err := other.Open(blob, tb.bind)
	requireCannotOpen(t, key, err)

	// A blob relabelled with the other keyring's kid still fails: the kid
	// only selects a key, it proves nothing.
	p, err := seal.ParseBlob(blob)
	require.NoError(t, err)
	p.KID = other.PublicKey().KID()
	key, err = other.Open(p.String(), tb.bind)
	requireCannotOpen(t, key, err)
}

// flipV2 returns blob with bit `bit` of decoded byte `i` of the chosen part
// flipped and the blob re-encoded, so the tamper survives parsing.
func flipV2(t testing.TB, blob string, part string, i int, bit uint) string {
	t.Helper()
	p, err := seal.ParseBlob(blob)
	require.NoError(t, err)
	q := seal.Blob{Version: 2, KID: p.KID, Enc: append([]byte(nil), p.Enc...), Ciphertext: append([]byte(nil), p.Ciphertext...)}
	switch part {
	case "kid":
		kid, err := hex.DecodeString(q.KID)
		require.NoError(t, err)
		kid[i] ^= 1 << bit
		q.KID = hex.EncodeToString(kid)
	case "enc":
		q.Enc[i] ^= 1 << bit
	case "ct":
		q.Ciphertext[i] ^= 1 << bit
	}
	out := q.String()
	require.NotEqual(t, blob, out)
	return out
}

func TestV2BitFlips(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	// A retired key too, so a flipped kid could land on a known one only by
	// a 2^-64 accident; the flip must fail either way.
	kr, err := keyring.New(keyA, []string{keyB})
	require.NoError(t, err)
	blob := mustSeal(t, kr, canary, tb.bind)
	p, err := seal.ParseBlob(blob)
	require.NoError(t, err)

	type pos struct {
		part string
		i    int
	}
	var positions []pos
	for i := range seal.KIDSize / 2 {
		positions = append(positions, pos{"kid", i})
	}
	// The encapsulation: both ends, the ML-KEM/X25519 seam, and a stride.
	for _, i := range []int{0, 1, 1087, 1088, 1089, seal.EncSize - 1} {
		positions = append(positions, pos{"enc", i})
	}
	for i := 3; i < seal.EncSize; i += 61 {
		positions = append(positions, pos{"enc", i})
	}
	for i := range p.Ciphertext {
		positions = append(positions, pos{"ct", i})
	}
	for _, ps := range positions {
		for bit := range uint(8) {
			tampered := flipV2(t, blob, ps.part, ps.i, bit)
			key, err := kr.Open(tampered, tb.bind)
			requireCannotOpen(t, key, err, "%s byte %d bit %d", ps.part, ps.i, bit)
		}
	}

	// Text-level flips (which mostly break the hex or the shape) at a stride
	// through the whole string, the version and separators included.
	for i := 0; i < len(blob); i += 7 {
		for bit := range uint(8) {
			b := []byte(blob)
			b[i] ^= 1 << bit
			key, err := kr.Open(string(b), tb.bind)
			requireCannotOpen(t, key, err, "char %d bit %d", i, bit)
		}
	}
	requireOpens(t, kr, blob, tb.bind, canary)
}

func TestV2Truncations(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	blob := mustSeal(t, tb.kr, canary, tb.bind)
	for n := 0; n < len(blob); n++ {
		key, err := tb.kr.Open(blob[:n], tb.bind)
		requireCannotOpen(t, key, err, "prefix %d", n)
		key, err = tb.kr.Open(blob[len(blob)-n:], tb.bind)
		requireCannotOpen(t, key, err, "suffix %d", n)
	}
	// Whole bytes cut from the ciphertext keep the blob well formed; the
	// AEAD still refuses it.
	p, err := seal.ParseBlob(blob)
	require.NoError(t, err)
	for n := seal.TagSize; n < len(p.Ciphertext); n++ {
		q := p
		q.Ciphertext = p.Ciphertext[:n]
		key, err := tb.kr.Open(q.String(), tb.bind)
		requireCannotOpen(t, key, err, "ciphertext cut to %d", n)
	}
}

type vector struct {
	EncryptionKey string `json:"encryption_key"`
	Plaintext     string `json:"plaintext"`
	Blob          string `json:"blob"`
}

func loadVectors(t testing.TB) []vector {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "v1", "vectors.json"))
	require.NoError(t, err, "run: node pkg/keyring/testdata/v1/gen.js")
	var vs []vector
	require.NoError(t, json.Unmarshal(raw, &vs))
	require.NotEmpty(t, vs)
	return vs
}

// The seed's blobs, written by Node.js exactly as the seed wrote them, open.
func TestV1Vectors(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	vs := loadVectors(t)
	keys := map[string]bool{}
	for i, v := range vs {
		keys[v.EncryptionKey] = true
		kr, err := keyring.New(v.EncryptionKey, nil)
		require.NoError(t, err)
		requireOpens(t, kr, v.Blob, tb.bind, v.Plaintext)
		require.True(t, kr.NeedsRewrap(v.Blob))

		// As a retired key it still opens.
		rot, err := keyring.New(keyC, []string{keyB, v.EncryptionKey})
		require.NoError(t, err)
		requireOpens(t, rot, v.Blob, tb.bind, v.Plaintext)

		// Under some other key it does not.
		other := vs[(i+len(vs)/2+1)%len(vs)]
		if other.EncryptionKey != v.EncryptionKey {
			kr, err := keyring.New(other.EncryptionKey, nil)
			require.NoError(t, err)
			key, err := kr.Open(v.Blob, tb.bind)
			requireCannotOpen(t, key, err)
		}
	}
	require.GreaterOrEqual(t, len(keys), 2)
}

func TestV1BitFlipsAndTruncations(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	var v vector
	for _, c := range loadVectors(t) {
		if v.Blob == "" || len(c.Blob) < len(v.Blob) {
			v = c
		}
	}
	kr, err := keyring.New(keyB, []string{v.EncryptionKey})
	require.NoError(t, err)
	requireOpens(t, kr, v.Blob, tb.bind, v.Plaintext)

	p, err := seal.ParseBlob(v.Blob)
	require.NoError(t, err)
	require.Equal(t, 1, p.Version)
	parts := map[string][]byte{"iv": p.IV, "tag": p.Tag, "ct": p.Ciphertext}
	for name, b := range parts {
		for i := range b {
			for bit := range uint(8) {
				q := seal.Blob{Version: 1, IV: clone(p.IV), Tag: clone(p.Tag), Ciphertext: clone(p.Ciphertext)}
				map[string][]byte{"iv": q.IV, "tag": q.Tag, "ct": q.Ciphertext}[name][i] ^= 1 << bit
				key, err := kr.Open(q.String(), tb.bind)
				requireCannotOpen(t, key, err, "%s byte %d bit %d", name, i, bit)
			}
		}
	}
	for i := range len(v.Blob) {
		for bit := range uint(8) {
			b := []byte(v.Blob)
			b[i] ^= 1 << bit
			key, err := kr.Open(string(b), tb.bind)
			requireCannotOpen(t, key, err, "char %d bit %d", i, bit)
		}
	}
	for n := range len(v.Blob) {
		key, err := kr.Open(v.Blob[:n], tb.bind)
		requireCannotOpen(t, key, err, "prefix %d", n)
		key, err = kr.Open(v.Blob[len(v.Blob)-n:], tb.bind)
		requireCannotOpen(t, key, err, "suffix %d", n)
	}
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

func TestRotation(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	oldKR := tb.kr
	oldBlob := mustSeal(t, oldKR, canary, tb.bind)
	var v1 vector
	for _, v := range loadVectors(t) {
		if v.EncryptionKey != keyB {
			v1 = v
			break
		}
	}

	kr, err := keyring.New(keyB, []string{keyA, v1.EncryptionKey})
	require.NoError(t, err)
	require.Equal(t, []string{kr.PublicKey().KID(), oldKR.PublicKey().KID(), mustKR(t, v1.EncryptionKey).PublicKey().KID()}, kr.KIDs())

	// Retired keys open old blobs (v2 and v1) …
	requireOpens(t, kr, oldBlob, tb.bind, canary)
	requireOpens(t, kr, v1.Blob, tb.bind, v1.Plaintext)
	require.True(t, kr.NeedsRewrap(oldBlob))
	require.True(t, kr.NeedsRewrap(v1.Blob))

	// … and Rewrap moves them to the current kid.
	for blob, want := range map[string]string{oldBlob: canary, v1.Blob: v1.Plaintext} {
		nb, err := kr.Rewrap(blob, tb.bind)
		require.NoError(t, err)
		require.NotEqual(t, blob, nb)
		p, err := seal.ParseBlob(nb)
		require.NoError(t, err)
		require.Equal(t, 2, p.Version)
		require.Equal(t, kr.PublicKey().KID(), p.KID)
		require.False(t, kr.NeedsRewrap(nb))
		requireOpens(t, kr, nb, tb.bind, want)

		// The new key alone opens it; the retired key alone does not.
		onlyNew := mustKR(t, keyB)
		requireOpens(t, onlyNew, nb, tb.bind, want)
		key, err := oldKR.Open(nb, tb.bind)
		requireCannotOpen(t, key, err)

		// Idempotent: a current blob comes back unchanged.
		again, err := kr.Rewrap(nb, tb.bind)
		require.NoError(t, err)
		require.Equal(t, nb, again)

		// The rewrapped blob is still bound to its row.
		key, err = kr.Open(nb, seal.Binding{TeamID: tb.bind.TeamID, ConnectionID: "other", Provider: tb.bind.Provider})
		requireCannotOpen(t, key, err)
	}

	// Rewrap refuses what it cannot open, with the one error.
	_, err = kr.Rewrap(oldBlob, seal.Binding{TeamID: "x", ConnectionID: "y", Provider: "openai"})
	requireCannotOpen(t, nil, err)
	_, err = mustKR(t, keyC).Rewrap(oldBlob, tb.bind)
	requireCannotOpen(t, nil, err)
	_, err = kr.Rewrap("garbage", tb.bind)
	requireCannotOpen(t, nil, err)
	// Malformed values are reported as needing a rewrap so a pass never
	// skips them silently.
	require.True(t, kr.NeedsRewrap("garbage"))
	require.True(t, kr.NeedsRewrap(""))
}

func mustKR(t testing.TB, key string) *keyring.Keyring {
	t.Helper()
	kr, err := keyring.New(key, nil)
	require.NoError(t, err)
	return kr
}

func TestRetiredDuplicatesIgnored(t *testing.T) {
	t.Parallel()
	kr, err := keyring.New(keyA, []string{keyA, keyB, keyB})
	require.NoError(t, err)
	require.Len(t, kr.KIDs(), 2)
	require.Equal(t, mustKR(t, keyA).PublicKey().KID(), kr.KIDs()[0])
	require.Equal(t, mustKR(t, keyB).PublicKey().KID(), kr.KIDs()[1])
}

func TestShortKeysRefused(t *testing.T) {
	t.Parallel()
	short := "short-secret-key-of-31-bytes-xx"
	require.Len(t, short, 31)
	_, err := keyring.New(short, nil)
	require.ErrorIs(t, err, keyring.ErrKeyTooShort)
	require.Contains(t, err.Error(), "ENCRYPTION_KEY")
	require.Contains(t, err.Error(), "32 bytes")
	require.NotContains(t, err.Error(), short)
	require.NotContains(t, err.Error(), "short-secret")

	// Bytes, not characters: 16 two-byte runes are 32 bytes, 15 are not.
	_, err = keyring.New(strings.Repeat("é", 16), nil)
	require.NoError(t, err)
	_, err = keyring.New(strings.Repeat("é", 15)+"x", nil)
	require.ErrorIs(t, err, keyring.ErrKeyTooShort)

	_, err = keyring.New("", nil)
	require.ErrorIs(t, err, keyring.ErrKeyTooShort)
	_, err = keyring.New(strings.Repeat("k", 32), nil)
	require.NoError(t, err)

	_, err = keyring.New(keyA, []string{keyB, short})
	require.ErrorIs(t, err, keyring.ErrKeyTooShort)
	require.Contains(t, err.Error(), "retired key 2 of 2")
	require.NotContains(t, err.Error(), short)
	require.NotContains(t, err.Error(), keyA)
	require.NotContains(t, err.Error(), keyB)

	_, err = keyring.New(keyA, []string{""})
	require.ErrorIs(t, err, keyring.ErrKeyTooShort)
}

func TestKeyringDoesNotPrintKeys(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	want := "keyring(" + tb.kr.PublicKey().KID() + ")"
	for _, verb := range []string{"%s", "%v", "%+v", "%#v", "%x", "%q", "%d"} {
		require.Equal(t, want, fmt.Sprintf(verb, tb.kr), verb)
	}
	require.Equal(t, want, fmt.Sprint(tb.kr))
	out := fmt.Sprintf("%+v", struct{ K *keyring.Keyring }{tb.kr})
	require.Contains(t, out, want)
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	blob := mustSeal(t, tb.kr, canary, tb.bind)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			for range 4 {
				key, err := tb.kr.Open(blob, tb.bind)
				if err != nil {
					errs <- err
					return
				}
				if string(key.Bytes()) != canary {
					errs <- errors.New("wrong plaintext")
				}
				key.Wipe()
				if _, err := tb.kr.PublicKey().Seal(secret.FromString(canary), tb.bind); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

func BenchmarkSeal(b *testing.B) {
	tb := setup(b)
	pub := tb.kr.PublicKey()
	key := secret.FromString(canary)
	for b.Loop() {
		if _, err := pub.Seal(key, tb.bind); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	tb := setup(b)
	blob := mustSeal(b, tb.kr, canary, tb.bind)
	for b.Loop() {
		key, err := tb.kr.Open(blob, tb.bind)
		if err != nil {
			b.Fatal(err)
		}
		key.Wipe()
	}
}

func BenchmarkOpenV1(b *testing.B) {
	tb := setup(b)
	v := loadVectors(b)[1]
	kr := mustKR(b, v.EncryptionKey)
	for b.Loop() {
		key, err := kr.Open(v.Blob, tb.bind)
		if err != nil {
			b.Fatal(err)
		}
		key.Wipe()
	}
}
