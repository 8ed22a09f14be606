package keyring

// Internal tests: the plaintext buffers these check are never handed out, so
// only code inside the package can see whether they were zeroed.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/seal"
	"github.com/tokka-dev/tokka/pkg/secret"
)

const (
	wipeKeyOld = "test-only-encryption-key-A-0123456789abcdef"
	wipeKeyNew = "test-only-encryption-key-B-0123456789abcdef"
	wipeCanary = "sk-admin-WIPE-CANARY-3d9b1f0a7c5e2486"
)

var wipeBinding = seal.Binding{
	TeamID:       "0b7c1f7e-6a57-4b8e-9a43-1d0c3f6a2b11",
	ConnectionID: "5d2e8a90-3c4b-4f1e-8d7a-9e6b5c4d3a21",
	Provider:     "openai",
}

// TestOwnZeroesTheDecryptedBuffer: own leaves exactly one live copy of the
// plaintext, the Key's; the buffer the AEAD decrypted into is zeroed.
func TestOwnZeroesTheDecryptedBuffer(t *testing.T) {
	t.Parallel()
	pt := []byte(wipeCanary)
	key := own(pt)
	require.Equal(t, make([]byte, len(wipeCanary)), pt, "the decrypted buffer must be zeroed")
	require.Equal(t, wipeCanary, string(key.Bytes()), "the Key holds its own copy")
	key.Wipe()
}

// openedKeys makes kr record every key its Open hands out.
func openedKeys(kr *Keyring) func() []*secret.Key {
	var mu sync.Mutex
	var keys []*secret.Key
	kr.opened = func(k *secret.Key) {
		mu.Lock()
		defer mu.Unlock()
		keys = append(keys, k)
	}
	return func() []*secret.Key {
		mu.Lock()
		defer mu.Unlock()
		return append([]*secret.Key(nil), keys...)
	}
}

// TestRewrapWipesWhatItOpens: whether Rewrap re-seals (a v2 blob under a
// retired key, a v1 blob) or returns the blob unchanged (already current),
// the key it opened is wiped before it returns.
func TestRewrapWipesWhatItOpens(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join("testdata", "v1", "vectors.json"))
	require.NoError(t, err)
	var vectors []struct {
		EncryptionKey string `json:"encryption_key"`
		Blob          string `json:"blob"`
	}
	require.NoError(t, json.Unmarshal(raw, &vectors))
	require.NotEmpty(t, vectors)
	v1 := vectors[0]

	old, err := New(wipeKeyOld, nil)
	require.NoError(t, err)
	retiredBlob, err := old.Seal(secret.FromString(wipeCanary), wipeBinding)
	require.NoError(t, err)
	kr, err := New(wipeKeyNew, []string{wipeKeyOld, v1.EncryptionKey})
	require.NoError(t, err)
	currentBlob, err := kr.Seal(secret.FromString(wipeCanary), wipeBinding)
	require.NoError(t, err)

	for name, blob := range map[string]string{"v2 under a retired key": retiredBlob, "v1": v1.Blob, "already current": currentBlob} {
		kr, err := New(wipeKeyNew, []string{wipeKeyOld, v1.EncryptionKey})
		require.NoError(t, err)
		opened := openedKeys(kr)
		out, err := kr.Rewrap(blob, wipeBinding)
		require.NoError(t, err, name)
		require.False(t, kr.NeedsRewrap(out), name)
		keys := opened()
		require.Len(t, keys, 1, "%s: Rewrap opens the blob once", name)
		require.True(t, keys[0].Wiped(), "%s: Rewrap must wipe the key it opened", name)
	}

	// A blob that does not open hands out no key at all.
	kr, err = New(wipeKeyNew, nil)
	require.NoError(t, err)
	opened := openedKeys(kr)
	_, err = kr.Rewrap(retiredBlob, wipeBinding)
	require.ErrorIs(t, err, seal.ErrCannotOpen)
	require.Empty(t, opened())
}
