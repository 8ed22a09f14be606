package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/httpapi"
	"github.com/tokka-dev/tokka/pkg/seal"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

type connectionRow struct {
	Blob         string     `db:"sealed_key"`
	Label        string     `db:"label"`
	KeyHint      string     `db:"key_hint"`
	KeySetAt     time.Time  `db:"key_set_at"`
	Status       string     `db:"status"`
	LastError    *string    `db:"last_error"`
	BackfilledAt *time.Time `db:"backfilled_at"`
	NextSyncAt   time.Time  `db:"next_sync_at"`
}

func (b *testBundle) row(t *testing.T, id string) connectionRow {
	t.Helper()
	var r connectionRow
	require.NoError(t, b.sql.Get(&r, `SELECT sealed_key, label, key_hint, key_set_at, status, last_error,
		backfilled_at, next_sync_at FROM tokka.connections WHERE id = $1`, id))
	return r
}

func (b *testBundle) auditTrail(t *testing.T, id string) []string {
	t.Helper()
	var out []string
	require.NoError(t, b.sql.Select(&out, `SELECT action || ':' || purpose FROM tokka.audit_events WHERE connection_id = $1 ORDER BY id`, id))
	return out
}

type alertView struct {
	ID             int64   `json:"id"`
	Kind           string  `json:"kind"`
	ConnectionID   *string `json:"connection_id"`
	AcknowledgedAt *string `json:"acknowledged_at"`
}

func (b *testBundle) openAlerts(t *testing.T, u user) []alertView {
	t.Helper()
	status, _, body := b.do(t, u, http.MethodGet, "/v1/alerts?open=true&limit=200", nil)
	require.Equal(t, http.StatusOK, status)
	var list struct {
		Alerts []alertView `json:"data"`
	}
	require.NoError(t, json.Unmarshal(body, &list))
	return list.Alerts
}

func TestPatchReplacesTheKeyUnderTheSameBinding(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice := b.newUser(t)
	oldKey, newKey := "sk-admin-CANARYpatchOLD0123456789abcdOLDK", "sk-admin-CANARYpatchNEW0123456789abcdNEWK"
	id := b.createConnection(t, alice, tokka.OpenAI, oldKey)["id"].(string)
	other := b.createConnection(t, alice, tokka.Anthropic, "sk-ant-admin01-CANARYother0123456789")["id"].(string)
	syncFixture(t, b, id)
	// An old key that was rejected, with history, and a rotation reminder due.
	backfilled := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	_, err := b.sql.Exec(`UPDATE tokka.connections SET backfilled_at = $2, key_set_at = now() - interval '120 days',
		status = 'invalid', last_error = 'the provider rejected the key', next_sync_at = now() + interval '6 hours'
		WHERE id = ANY($1)`, "{"+id+","+other+"}", backfilled)
	require.NoError(t, err)
	_, err = b.db.RemindKeyRotations(context.Background(), 90)
	require.NoError(t, err)
	_, err = b.db.RaiseAlert(context.Background(), tokka.Alert{TeamID: alice.id, Kind: tokka.AlertKeyAccess, ConnectionID: &id,
		DedupKey: "key_access:" + id, Title: "A stored key failed its integrity check"})
	require.NoError(t, err)
	require.Len(t, b.openAlerts(t, alice), 3)
	before := b.row(t, id)

	start := time.Now()
	status, _, body := b.do(t, alice, http.MethodPatch, "/v1/connections/"+id, map[string]string{"api_key": newKey})
	require.Equal(t, http.StatusOK, status, string(body))
	require.NotContains(t, string(body), "CANARY")
	var c struct {
		ID, Status, Label string
		KeyHint           string     `json:"key_hint"`
		KeySetAt          time.Time  `json:"key_set_at"`
		LastError         *string    `json:"last_error"`
		NextSyncAt        *time.Time `json:"next_sync_at"`
	}
	require.NoError(t, json.Unmarshal(body, &c))
	require.Equal(t, id, c.ID)
	require.Equal(t, "pending", c.Status)
	require.Nil(t, c.LastError)
	require.Equal(t, "sk-admin-…NEWK", c.KeyHint)
	require.Equal(t, before.Label, c.Label)
	require.WithinDuration(t, start, c.KeySetAt, 5*time.Second)
	require.False(t, c.NextSyncAt.After(time.Now()), "due at once")

	after := b.row(t, id)
	require.NotEqual(t, before.Blob, after.Blob)
	requireV2Blob(t, after.Blob)
	require.True(t, after.KeySetAt.After(before.KeySetAt))
	require.NotNil(t, after.BackfilledAt)
	require.True(t, backfilled.Equal(*after.BackfilledAt), "history is kept: only the trailing window is re-read")
	// Same binding: the new blob opens for this row only.
	binding := seal.Binding{TeamID: alice.id, ConnectionID: id, Provider: "openai"}
	k, err := b.kr.Open(after.Blob, binding)
	require.NoError(t, err)
	require.Equal(t, newKey, string(k.Bytes()))
	k.Wipe()
	_, err = b.kr.Open(after.Blob, seal.Binding{TeamID: alice.id, ConnectionID: other, Provider: "openai"})
	require.ErrorIs(t, err, seal.ErrCannotOpen)

	trail := b.auditTrail(t, id)
	require.Equal(t, "key.replaced:user replaced the key", trail[len(trail)-1])
	// The reminder about the old key is acknowledged; the other connection's
	// reminder and the key_access alert stay open.
	open := b.openAlerts(t, alice)
	require.Len(t, open, 2)
	for _, a := range open {
		require.False(t, a.Kind == "key_rotation" && *a.ConnectionID == id, "the old key's reminder is still open")
	}
	require.NotContains(t, b.logs.String(), "CANARY")
}

