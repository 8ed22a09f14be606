package secret_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/secret"
)

const (
	canary   = "sk-admin-CANARY-9c4f1e2d7b3a5c6e8f0a"
	redacted = "[REDACTED]"
)

// requireClean fails if out contains the canary in any form a printer could
// produce: raw, hex, or as a Go byte-slice literal.
func requireClean(t *testing.T, out string) {
	t.Helper()
	require.NotContains(t, out, canary)
	require.NotContains(t, out, "CANARY")
	require.NotContains(t, strings.ToLower(out), fmt.Sprintf("%x", canary[:12]))
	require.NotContains(t, out, fmt.Sprint([]byte(canary)[:6]))
	require.NotContains(t, out, "115 107 45") // "sk-" as %d bytes
}

func TestFmtVerbs(t *testing.T) {
	t.Parallel()
	k := secret.FromString(canary)
	for _, verb := range []string{"%s", "%v", "%+v", "%#v", "%q", "%x", "%X", "%d", "%10s", "%-20v", "%T"} {
		out := fmt.Sprintf(verb, k)
		requireClean(t, out)
		if verb != "%T" {
			require.Contains(t, out, redacted, verb)
		}
	}
	require.Equal(t, redacted, fmt.Sprint(k))
	require.Equal(t, redacted+"\n", fmt.Sprintln(k))
	require.Equal(t, redacted, k.String())
	require.Equal(t, redacted, k.GoString())
}

func TestInsideStructs(t *testing.T) {
	t.Parallel()
	k := secret.FromString(canary)
	type conn struct {
		ID  string
		Key *secret.Key
	}
	c := conn{ID: "c1", Key: k}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%d"} {
		out := fmt.Sprintf(verb, c)
		requireClean(t, out)
		out = fmt.Sprintf(verb, &c)
		requireClean(t, out)
	}
	require.Contains(t, fmt.Sprintf("%+v", c), redacted)

	// An unexported field is printed as an address, never as bytes.
	type hidden struct{ key *secret.Key }
	requireClean(t, fmt.Sprintf("%+v", hidden{k}))
	requireClean(t, fmt.Sprintf("%v", []*secret.Key{k, k}))
	requireClean(t, fmt.Sprintf("%v", map[string]*secret.Key{"k": k}))
}

func TestJSON(t *testing.T) {
	t.Parallel()
	k := secret.FromString(canary)
	out, err := json.Marshal(struct {
		ID  string      `json:"id"`
		Key *secret.Key `json:"key"`
	}{"c1", k})
	require.NoError(t, err)
	require.JSONEq(t, `{"id":"c1","key":"[REDACTED]"}`, string(out))

	// As a map key (TextMarshaler) and bare.
	out, err = json.Marshal(map[*secret.Key]int{k: 1})
	require.NoError(t, err)
	requireClean(t, string(out))
	out, err = json.Marshal(k)
	require.NoError(t, err)
	require.Equal(t, `"[REDACTED]"`, string(out))
	txt, err := k.MarshalText()
	require.NoError(t, err)
	require.Equal(t, redacted, string(txt))
}

func TestZerolog(t *testing.T) {
	t.Parallel()
	k := secret.FromString(canary)
	var buf bytes.Buffer
	log := zerolog.New(&buf).Level(zerolog.TraceLevel)
	log.Info().Object("key", k).Msg("object")
	log.Info().Interface("key", k).Msg("interface")
	log.Info().Any("key", k).Msg("any")
	log.Info().Stringer("key", k).Msg("stringer")
	log.Debug().EmbedObject(k).Msg("embed")
	log.Info().Msgf("msgf %v %s %x", k, k, k)
	log.Info().Interface("wrapped", struct{ Key *secret.Key }{k}).Msg("struct")
	log.Info().Err(fmt.Errorf("sync: %v", k)).Msg("err")
	out := buf.String()
	requireClean(t, out)
	require.Equal(t, 8, strings.Count(out, "\n"))
	require.Equal(t, 10, strings.Count(out, redacted)) // Msgf carries three
}

