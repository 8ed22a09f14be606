package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/httpapi"
	"github.com/tokka-dev/tokka/pkg/keyring"
	"github.com/tokka-dev/tokka/pkg/seal"
	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// sealFor seals key as a client would, to pk, for u's connection id.
func sealFor(t *testing.T, pk *seal.PublicKey, u user, id string, p tokka.Provider, key string) string {
	t.Helper()
	blob, err := pk.Seal(secret.FromString(key), seal.Binding{TeamID: u.id, ConnectionID: id, Provider: p})
	require.NoError(t, err)
	return blob
}

// The sealing parameters are the current public key, its kid, the suite and
// the exact info and AAD encoding seal uses, cacheable privately until a
// rotation (the ETag is the kid).
func TestSealingKeyIsPublishedWithItsParameters(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u := b.newUser(t)
	status, h, body := b.do(t, u, http.MethodGet, "/v1/sealing-key", nil)
	require.Equal(t, http.StatusOK, status, string(body))
	require.Equal(t, "private, max-age=3600", h.Get("Cache-Control"))
	require.Equal(t, `"`+b.kr.PublicKey().KID()+`"`, h.Get("ETag"))
	var p seal.Parameters
	require.NoError(t, json.Unmarshal(body, &p))
	require.Equal(t, b.kr.PublicKey().Parameters(), p)
	require.Equal(t, b.kr.PublicKey().String(), p.PublicKey)
	require.Equal(t, seal.Info, p.Info)
	require.Equal(t, "tokka/v2/binding", p.AAD.Label)
	require.Equal(t, []string{"team_id", "connection_id", "provider"}, p.AAD.Fields)
	require.Equal(t, uint16(0x647a), p.Suite.KEMID, "X-Wing")
	require.Equal(t, uint16(1), p.Suite.KDFID)
	require.Equal(t, uint16(2), p.Suite.AEADID)

	status, _, _ = b.do(t, user{}, http.MethodGet, "/v1/sealing-key", nil)
	require.Equal(t, http.StatusUnauthorized, status, "only signed-in users ask for it")
}

// A key sealed by the client is stored as sent, under the id the client
// chose, with no hint and no fingerprint (the syncer sets both), and opens
// with the binding of its row.
func TestCreateConnectionWithAClientSealedKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u := b.newUser(t)
	id := uuid.NewString()
	const key = "sk-admin-CLIENTSEALEDclientsealed0001"
	blob := sealFor(t, b.kr.PublicKey(), u, id, tokka.OpenAI, key)

	status, h, body := b.do(t, u, http.MethodPost, "/v1/connections",
		map[string]string{"id": id, "provider": "openai", "label": "sealed", "sealed_key": blob})
	require.Equal(t, http.StatusCreated, status, string(body))
	require.Equal(t, "/v1/connections/"+id, h.Get("Location"))
	var c tokka.Connection
	require.NoError(t, json.Unmarshal(body, &c))
	require.Equal(t, id, c.ID)
	require.Empty(t, c.KeyHint, "the api cannot know the hint; the syncer sets it")
	require.NotContains(t, string(body), blob[:40])

	row := b.row(t, id)
	require.Equal(t, blob, row.Blob)
	require.Equal(t, "", row.KeyHint)
	require.Zero(t, b.count(t, `SELECT count(*) FROM tokka.connections WHERE id = $1 AND key_fingerprint IS NOT NULL`, id))
	require.Equal(t, []string{"key.created:user added a connection (key sealed by the client)"}, b.auditTrail(t, id))
	opened, err := b.kr.Open(row.Blob, seal.Binding{TeamID: u.id, ConnectionID: id, Provider: tokka.OpenAI})
	require.NoError(t, err)
	require.Equal(t, key, string(opened.Bytes()))
	opened.Wipe()

	// The same id again is a conflict, not a second row.
	status, _, body = b.do(t, u, http.MethodPost, "/v1/connections",
		map[string]string{"id": id, "provider": "openai", "sealed_key": blob})
	require.Equal(t, http.StatusConflict, status, string(body))
}

