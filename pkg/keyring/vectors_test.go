package keyring_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/keyring"
	"github.com/tokka-dev/tokka/pkg/seal"
	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// vectorsFile is shared with clients/js's tests: Go and the browser library
// are tested against each other with the same fixed blobs.
const vectorsFile = "../seal/testdata/vectors.json"

var updateVectors = flag.Bool("update-vectors", false, "rewrite the Go-sealed vectors in "+vectorsFile+" (the JS-sealed ones are kept)")

// sealVectorSet is the file's shape. "Both directions" means: every blob, whoever
// sealed it, opens in Go with the keyring derived from EncryptionKey, and in
// JS with RecipientSeed, the X-Wing private key (its 32-byte seed) that Go
// derives from that same ENCRYPTION_KEY. The seed is there because JS cannot
// derive it: hpke-js's X-Wing DeriveKeyPair and Go's differ, which never
// matters in production, where only the public key leaves the syncer.
type sealVectorSet struct {
	Comment       string       `json:"comment"`
	EncryptionKey string       `json:"encryption_key"`
	RecipientSeed string       `json:"recipient_seed"`
	PublicKey     string       `json:"public_key"`
	KID           string       `json:"kid"`
	Info          string       `json:"info"`
	AADLabel      string       `json:"aad_label"`
	Vectors       []sealVector `json:"vectors"`
}

type sealVector struct {
	SealedBy     string `json:"sealed_by"` // "go" or "js"
	TeamID       string `json:"team_id"`
	ConnectionID string `json:"connection_id"`
	Provider     string `json:"provider"`
	AAD          string `json:"aad"` // hex of the binding's AAD
	Key          string `json:"key"`
	SealedKey    string `json:"sealed_key"`
}

func (v sealVector) binding() seal.Binding {
	return seal.Binding{TeamID: v.TeamID, ConnectionID: v.ConnectionID, Provider: tokka.Provider(v.Provider)}
}

const vectorEncryptionKey = "tokka-test-vector-encryption-key-not-secret-0001"

// goVectors are the bindings and keys Go seals; the AAD of each includes
// non-ASCII so both sides encode lengths in bytes.
var goVectors = []sealVector{
	{TeamID: "6a1f3c2e-0b4d-4e8a-9c77-1d2e3f405162", ConnectionID: "0b7f3d1e-7f59-4a5e-9a43-4f5bb1b0e0aa", Provider: "openai", Key: "sk-admin-VECTORvectorVECTOR0001"},
	{TeamID: "6a1f3c2e-0b4d-4e8a-9c77-1d2e3f405162", ConnectionID: "c3d4e5f6-a7b8-4c9d-8e0f-112233445566", Provider: "anthropic", Key: "sk-ant-admin01-VECTORvectorVECTOR0002"},
	{TeamID: "ünïcode-user", ConnectionID: "conn-ü", Provider: "openai", Key: "sk-admin-VECTOR-ü-0003"},
}

func TestSealingVectorsOpenInGo(t *testing.T) {
	t.Parallel()
	kr, err := keyring.New(vectorEncryptionKey, nil)
	require.NoError(t, err)
	sum := sha256.Sum256([]byte(vectorEncryptionKey))
	kem, _, _ := seal.Suite()
	priv, err := kem.DeriveKeyPair(sum[:])
	require.NoError(t, err)
	seed, err := priv.Bytes()
	require.NoError(t, err)

	if *updateVectors {
		writeGoVectors(t, kr, hex.EncodeToString(seed))
	}
	raw, err := os.ReadFile(vectorsFile)
	require.NoError(t, err)
	var set sealVectorSet
	require.NoError(t, json.Unmarshal(raw, &set))

	require.Equal(t, vectorEncryptionKey, set.EncryptionKey)
	require.Equal(t, hex.EncodeToString(seed), set.RecipientSeed)
	require.Equal(t, kr.PublicKey().String(), set.PublicKey)
	require.Equal(t, kr.PublicKey().KID(), set.KID)
	require.Equal(t, seal.Info, set.Info)
	require.Equal(t, kr.PublicKey().Parameters().AAD.Label, set.AADLabel)
	by := map[string]int{}
	for i, v := range set.Vectors {
		by[v.SealedBy]++
		require.Equal(t, v.AAD, hex.EncodeToString(v.binding().AAD()), "vector %d: AAD encoding", i)
		key, err := kr.Open(v.SealedKey, v.binding())
		require.NoError(t, err, "vector %d (sealed by %s)", i, v.SealedBy)
		require.Equal(t, v.Key, string(key.Bytes()), "vector %d", i)
		key.Wipe()
		moved := v.binding()
		moved.ConnectionID += "x"
		_, err = kr.Open(v.SealedKey, moved)
		require.ErrorIs(t, err, seal.ErrCannotOpen, "vector %d opens only for its own binding", i)
	}
	require.Equal(t, len(goVectors), by["go"], "Go-sealed vectors")
	require.GreaterOrEqual(t, by["js"], 2, "JS-sealed vectors: run `npm run vectors` in clients/js")
}

// writeGoVectors replaces the file's Go-sealed vectors with fresh ones and
// keeps the JS-sealed ones.
func writeGoVectors(t *testing.T, kr *keyring.Keyring, seed string) {
	t.Helper()
	set := sealVectorSet{}
	if raw, err := os.ReadFile(vectorsFile); err == nil {
		require.NoError(t, json.Unmarshal(raw, &set))
	}
	set.Comment = "Shared by pkg/keyring (Go) and clients/js (JS): every blob opens in both. Regenerate the Go ones with " +
		"`go test ./pkg/keyring -run Vectors -update-vectors`, the JS ones with `npm run vectors` in clients/js. Test keys only."
	set.EncryptionKey, set.RecipientSeed = vectorEncryptionKey, seed
	set.PublicKey, set.KID, set.Info = kr.PublicKey().String(), kr.PublicKey().KID(), seal.Info
	set.AADLabel = kr.PublicKey().Parameters().AAD.Label
	kept := []sealVector{}
	for _, v := range set.Vectors {
		if v.SealedBy != "go" {
			kept = append(kept, v)
		}
	}
	for _, v := range goVectors {
		blob, err := kr.Seal(secret.FromString(v.Key), v.binding())
		require.NoError(t, err)
		v.SealedBy, v.AAD, v.SealedKey = "go", hex.EncodeToString(v.binding().AAD()), blob
		kept = append(kept, v)
	}
	set.Vectors = kept
	out, err := json.MarshalIndent(set, "", "  ")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(vectorsFile, append(out, '\n'), 0o644))
}
