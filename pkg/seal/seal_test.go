package seal_test

import (
	"crypto/hpke"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/seal"
	"github.com/tokka-dev/tokka/pkg/secret"
)

type testBundle struct {
	pub  *seal.PublicKey
	priv hpke.PrivateKey
	bind seal.Binding
}

func setup(t testing.TB) *testBundle {
	t.Helper()
	kem, _, _ := seal.Suite()
	priv, err := kem.GenerateKey()
	require.NoError(t, err)
	pub, err := seal.NewPublicKey(priv.PublicKey().Bytes())
	require.NoError(t, err)
	return &testBundle{
		pub:  pub,
		priv: priv,
		bind: seal.Binding{
			TeamID:       "0b7c1f7e-6a57-4b8e-9a43-1d0c3f6a2b11",
			ConnectionID: "5d2e8a90-3c4b-4f1e-8d7a-9e6b5c4d3a21",
			Provider:     "openai",
		},
	}
}

func TestSuiteSizes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.Len(t, b.priv.PublicKey().Bytes(), seal.PublicKeySize)
	_, kdf, aead := seal.Suite()
	enc, s, err := hpke.NewSender(b.pub.HPKE(), kdf, aead, []byte(seal.Info))
	require.NoError(t, err)
	require.Len(t, enc, seal.EncSize)
	ct, err := s.Seal(nil, []byte("abc"))
	require.NoError(t, err)
	require.Len(t, ct, 3+seal.TagSize)
}

func TestPublicKeyText(t *testing.T) {
	t.Parallel()
	b := setup(t)
	text := b.pub.String()
	require.True(t, strings.HasPrefix(text, seal.PublicKeyPrefix))
	require.Len(t, text, len(seal.PublicKeyPrefix)+2*seal.PublicKeySize)
	require.Equal(t, strings.ToLower(text), text)

	got, err := seal.ParsePublicKey(text)
	require.NoError(t, err)
	require.Equal(t, b.pub.Bytes(), got.Bytes())
	require.Equal(t, b.pub.KID(), got.KID())

	// Environment values often end in a newline.
	got, err = seal.ParsePublicKey("  " + text + "\n")
	require.NoError(t, err)
	require.Equal(t, b.pub.KID(), got.KID())

	require.Len(t, b.pub.KID(), seal.KIDSize)
	require.Equal(t, seal.KeyID(b.pub.Bytes()), b.pub.KID())
}

func TestParsePublicKeyRejects(t *testing.T) {
	t.Parallel()
	b := setup(t)
	good := b.pub.String()
	h := strings.TrimPrefix(good, seal.PublicKeyPrefix)
	cases := map[string]string{
		"empty":           "",
		"no prefix":       h,
		"other prefix":    "tpk1:" + h,
		"upper case":      seal.PublicKeyPrefix + strings.ToUpper(h),
		"short":           good[:len(good)-2],
		"long":            good + "00",
		"odd":             good[:len(good)-1],
		"not hex":         good[:len(good)-1] + "g",
		"inner space":     good[:100] + " " + good[101:],
		"private key":     seal.PublicKeyPrefix + hex.EncodeToString(make([]byte, 32)),
		"invalid mlkem":   seal.PublicKeyPrefix + strings.Repeat("ff", seal.PublicKeySize),
		"secret-ish text": "ENCRYPTION_KEY=correct-horse-battery-staple-0123456789",
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := seal.ParsePublicKey(in)
			require.ErrorIs(t, err, seal.ErrBadPublicKey)
			require.Equal(t, seal.ErrBadPublicKey.Error(), err.Error(), "input must not be echoed")
		})
	}
	_, err := seal.NewPublicKey(make([]byte, 3))
	require.ErrorIs(t, err, seal.ErrBadPublicKey)
}

