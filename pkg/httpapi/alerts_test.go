package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

func TestAlertsAreRaisedOnceListedAndAcknowledged(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice, bob := b.newUser(t), b.newUser(t)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		created, err := b.db.RaiseAlert(ctx, tokka.Alert{TeamID: alice.id, Kind: tokka.AlertSpendAnomaly,
			DedupKey: "anomaly:2026-11-01", Title: "Spend on 2026-11-01 is far above normal",
			Detail: json.RawMessage(`{"day":"2026-11-01","spend_usd":"12.5"}`)})
		require.NoError(t, err)
		require.Equal(t, i == 0, created, "the same alert fires once")
	}
	_, err := b.db.RaiseAlert(ctx, tokka.Alert{TeamID: alice.id, Kind: tokka.AlertKeyRotation, DedupKey: "rotate:x", Title: "Rotate your key"})
	require.NoError(t, err)

	var list struct {
		Alerts []struct {
			ID             int64           `json:"id"`
			Kind           string          `json:"kind"`
			Detail         json.RawMessage `json:"detail"`
			AcknowledgedAt *string         `json:"acknowledged_at"`
		} `json:"data"`
	}
	status, _, body := b.do(t, alice, http.MethodGet, "/v1/alerts", nil)
	require.Equal(t, http.StatusOK, status)
	require.NoError(t, json.Unmarshal(body, &list))
	require.Len(t, list.Alerts, 2)
	require.Equal(t, "key_rotation", list.Alerts[0].Kind, "newest first")
	require.JSONEq(t, `{"day":"2026-11-01","spend_usd":"12.5"}`, string(list.Alerts[1].Detail))

	id := strconv.FormatInt(list.Alerts[1].ID, 10)
	status, _, _ = b.do(t, bob, http.MethodPost, "/v1/alerts/"+id+"/acknowledge", nil)
	require.Equal(t, http.StatusNotFound, status, "another user's alert")
	status, _, _ = b.do(t, alice, http.MethodPost, "/v1/alerts/"+id+"/acknowledge", nil)
	require.Equal(t, http.StatusOK, status)
	status, _, body = b.do(t, alice, http.MethodGet, "/v1/alerts?open=true", nil)
	require.Equal(t, http.StatusOK, status)
	require.NoError(t, json.Unmarshal(body, &list))
	require.Len(t, list.Alerts, 1)
	require.Equal(t, "key_rotation", list.Alerts[0].Kind)

	status, _, body = b.do(t, bob, http.MethodGet, "/v1/alerts", nil)
	require.Equal(t, http.StatusOK, status)
	require.JSONEq(t, `{"data":[],"has_more":false,"next_cursor":null}`, string(body))
	for _, q := range []string{"open=maybe", "limit=0", "cursor=x"} {
		status, _, _ := b.do(t, alice, http.MethodGet, "/v1/alerts?"+q, nil)
		require.Equal(t, http.StatusBadRequest, status, q)
	}
	status, _, _ = b.do(t, alice, http.MethodPost, "/v1/alerts/abc/acknowledge", nil)
	require.Equal(t, http.StatusNotFound, status)
}
