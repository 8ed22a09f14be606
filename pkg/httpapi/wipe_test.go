package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	openapi "github.com/tokka-dev/tokka"
	"github.com/tokka-dev/tokka/pkg/auth"
	"github.com/tokka-dev/tokka/pkg/authtest"
	"github.com/tokka-dev/tokka/pkg/httpapi"
	"github.com/tokka-dev/tokka/pkg/keyring"
	"github.com/tokka-dev/tokka/pkg/pgtest"
	"github.com/tokka-dev/tokka/pkg/seal"
	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/spectest"
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
	kr, err := keyring.New("test-encryption-key-0123456789-abcdef", nil)
	require.NoError(t, err)
	verifier, err := auth.NewVerifier(auth.Config{HS256Secret: []byte(jwtSecret)})
	require.NoError(t, err)
	sealer := &recordingSealer{pk: kr.PublicKey()}
	e := httpapi.New(httpapi.Config{Metrics: httpapi.NewMetrics(prometheus.NewRegistry()), Fingerprints: fingerprints(t)},
		pgtest.Open(t), sealer, verifier, zerolog.Nop(), openapi.Spec)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	b := &testBundle{url: srv.URL, client: spectest.Client(t)}
	id := uuid.NewString()
	tok, err := authtest.Token{Subject: id}.HS256([]byte(jwtSecret))
	require.NoError(t, err)
	alice := user{id: id, token: tok}

	c := b.createConnection(t, alice, "openai", "sk-admin-WIPEcreate0123456789abcdefWXYZ")
	connID := c["id"].(string)
	for _, body := range []map[string]string{
		{"api_key": "sk-admin-WIPEreplace0123456789abcdefWXYZ"},
		{"api_key": "sk-admin-WIPEboth0123456789abcdefWXYZ", "label": "renamed"},
	} {
		status, _, resp := b.do(t, alice, http.MethodPatch, "/v1/connections/"+connID, body)
		require.Equal(t, http.StatusOK, status, string(resp))
	}
	srv.Close()
	keys := sealer.sealed()
	require.Len(t, keys, 3, "create, replace, replace and rename")
	for i, k := range keys {
		require.True(t, k.Wiped(), "pasted key %d was not wiped after the request", i)
	}
}