func TestPatchRenames(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice := b.newUser(t)
	id := b.createConnection(t, alice, tokka.Anthropic, "sk-ant-admin01-renameKEY0123456789abcd")["id"].(string)
	before := b.row(t, id)

	status, _, body := b.do(t, alice, http.MethodPatch, "/v1/connections/"+id, map[string]string{"label": "  Production  "})
	require.Equal(t, http.StatusOK, status, string(body))
	var c map[string]any
	require.NoError(t, json.Unmarshal(body, &c))
	require.Equal(t, "Production", c["label"])
	after := b.row(t, id)
	require.Equal(t, before.Blob, after.Blob, "a rename leaves the key alone")
	require.True(t, before.KeySetAt.Equal(after.KeySetAt))
	require.Equal(t, before.Status, after.Status)

	status, _, body = b.do(t, alice, http.MethodPatch, "/v1/connections/"+id,
		map[string]string{"label": "Staging", "api_key": "sk-ant-admin01-bothKEY0123456789abcdefg"})
	require.Equal(t, http.StatusOK, status, string(body))
	after = b.row(t, id)
	require.Equal(t, "Staging", after.Label)
	require.Equal(t, "sk-ant-admin…defg", after.KeyHint)
	require.Equal(t, []string{"key.created:user added a connection", "connection.renamed:user renamed the connection",
		"key.replaced:user replaced the key and renamed the connection"}, b.auditTrail(t, id))
}

func TestPatchRejectsBadInputAndChangesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice, bob := b.newUser(t), b.newUser(t)
	id := b.createConnection(t, alice, tokka.OpenAI, "sk-admin-patchbad0123456789abcdefgh")["id"].(string)
	before := b.row(t, id)
	const canary = "sk-admin-CANARYpatchbad0123456789"
	cases := []struct {
		name, body string
		status     int
		field      string
	}{
		{"empty object", `{}`, 400, ""},
		{"only nulls", `{"label":null,"api_key":null}`, 400, "label"}, // null is refused, not "absent"
		{"blank label", `{"label":"   "}`, 400, "label"},
		{"long label", `{"label":"` + strings.Repeat("x", 101) + `"}`, 400, "label"},
		{"control label", `{"label":"a\u0007b"}`, 400, "label"},
		{"anthropic key for openai", `{"api_key":"sk-ant-admin01-CANARYxxxxxxxxxxxxxxxxxx"}`, 400, "api_key"},
		{"project key", `{"api_key":"sk-proj-CANARYxxxxxxxxxxxxxxxxxxxxx"}`, 400, "api_key"},
		{"key not a string", `{"api_key":1234567890123456789}`, 400, "api_key"},
		{"key with space", `{"api_key":"sk-admin-CANARY xxxxxxxxxxxxxxxxx"}`, 400, "api_key"},
		{"mass assignment sealed_key", `{"api_key":"` + canary + `","sealed_key":"v2:00"}`, 400, "sealed_key"},
		{"mass assignment status", `{"label":"x","status":"active"}`, 400, "status"},
		{"mass assignment provider", `{"label":"x","provider":"anthropic"}`, 400, "provider"},
		{"mass assignment user_id", `{"label":"x","user_id":"` + uuid.NewString() + `"}`, 400, "user_id"},
		{"mass assignment team_id", `{"label":"x","team_id":"` + uuid.NewString() + `"}`, 400, "team_id"},
		{"mass assignment key_set_at", `{"label":"x","key_set_at":"2020-01-01T00:00:00Z"}`, 400, "key_set_at"},
		{"not an object", `["label"]`, 400, ""},
		{"trailing data", `{"label":"x"} {}`, 400, ""},
		{"huge body", `{"label":"` + strings.Repeat("x", 70000) + `"}`, 413, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, h, body := b.do(t, alice, http.MethodPatch, "/v1/connections/"+id, tc.body)
			require.Equal(t, tc.status, status, string(body))
			require.Equal(t, "application/problem+json", h.Get("Content-Type"))
			require.NotContains(t, string(body), "CANARY")
			var p httpapi.Problem
			require.NoError(t, json.Unmarshal(body, &p))
			require.Equal(t, tc.field, p.Field)
		})
	}
	// Someone else's connection looks exactly like a missing one.
	_, _, missing := b.do(t, bob, http.MethodPatch, "/v1/connections/"+uuid.NewString(), map[string]string{"label": "x"})
	status, _, body := b.do(t, bob, http.MethodPatch, "/v1/connections/"+id, map[string]string{"api_key": canary})
	require.Equal(t, http.StatusNotFound, status)
	require.Equal(t, stripRequestID(missing), stripRequestID(body))
	status, _, _ = b.do(t, alice, http.MethodPatch, "/v1/connections/not-a-uuid", map[string]string{"label": "x"})
	require.Equal(t, http.StatusNotFound, status)

	after := b.row(t, id)
	require.Equal(t, before, after, "no rejected request changed anything")
	require.Equal(t, []string{"key.created:user added a connection"}, b.auditTrail(t, id))
	require.NotContains(t, b.logs.String(), "CANARY")
}

