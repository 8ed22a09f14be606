package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/pgtest"
	"github.com/tokka-dev/tokka/pkg/postgres"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

func TestSyncNowIsLimitedPerConnectionAndAudited(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice, bob := b.newUser(t), b.newUser(t)
	id := b.createConnection(t, alice, tokka.OpenAI, "sk-admin-syncnow0123456789abcdef")["id"].(string)
	other := b.createConnection(t, alice, tokka.OpenAI, "sk-admin-syncnow0123456789abcdeg")["id"].(string)

	listener := b.listen(t)
	status, _, body := b.do(t, alice, http.MethodPost, "/v1/connections/"+id+"/sync", nil)
	require.Equal(t, http.StatusAccepted, status, string(body))
	require.True(t, listener.waitFor(t, id), "the api wakes listening syncers")
	var requested bool
	require.NoError(t, b.sql.Get(&requested, `SELECT sync_requested_at IS NOT NULL FROM tokka.connections WHERE id = $1`, id))
	require.True(t, requested)

	// A second request for the same connection is too soon; another
	// connection is unaffected.
	status, h, body := b.do(t, alice, http.MethodPost, "/v1/connections/"+id+"/sync", nil)
	require.Equal(t, http.StatusTooManyRequests, status, string(body))
	wait, err := strconv.Atoi(h.Get("Retry-After"))
	require.NoError(t, err)
	require.True(t, wait > 250 && wait <= 300, "Retry-After %d", wait)
	status, _, _ = b.do(t, alice, http.MethodPost, "/v1/connections/"+other+"/sync", nil)
	require.Equal(t, http.StatusAccepted, status)

	// Someone else's connection, or none, is a 404.
	status, _, _ = b.do(t, bob, http.MethodPost, "/v1/connections/"+id+"/sync", nil)
	require.Equal(t, http.StatusNotFound, status)
	status, _, _ = b.do(t, alice, http.MethodPost, "/v1/connections/"+uuid.NewString()+"/sync", nil)
	require.Equal(t, http.StatusNotFound, status)

	// A rejected key cannot be retried this way (no validity oracle).
	_, err = b.sql.Exec(`UPDATE tokka.connections SET status = 'invalid' WHERE id = $1`, other)
	require.NoError(t, err)
	_, err = b.sql.Exec(`UPDATE tokka.connections SET last_sync_request_at = NULL WHERE id = $1`, other)
	require.NoError(t, err)
	status, _, _ = b.do(t, alice, http.MethodPost, "/v1/connections/"+other+"/sync", nil)
	require.Equal(t, http.StatusConflict, status)

	_, _, body = b.do(t, alice, http.MethodGet, "/v1/audit-events", nil)
	var evs struct {
		Events []struct{ Action, ConnectionID string } `json:"data"`
	}
	require.NoError(t, json.Unmarshal(body, &evs))
	n := 0
	for _, e := range evs.Events {
		if e.Action == "sync.requested" {
			n++
		}
	}
	require.Equal(t, 2, n, "one audit event per accepted request")
}

type notifications struct{ l *pq.Listener }

// listen subscribes to the syncers' wake-up channel.
func (b *testBundle) listen(t *testing.T) *notifications {
	t.Helper()
	l := pq.NewListener(pgtest.URL(t), 10*time.Millisecond, time.Second, nil)
	require.NoError(t, l.Listen(postgres.SyncChannel))
	t.Cleanup(func() { _ = l.Close() })
	return &notifications{l: l}
}

// waitFor reports whether a notification for connection id arrives within
// 5s. Notifications for other connections are skipped: tests running in
// parallel on the package database create connections, which notify too.
func (n *notifications) waitFor(t *testing.T, id string) bool {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case msg := <-n.l.Notify:
			if msg != nil && msg.Extra == id {
				return true
			}
		case <-deadline:
			return false
		}
	}
}