func TestSealFormat(t *testing.T) {
	t.Parallel()
	b := setup(t)
	key := secret.FromString("sk-admin-canary-0123456789abcdef")
	s, err := b.pub.Seal(key, b.bind)
	require.NoError(t, err)
	require.NotContains(t, s, "canary")

	parts := strings.Split(s, ":")
	require.Len(t, parts, 4)
	require.Equal(t, "v2", parts[0])
	require.Equal(t, b.pub.KID(), parts[1])
	require.Len(t, parts[2], 2*seal.EncSize)
	require.Len(t, parts[3], 2*(key.Len()+seal.TagSize))

	p, err := seal.ParseBlob(s)
	require.NoError(t, err)
	require.Equal(t, 2, p.Version)
	require.Equal(t, b.pub.KID(), p.KID)
	require.Equal(t, s, p.String())

	// The private side of the suite opens it with the binding as AAD, and
	// with nothing else.
	_, kdf, aead := seal.Suite()
	r, err := hpke.NewRecipient(p.Enc, b.priv, kdf, aead, []byte(seal.Info))
	require.NoError(t, err)
	pt, err := r.Open(b.bind.AAD(), p.Ciphertext)
	require.NoError(t, err)
	require.Equal(t, key.Bytes(), pt)

	r, err = hpke.NewRecipient(p.Enc, b.priv, kdf, aead, []byte(seal.Info))
	require.NoError(t, err)
	_, err = r.Open(nil, p.Ciphertext)
	require.Error(t, err)

	// Sealing is randomized.
	s2, err := b.pub.Seal(key, b.bind)
	require.NoError(t, err)
	require.NotEqual(t, s, s2)
}

func TestSealRefuses(t *testing.T) {
	t.Parallel()
	b := setup(t)
	key := secret.FromString("sk-admin-0123456789")

	_, err := b.pub.Seal(nil, b.bind)
	require.ErrorIs(t, err, seal.ErrEmptyKey)
	_, err = b.pub.Seal(secret.FromString(""), b.bind)
	require.ErrorIs(t, err, seal.ErrEmptyKey)
	wiped := secret.FromString("sk-admin-wiped")
	wiped.Wipe()
	_, err = b.pub.Seal(wiped, b.bind)
	require.ErrorIs(t, err, seal.ErrEmptyKey)
	_, err = b.pub.Seal(secret.New(make([]byte, seal.MaxKeySize+1)), b.bind)
	require.ErrorIs(t, err, seal.ErrKeyTooLong)
	_, err = b.pub.Seal(secret.New(make([]byte, seal.MaxKeySize)), b.bind)
	require.NoError(t, err)

	for _, bad := range []seal.Binding{
		{},
		{ConnectionID: "c", Provider: "openai"},
		{TeamID: "u", Provider: "openai"},
		{TeamID: "u", ConnectionID: "c"},
	} {
		_, err = b.pub.Seal(key, bad)
		require.ErrorIs(t, err, seal.ErrIncompleteBinding)
		require.False(t, bad.Complete())
	}
}

func TestBindingAADInjective(t *testing.T) {
	t.Parallel()
	// Pairs that a naive concatenation or separator join would confuse.
	bindings := []seal.Binding{
		{TeamID: "u", ConnectionID: "c", Provider: "openai"},
		{TeamID: "uc", ConnectionID: "", Provider: "openai"},
		{TeamID: "", ConnectionID: "uc", Provider: "openai"},
		{TeamID: "u:c", ConnectionID: "x", Provider: "openai"},
		{TeamID: "u", ConnectionID: "c:x", Provider: "openai"},
		{TeamID: "u", ConnectionID: "copenai", Provider: ""},
		{TeamID: "u", ConnectionID: "c", Provider: "anthropic"},
		{TeamID: "c", ConnectionID: "u", Provider: "openai"},
		{TeamID: "u\x00\x00\x00\x01c", ConnectionID: "", Provider: "openai"},
		{TeamID: "u", ConnectionID: "\x00\x00\x00\x01c", Provider: "openai"},
	}
	seen := map[string]int{}
	for i, b := range bindings {
		aad := string(b.AAD())
		require.True(t, strings.HasPrefix(aad, "tokka/v2/binding"))
		prev, dup := seen[aad]
		require.False(t, dup, "bindings %d and %d share an AAD", prev, i)
		seen[aad] = i
	}
	// Deterministic.
	require.Equal(t, bindings[0].AAD(), bindings[0].AAD())
}