func TestAuditVerifyEndpointFindsTheEditedEvent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice, bob := b.newUser(t), b.newUser(t)
	id := b.createConnection(t, alice, tokka.OpenAI, "sk-admin-verify0123456789abcdefghij")["id"].(string)
	b.createConnection(t, alice, tokka.Anthropic, "sk-ant-admin01-verify0123456789abcdef")
	status, _, _ := b.do(t, alice, http.MethodPatch, "/v1/connections/"+id, map[string]string{"label": "renamed"})
	require.Equal(t, http.StatusOK, status)
	status, _, _ = b.do(t, alice, http.MethodDelete, "/v1/connections/"+id, nil)
	require.Equal(t, http.StatusNoContent, status)

	// The list shows the chain: each event's prev_hash is the hash of the
	// one before it (the list is newest first).
	status, _, body := b.do(t, alice, http.MethodGet, "/v1/audit-events", nil)
	require.Equal(t, http.StatusOK, status)
	var list struct {
		Events []struct {
			ID       int64   `json:"id"`
			Hash     string  `json:"hash"`
			PrevHash *string `json:"prev_hash"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(body, &list))
	require.Len(t, list.Events, 4)
	require.Nil(t, list.Events[3].PrevHash)
	for i := 0; i < 3; i++ {
		require.Equal(t, list.Events[i+1].Hash, *list.Events[i].PrevHash)
	}

	status, _, body = b.do(t, alice, http.MethodGet, "/v1/audit-events/verify", nil)
	require.Equal(t, http.StatusOK, status)
	require.JSONEq(t, `{"intact":true,"events":4,"checked":4,"first_broken_id":null,"problem":null,"head_hash":"`+list.Events[0].Hash+`"}`, string(body))
	status, _, body = b.do(t, bob, http.MethodGet, "/v1/audit-events/verify", nil)
	require.Equal(t, http.StatusOK, status)
	require.JSONEq(t, `{"intact":true,"events":0,"checked":0,"first_broken_id":null,"problem":null,"head_hash":null}`, string(body))

	// The table owner (a database-level attacker) rewrites history behind
	// the checkpoint: the next incremental check reads nothing new, the full
	// one finds it.
	edited := list.Events[2].ID
	_, err := b.sql.Exec(`UPDATE tokka.audit_events SET purpose = 'nothing to see' WHERE id = $1`, edited)
	require.NoError(t, err)
	status, _, body = b.do(t, alice, http.MethodGet, "/v1/audit-events/verify", nil)
	require.Equal(t, http.StatusOK, status)
	require.JSONEq(t, `{"intact":true,"events":4,"checked":0,"first_broken_id":null,"problem":null,"head_hash":"`+list.Events[0].Hash+`"}`, string(body))
	status, _, body = b.do(t, alice, http.MethodGet, "/v1/audit-events/verify?full=true", nil)
	require.Equal(t, http.StatusOK, status)
	var v struct {
		Intact        bool    `json:"intact"`
		Events        int64   `json:"events"`
		FirstBrokenID *int64  `json:"first_broken_id"`
		Problem       *string `json:"problem"`
		HeadHash      *string `json:"head_hash"`
	}
	require.NoError(t, json.Unmarshal(body, &v))
	require.False(t, v.Intact)
	require.EqualValues(t, 4, v.Events)
	require.Equal(t, edited, *v.FirstBrokenID)
	require.Contains(t, *v.Problem, "edited")
	require.Nil(t, v.HeadHash)

	status, _, body = b.do(t, bob, http.MethodGet, "/v1/audit-events/verify?full=true", nil)
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, string(body), `"intact":true`, "another user's chain is not affected")
	status, _, _ = b.do(t, user{}, http.MethodGet, "/v1/audit-events/verify", nil)
	require.Equal(t, http.StatusUnauthorized, status)
	for _, q := range []string{"full=yes", "full=2", "full=maybe"} {
		status, h, body := b.do(t, alice, http.MethodGet, "/v1/audit-events/verify?"+q, nil)
		requireProblem(t, status, h, body, http.StatusBadRequest, q)
		require.Contains(t, string(body), `"field":"full"`)
	}
}