// What the api can check of a sealed key it checks: the v2 form, the id it
// is bound to, a plausible size, and that it is sealed to the current key. A
// retired key id is a 409 carrying the current parameters.
func TestSealedKeysTheAPIRefuses(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u := b.newUser(t)
	id := uuid.NewString()
	good := sealFor(t, b.kr.PublicKey(), u, id, tokka.OpenAI, "sk-admin-CLIENTSEALEDclientsealed0002")
	retired, err := keyring.New("an-older-encryption-key-0123456789-abcdef", nil)
	require.NoError(t, err)
	stale := sealFor(t, retired.PublicKey(), u, id, tokka.OpenAI, "sk-admin-CLIENTSEALEDclientsealed0002")
	short := sealFor(t, b.kr.PublicKey(), u, id, tokka.OpenAI, "sk-admin")

	for name, tc := range map[string]struct {
		body  map[string]string
		field string
	}{
		"no id":           {map[string]string{"provider": "openai", "sealed_key": good}, "id"},
		"uppercase id":    {map[string]string{"id": strings.ToUpper(id), "provider": "openai", "sealed_key": good}, "id"},
		"id alone":        {map[string]string{"id": id, "provider": "openai", "api_key": "sk-admin-PASTEDpastedPASTED0001"}, "id"},
		"both keys":       {map[string]string{"id": id, "provider": "openai", "sealed_key": good, "api_key": "sk-admin-PASTEDpastedPASTED0001"}, "sealed_key"},
		"v1 form":         {map[string]string{"id": id, "provider": "openai", "sealed_key": strings.Repeat("ab", 16) + ":" + strings.Repeat("cd", 16) + ":ef"}, "sealed_key"},
		"upper hex":       {map[string]string{"id": id, "provider": "openai", "sealed_key": strings.ToUpper(good)}, "sealed_key"},
		"truncated":       {map[string]string{"id": id, "provider": "openai", "sealed_key": good[:200]}, "sealed_key"},
		"too short a key": {map[string]string{"id": id, "provider": "openai", "sealed_key": short}, "sealed_key"},
	} {
		status, p := b.problem(t, u, http.MethodPost, "/v1/connections", tc.body)
		require.Equal(t, http.StatusBadRequest, status, name)
		require.Equal(t, tc.field, p.Field, name)
		require.NotContains(t, p.Detail, good[3:40], name)
	}

	status, p := b.problem(t, u, http.MethodPost, "/v1/connections",
		map[string]string{"id": id, "provider": "openai", "sealed_key": stale})
	require.Equal(t, http.StatusConflict, status)
	require.Equal(t, "sealed_key", p.Field)
	require.NotNil(t, p.SealingKey, "the client can seal again at once")
	require.Equal(t, b.kr.PublicKey().Parameters(), *p.SealingKey)
	require.Zero(t, b.count(t, `SELECT count(*) FROM tokka.connections WHERE id = $1`, id), "nothing stored")
}

// PATCH takes a sealed key for the connection's own binding: hint and
// fingerprint are cleared for the syncer to set, the state goes back to
// pending as for a pasted key.
func TestReplaceKeyWithAClientSealedKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u := b.newUser(t)
	c := b.createConnection(t, u, tokka.OpenAI, "sk-admin-PASTEDpastedPASTED0003")
	id := c["id"].(string)
	blob := sealFor(t, b.kr.PublicKey(), u, id, tokka.OpenAI, "sk-admin-CLIENTSEALEDclientsealed0003")
	status, _, body := b.do(t, u, http.MethodPatch, "/v1/connections/"+id, map[string]string{"sealed_key": blob})
	require.Equal(t, http.StatusOK, status, string(body))
	row := b.row(t, id)
	require.Equal(t, blob, row.Blob)
	require.Equal(t, "", row.KeyHint)
	require.Equal(t, "pending", row.Status)
	require.Zero(t, b.count(t, `SELECT count(*) FROM tokka.connections WHERE id = $1 AND key_fingerprint IS NOT NULL`, id))
	require.Contains(t, b.auditTrail(t, id), "key.replaced:user replaced the key (sealed by the client)")

	// The pasted key it replaced may be connected again: its fingerprint
	// went with it.
	b.createConnection(t, u, tokka.OpenAI, "sk-admin-PASTEDpastedPASTED0003")

	retired, err := keyring.New("an-older-encryption-key-0123456789-abcdef", nil)
	require.NoError(t, err)
	status, p := b.problem(t, u, http.MethodPatch, "/v1/connections/"+id,
		map[string]string{"sealed_key": sealFor(t, retired.PublicKey(), u, id, tokka.OpenAI, "sk-admin-CLIENTSEALEDclientsealed0003")})
	require.Equal(t, http.StatusConflict, status)
	require.Equal(t, b.kr.PublicKey().KID(), p.SealingKey.KID)
}

// With PLAINTEXT_KEYS=refuse no request carrying api_key gets past the
// first check, whatever the route, and the refusal says how to seal; sealed
// keys still work. This is the test of SECURITY.md's row "api host
// compromised → no provider key exposed".
func TestPlaintextKeysRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, configured(httpapi.Config{RefusePlaintextKeys: true}))
	u := b.newUser(t)
	const pasted = "sk-admin-PLAINTEXTplaintext0004"
	for _, r := range []struct{ method, path string }{
		{http.MethodPost, "/v1/connections"},
		{http.MethodPatch, "/v1/connections/" + uuid.NewString()},
		{http.MethodPost, "/v1/budgets"},
	} {
		status, p := b.problem(t, u, r.method, r.path, map[string]string{"provider": "openai", "api_key": pasted})
		require.Equal(t, http.StatusBadRequest, status, r.path)
		require.Equal(t, "api_key", p.Field)
		require.Contains(t, p.Detail, "PLAINTEXT_KEYS=refuse", r.path)
		require.Contains(t, p.Detail, "GET /v1/sealing-key", r.path)
	}
	require.Zero(t, b.count(t, `SELECT count(*) FROM tokka.connections WHERE team_id = $1`, u.id))
	require.NotContains(t, b.logs.String(), pasted)

	id := uuid.NewString()
	status, _, body := b.do(t, u, http.MethodPost, "/v1/connections", map[string]string{"id": id, "provider": "openai",
		"sealed_key": sealFor(t, b.kr.PublicKey(), u, id, tokka.OpenAI, pasted)})
	require.Equal(t, http.StatusCreated, status, string(body))
}