func TestErrors(t *testing.T) {
	t.Parallel()
	k := secret.FromString(canary)
	base := errors.New("provider said no")
	err := fmt.Errorf("sync with %v: %w", k, base)
	require.ErrorIs(t, err, base)
	requireClean(t, err.Error())
	require.Contains(t, err.Error(), redacted)
	err = fmt.Errorf("key %s (%q) %+v %#v %x: %w", k, k, k, k, k, err)
	requireClean(t, err.Error())
	requireClean(t, fmt.Sprintf("%+v", err))
}

func TestWipeZeroesBackingArray(t *testing.T) {
	t.Parallel()
	k := secret.New([]byte(canary))
	backing := k.Bytes()
	require.Equal(t, canary, string(backing))
	require.False(t, k.Wiped())
	require.Equal(t, len(canary), k.Len())

	k.Wipe()
	require.Equal(t, make([]byte, len(canary)), backing, "the old backing array must be all zeros")
	require.True(t, k.Wiped())
	require.Empty(t, k.Bytes())
	require.Zero(t, k.Len())
	k.Wipe() // idempotent

	var nilKey *secret.Key
	nilKey.Wipe()
	require.True(t, nilKey.Wiped())
	require.Nil(t, nilKey.Bytes())
}

func TestNewCopies(t *testing.T) {
	t.Parallel()
	src := []byte(canary)
	k := secret.New(src)
	clear(src)
	require.Equal(t, canary, string(k.Bytes()))
	k.Wipe()
}

func TestHelpers(t *testing.T) {
	t.Parallel()
	k := secret.FromString(canary)
	require.True(t, k.HasPrefix("sk-admin-"))
	require.False(t, k.HasPrefix("sk-ant-admin"))
	require.False(t, k.HasPrefix(canary+"x"))
	require.Equal(t, "sk-admin-…8f0a", k.Hint("sk-admin-"))
	require.Equal(t, "sk-admin-…", secret.FromString("sk-admin-abc").Hint("sk-admin-"))
}

// A Key copied by value (a struct field, a dereference) must redact too.
func TestValueKeyRedacts(t *testing.T) {
	t.Parallel()
	k := secret.New([]byte("sk-admin-valuecopycanary0000"))
	type holder struct{ K secret.Key }
	for _, s := range []string{
		fmt.Sprintf("%v", *k), fmt.Sprintf("%+v", *k), fmt.Sprintf("%#v", *k),
		fmt.Sprintf("%v", holder{K: *k}), fmt.Sprintf("%+v", holder{K: *k}), fmt.Sprintf("%#v", holder{K: *k}),
	} {
		require.NotContains(t, s, "valuecopy")
		require.NotContains(t, s, "115 107") // the bytes "sk" printed as numbers
	}
	b, err := json.Marshal(holder{K: *k})
	require.NoError(t, err)
	require.NotContains(t, string(b), "valuecopy")
}

// A provider's redacted value matches the key it redacts and no other: the
// visible start and the visible end (four characters at least) must agree.
func TestMatchesHint(t *testing.T) {
	k := secret.FromString("sk-admin-abcdefghijklmnop-wxyz")
	for hint, want := range map[string]bool{
		"sk-admin...wxyz":                true,
		"sk-admin....wxyz":               true,
		"sk-admin…wxyz":                  true,
		"sk-****wxyz":                    true,
		"sk-admin...wxya":                false,
		"sk-proj-...wxyz":                false,
		"sk-admin...xyz":                 false, // too little of the end to tell
		"sk-admin-abcdefghijklmnop-wxyz": false, // no elision: not a hint
		"":                               false,
	} {
		require.Equal(t, want, k.MatchesHint(hint), hint)
	}
	require.False(t, secret.FromString("sk-wxyz").MatchesHint("sk-...wxyz"), "a key no longer than what the hint shows")
}