func validV1() string {
	return "00112233445566778899aabbccddeeff:" + strings.Repeat("ab", 16) + ":0102"
}

func validV2(t testing.TB) string {
	b := setup(t)
	s, err := b.pub.Seal(secret.FromString("sk-admin-abc"), b.bind)
	require.NoError(t, err)
	return s
}

func TestParseBlobV1(t *testing.T) {
	t.Parallel()
	p, err := seal.ParseBlob(validV1())
	require.NoError(t, err)
	require.Equal(t, 1, p.Version)
	require.Empty(t, p.KID)
	require.Len(t, p.IV, 16)
	require.Len(t, p.Tag, 16)
	require.Equal(t, []byte{1, 2}, p.Ciphertext)
	require.Equal(t, validV1(), p.String())
}

func TestParseBlobRejects(t *testing.T) {
	t.Parallel()
	v1 := validV1()
	v2 := validV2(t)
	parts := strings.Split(v2, ":")
	iv, tag := strings.Repeat("00", 16), strings.Repeat("11", 16)
	cases := map[string]string{
		"empty":             "",
		"colons":            ":::",
		"v1 short iv":       "0011:" + tag + ":01",
		"v1 12-byte iv":     strings.Repeat("00", 12) + ":" + tag + ":01",
		"v1 short tag":      iv + ":" + tag[:30] + ":01",
		"v1 empty ct":       iv + ":" + tag + ":",
		"v1 odd ct":         iv + ":" + tag + ":012",
		"v1 upper":          strings.ToUpper(v1),
		"v1 extra part":     v1 + ":00",
		"v1 two parts":      iv + ":" + tag,
		"v1 space":          v1 + " ",
		"v1 prefix":         "v1:" + v1,
		"v1 not hex":        iv + ":" + tag + ":zz",
		"v1 huge":           iv + ":" + tag + ":" + strings.Repeat("00", seal.MaxKeySize+1),
		"v2 no parts":       "v2:",
		"v2 missing ct":     strings.Join(parts[:3], ":"),
		"v2 extra part":     v2 + ":00",
		"v2 short kid":      "v2:" + parts[1][:14] + ":" + parts[2] + ":" + parts[3],
		"v2 upper kid":      "v2:" + strings.ToUpper("abcdefabcdefabcd") + ":" + parts[2] + ":" + parts[3],
		"v2 short enc":      "v2:" + parts[1] + ":" + parts[2][2:] + ":" + parts[3],
		"v2 long enc":       "v2:" + parts[1] + ":" + parts[2] + "00:" + parts[3],
		"v2 ct below tag":   "v2:" + parts[1] + ":" + parts[2] + ":" + strings.Repeat("00", seal.TagSize-1),
		"v2 upper ct":       "v2:" + parts[1] + ":" + parts[2] + ":" + strings.ToUpper(parts[3]),
		"v2 version V2":     "V2" + v2[2:],
		"v3":                "v3" + v2[2:],
		"v2 trailing space": v2 + "\n",
		"v2 huge":           v2 + strings.Repeat("00", seal.MaxKeySize),
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := seal.ParseBlob(in)
			require.ErrorIs(t, err, seal.ErrCannotOpen)
			require.Equal(t, "sealed key cannot be opened", err.Error())
		})
	}
}

func TestBlobStringUnknownVersion(t *testing.T) {
	t.Parallel()
	require.Empty(t, seal.Blob{Version: 3, KID: "x"}.String())
}
