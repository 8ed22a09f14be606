package httpapi_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/httpapi"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

func idem(key string) []string { return []string{httpapi.HeaderIdempotencyKey, key} }

func (b *testBundle) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, b.sql.Get(&n, query, args...))
	return n
}

// Every POST with an Idempotency-Key answers a retry with the first
// response and changes nothing; the key is the caller's alone, a different
// request with it is 422, and a request that failed keeps nothing.
func TestIdempotencyKeyReplaysTheFirstResponse(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice, bob := b.newUser(t), b.newUser(t)
	conn := map[string]string{"provider": "openai", "api_key": "sk-admin-idemCANARY0123456789abcdef"}

	status, h1, first := b.do(t, alice, http.MethodPost, "/v1/connections", conn, idem("create-1")...)
	require.Equal(t, http.StatusCreated, status, string(first))
	require.Empty(t, h1.Get(httpapi.HeaderIdempotentReplayed))
	var c struct{ ID string }
	require.NoError(t, json.Unmarshal(first, &c))
	require.Equal(t, "/v1/connections/"+c.ID, h1.Get("Location"))
	for i := 0; i < 2; i++ {
		status, h, again := b.do(t, alice, http.MethodPost, "/v1/connections", conn, idem("create-1")...)
		require.Equal(t, http.StatusCreated, status, string(again))
		require.Equal(t, "true", h.Get(httpapi.HeaderIdempotentReplayed))
		require.Equal(t, h1.Get("Location"), h.Get("Location"))
		require.JSONEq(t, string(first), string(again))
	}
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM tokka.connections WHERE team_id = $1`, alice.id))
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM tokka.audit_events WHERE team_id = $1 AND action = 'key.created'`, alice.id))

	// The same key with another body, or on another route, is refused.
	other := map[string]string{"provider": "openai", "api_key": "sk-admin-idemOTHER0123456789abcdefgh"}
	status, _, raw := b.do(t, alice, http.MethodPost, "/v1/connections", other)
	require.Equal(t, http.StatusCreated, status, "without the header: %s", raw)
	for _, tc := range []struct {
		path string
		body any
	}{
		{"/v1/connections", map[string]string{"provider": "openai", "api_key": "sk-admin-idemTHIRD0123456789abcdefgh"}},
		{"/v1/budgets", map[string]string{"amount_usd": "5"}},
		{"/v1/connections/" + c.ID + "/sync", nil},
	} {
		status, h, raw := b.do(t, alice, http.MethodPost, tc.path, tc.body, idem("create-1")...)
		require.Equal(t, http.StatusUnprocessableEntity, status, "%s: %s", tc.path, raw)
		require.Equal(t, "application/problem+json", h.Get("Content-Type"))
	}
	require.Equal(t, 2, b.count(t, `SELECT count(*) FROM tokka.connections WHERE team_id = $1`, alice.id))

	// Keys are per user: Bob's "create-1" is his own.
	status, _, raw = b.do(t, bob, http.MethodPost, "/v1/connections", conn, idem("create-1")...)
	require.Equal(t, http.StatusCreated, status, string(raw))
	require.NotContains(t, string(raw), c.ID)

	// A request that failed keeps nothing: its retry, fixed, runs.
	status, _, _ = b.do(t, alice, http.MethodPost, "/v1/connections",
		map[string]string{"provider": "openai", "api_key": "not-a-key"}, idem("create-2")...)
	require.Equal(t, http.StatusBadRequest, status)
	status, _, raw = b.do(t, alice, http.MethodPost, "/v1/connections",
		map[string]string{"provider": "openai", "api_key": "sk-admin-idemFIXED0123456789abcdefgh"}, idem("create-2")...)
	require.Equal(t, http.StatusCreated, status, string(raw))

	// "Sync now" replays its 202 instead of meeting its own cool-down.
	status, _, _ = b.do(t, alice, http.MethodPost, "/v1/connections/"+c.ID+"/sync", nil, idem("sync-1")...)
	require.Equal(t, http.StatusAccepted, status)
	status, h, _ := b.do(t, alice, http.MethodPost, "/v1/connections/"+c.ID+"/sync", nil, idem("sync-1")...)
	require.Equal(t, http.StatusAccepted, status)
	require.Equal(t, "true", h.Get(httpapi.HeaderIdempotentReplayed))
	status, _, _ = b.do(t, alice, http.MethodPost, "/v1/connections/"+c.ID+"/sync", nil)
	require.Equal(t, http.StatusTooManyRequests, status, "the replay did not ask again")
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM tokka.audit_events WHERE team_id = $1 AND action = 'sync.requested'`, alice.id))

	// Acknowledging an alert.
	_, err := b.db.RaiseAlert(context.Background(), tokka.Alert{TeamID: alice.id, Kind: tokka.AlertSpendAnomaly, DedupKey: "idem", Title: "t"})
	require.NoError(t, err)
	var alertID int64
	require.NoError(t, b.sql.Get(&alertID, `SELECT id FROM tokka.alerts WHERE team_id = $1`, alice.id))
	ack := "/v1/alerts/" + strconv.FormatInt(alertID, 10) + "/acknowledge"
	status, _, ack1 := b.do(t, alice, http.MethodPost, ack, nil, idem("ack-1")...)
	require.Equal(t, http.StatusOK, status)
	status, h, ack2 := b.do(t, alice, http.MethodPost, ack, nil, idem("ack-1")...)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "true", h.Get(httpapi.HeaderIdempotentReplayed))
	require.JSONEq(t, string(ack1), string(ack2))

	// A key that is not 1 to 255 visible ASCII characters, or sent twice,
	// is a 400 that never repeats it.
	for _, hdr := range [][]string{
		idem(""), idem(strings.Repeat("k", 256)), idem("has space CANARY"), idem("ünï-CANARY"),
		append(idem("CANARY-a"), idem("CANARY-b")...),
	} {
		status, h, raw := b.do(t, alice, http.MethodPost, "/v1/connections",
			map[string]string{"provider": "openai", "api_key": "sk-admin-idemBAD0123456789abcdefghij"}, hdr...)
		require.Equal(t, http.StatusBadRequest, status, "%q: %s", hdr, raw)
		require.Equal(t, "application/problem+json", h.Get("Content-Type"))
		require.NotContains(t, string(raw), "CANARY")
	}
	require.Zero(t, b.count(t, `SELECT count(*) FROM tokka.connections WHERE team_id = $1 AND key_hint LIKE '%ghij'`, alice.id))

	// Nothing stored holds the pasted key.
	var stored string
	require.NoError(t, b.sql.Get(&stored, `SELECT coalesce(string_agg(encode(body, 'escape'), ' '), '')
		FROM tokka.idempotency_keys WHERE user_id = $1`, alice.id))
	require.Contains(t, stored, c.ID)
	require.NotContains(t, stored, "CANARY")
	require.NotContains(t, b.logs.String(), "CANARY")
}

// A budget's webhook_secret is shown once: a replay of its creation has
// the same budget without the secret, and the secret is stored nowhere the
// api could read it back.
func TestBudgetReplayNeverRepeatsTheWebhookSecret(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice := b.newUser(t)
	body := map[string]any{"name": "idem", "amount_usd": "10"}
	status, h, first := b.do(t, alice, http.MethodPost, "/v1/budgets", body, idem("budget-1")...)
	require.Equal(t, http.StatusCreated, status, string(first))
	var created map[string]any
	require.NoError(t, json.Unmarshal(first, &created))
	secret, _ := created["webhook_secret"].(string)
	require.True(t, strings.HasPrefix(secret, "whsec_"))
	require.Equal(t, "/v1/budgets/"+created["id"].(string), h.Get("Location"))

	status, h, again := b.do(t, alice, http.MethodPost, "/v1/budgets", body, idem("budget-1")...)
	require.Equal(t, http.StatusCreated, status)
	require.Equal(t, "true", h.Get(httpapi.HeaderIdempotentReplayed))
	var replayed map[string]any
	require.NoError(t, json.Unmarshal(again, &replayed))
	require.NotContains(t, replayed, "webhook_secret")
	delete(created, "webhook_secret")
	require.Equal(t, created, replayed)
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM tokka.budgets WHERE team_id = $1`, alice.id))
	require.Zero(t, b.count(t, `SELECT count(*) FROM tokka.idempotency_keys WHERE position($1::bytea IN body) > 0`,
		[]byte(secret[6:])))
}

