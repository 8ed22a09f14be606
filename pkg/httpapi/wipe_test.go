package httpapi_test

import (
	"net/http"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/httpapi"
	"github.com/tokka-dev/tokka/pkg/seal"
	"github.com/tokka-dev/tokka/pkg/secret"
)

// recordingSealer seals with the real public key and keeps every pasted key
// the api handed it, so a test can check afterwards that the api wiped them.
type recordingSealer struct {
	pk   *seal.PublicKey
	mu   sync.Mutex
	keys []*secret.Key
}

func (s *recordingSealer) Seal(key *secret.Key, b seal.Binding) (string, error) {
	s.mu.Lock()
	s.keys = append(s.keys, key)
	s.mu.Unlock()
	return s.pk.Seal(key, b)
}

func (s *recordingSealer) Parameters() seal.Parameters { return s.pk.Parameters() }

func (s *recordingSealer) sealed() []*secret.Key {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*secret.Key(nil), s.keys...)
}

// TestPastedKeysAreWipedAfterSealing: the key a user pastes to create a
// connection or to replace its key is wiped once the request is handled.
// The keys are checked after the test server
// has shut down, which waits for every handler to return (the wipe runs as
// the handler returns, after the response is written).
func TestPastedKeysAreWipedAfterSealing(t *testing.T) {
	t.Parallel()
	var sealer *recordingSealer
	b := setup(t, sealedBy(func(pk *seal.PublicKey) httpapi.Sealer {
		sealer = &recordingSealer{pk: pk}
		return sealer
	}))
	alice := b.newUser(t)

	c := b.createConnection(t, alice, "openai", "sk-admin-WIPEcreate0123456789abcdefWXYZ")
	connID := c["id"].(string)
	for _, body := range []map[string]string{
		{"api_key": "sk-admin-WIPEreplace0123456789abcdefWXYZ"},
		{"api_key": "sk-admin-WIPEboth0123456789abcdefWXYZ", "label": "renamed"},
	} {
		status, _, resp := b.do(t, alice, http.MethodPatch, "/v1/connections/"+connID, body)
		require.Equal(t, http.StatusOK, status, string(resp))
	}
	b.srv.Close()
	keys := sealer.sealed()
	require.Len(t, keys, 3, "create, replace, replace and rename")
	for i, k := range keys {
		require.True(t, k.Wiped(), "pasted key %d was not wiped after the request", i)
	}
}