// Identical requests racing with one Idempotency-Key make one connection:
// each answer is the first response or a 409 saying the first is still
// running, never a second connection.
func TestConcurrentRequestsWithOneIdempotencyKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice := b.newUser(t)
	conn := map[string]string{"provider": "anthropic", "api_key": "sk-ant-admin01-idemRACE0123456789abcdef"}
	const n = 8
	var wg sync.WaitGroup
	statuses := make([]int, n)
	bodies := make([][]byte, n)
	for i := 0; i < n; i++ {
		wg.Go(func() {
			statuses[i], _, bodies[i] = b.do(t, alice, http.MethodPost, "/v1/connections", conn, idem("race")...)
		})
	}
	wg.Wait()
	ids := map[string]bool{}
	for i, st := range statuses {
		switch st {
		case http.StatusCreated:
			var c struct{ ID string }
			require.NoError(t, json.Unmarshal(bodies[i], &c))
			ids[c.ID] = true
		case http.StatusConflict:
			require.Contains(t, string(bodies[i]), "still being processed")
		default:
			t.Fatalf("status %d: %s", st, bodies[i])
		}
	}
	require.Len(t, ids, 1, "every 201 is the same connection")
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM tokka.connections WHERE team_id = $1`, alice.id))
}

// A key another of the user's connections has is refused on PATCH too,
// naming that connection; the user's own current key, and another user's
// key, are fine. The fingerprint is keyed and per user, and never shown.
func TestKeysAreRecognisedByAKeyedFingerprint(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice, bob := b.newUser(t), b.newUser(t)
	const k1, k2 = "sk-admin-fpONE0123456789abcdefghij", "sk-admin-fpTWO0123456789abcdefghij"
	a := b.createConnection(t, alice, tokka.OpenAI, k1)["id"].(string)
	c := b.createConnection(t, alice, tokka.OpenAI, k2)["id"].(string)

	status, p := b.problem(t, alice, http.MethodPatch, "/v1/connections/"+c, map[string]string{"api_key": k1})
	require.Equal(t, http.StatusConflict, status)
	require.Equal(t, a, p.ConnectionID)
	require.Contains(t, p.Detail, a)
	var hint string
	require.NoError(t, b.sql.Get(&hint, `SELECT key_hint FROM tokka.connections WHERE id = $1`, c))
	require.Equal(t, "sk-admin-…ghij", hint)
	status, _, raw := b.do(t, alice, http.MethodPatch, "/v1/connections/"+c, map[string]string{"api_key": k2})
	require.Equal(t, http.StatusOK, status, "its own key again: %s", raw)
	status, p = b.problem(t, alice, http.MethodPost, "/v1/connections", map[string]string{"provider": "openai", "api_key": k2})
	require.Equal(t, http.StatusConflict, status)
	require.Equal(t, c, p.ConnectionID)
	b.createConnection(t, bob, tokka.OpenAI, k1) // another user's organisation is theirs

	// Once the holder is gone the key may move.
	status, _, _ = b.do(t, alice, http.MethodDelete, "/v1/connections/"+a, nil)
	require.Equal(t, http.StatusNoContent, status)
	status, _, raw = b.do(t, alice, http.MethodPatch, "/v1/connections/"+c, map[string]string{"api_key": k1})
	require.Equal(t, http.StatusOK, status, string(raw))

	var fps []struct {
		User string `db:"team_id"`
		FP   []byte `db:"key_fingerprint"`
	}
	require.NoError(t, b.sql.Select(&fps, `SELECT team_id, key_fingerprint FROM tokka.connections
		WHERE team_id IN ($1, $2) AND key_hint = 'sk-admin-…ghij' ORDER BY team_id`, alice.id, bob.id))
	require.Len(t, fps, 2)
	plain := sha256.Sum256([]byte(k1))
	seen := map[string]bool{}
	for _, f := range fps {
		require.Len(t, f.FP, 32)
		require.NotEqual(t, plain[:], f.FP, "keyed, not a plain hash")
		seen[hex.EncodeToString(f.FP)] = true
		for _, path := range []string{"/v1/connections", "/v1/audit-events"} {
			u := alice
			if f.User == bob.id {
				u = bob
			}
			_, _, body := b.do(t, u, http.MethodGet, path, nil)
			require.NotContains(t, string(body), hex.EncodeToString(f.FP))
		}
		require.NotContains(t, b.logs.String(), hex.EncodeToString(f.FP))
	}
	require.Len(t, seen, 2, "the same key of two users has two unrelated fingerprints")
}
