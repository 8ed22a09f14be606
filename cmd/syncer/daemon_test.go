package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/keyring"
	"github.com/tokka-dev/tokka/pkg/logtest"
	"github.com/tokka-dev/tokka/pkg/pgtest"
	"github.com/tokka-dev/tokka/pkg/seal"
	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// blockingProvider answers nothing until released, then 401 (no retries):
// a sync in flight for as long as the test wants.
type blockingProvider struct {
	arrived chan struct{}
	release chan struct{}
	once    gosync.Once
}

func (p *blockingProvider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.once.Do(func() { close(p.arrived) })
	select {
	case <-p.release:
	case <-r.Context().Done():
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = io.WriteString(w, `{"error":{"message":"invalid key","type":"invalid_request_error"}}`)
}

// TestDaemonServesHealthAndFreesItsMetricsPortWhenDrainStarts replays
// issue 16's restart finding: a syncer restarted on the same host could not
// bind METRICS_ADDR while the old one was still draining its syncs. The
// metrics listener (with /metrics and the liveness probe's /healthz) must
// close as soon as the drain begins, while a sync is still in flight. The
// start-up line names the retired key ids too.
func TestDaemonServesHealthAndFreesItsMetricsPortWhenDrainStarts(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.Fresh(t)
	retiredKey := "fedcba9876543210fedcba9876543210-retired-key"
	kr, err := keyring.New(goodKey, []string{retiredKey})
	require.NoError(t, err)
	db, _ := pgtest.OpenURL(t, dbURL)
	userID, connID := uuid.NewString(), uuid.NewString()
	blob, err := kr.PublicKey().Seal(secret.FromString("sk-admin-daemon0123456789abcdef"), seal.Binding{TeamID: userID, ConnectionID: connID, Provider: "openai"})
	require.NoError(t, err)
	_, err = db.CreateConnection(context.Background(), tokka.User{ID: userID, Claims: []byte(`{"sub":"` + userID + `","role":"authenticated"}`)},
		tokka.NewConnection{ID: connID, Provider: "openai", Label: "daemon", KeyHint: "sk-admin-…cdef", SealedKey: blob},
		tokka.AuditEvent{Action: tokka.ActionKeyCreated, Outcome: tokka.OutcomeSuccess, Actor: "api:test"})
	require.NoError(t, err)

	prov := &blockingProvider{arrived: make(chan struct{}), release: make(chan struct{})}
	provSrv := httptest.NewServer(prov)
	t.Cleanup(provSrv.Close)
	t.Cleanup(func() {
		select {
		case <-prov.release:
		default:
			close(prov.release)
		}
	})
	metricsAddr := freeAddr(t)
	providerURL := "http://" + provSrv.Listener.Addr().String()
	logs := &logtest.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"run"}, env("DATABASE_URL", dbURL, "ENCRYPTION_KEY", goodKey, "ENCRYPTION_KEYS_RETIRED", retiredKey,
			"OPENAI_BASE_URL", providerURL, "ANTHROPIC_BASE_URL", providerURL, "METRICS_ADDR", metricsAddr,
			"SYNC_POLL_INTERVAL", "100ms", "SYNC_SHUTDOWN_GRACE", "1h", "SYNCER_INSTANCE", "daemon-test"), logs)
	}()
	select {
	case <-prov.arrived: // a sync is in flight
	case err := <-done:
		t.Fatalf("run: %v\n%s", err, logs.String())
	}

	kids := kr.KIDs()
	require.Contains(t, logs.String(), `"retired_kids":["`+kids[1]+`"]`, "the start-up line names the retired keys")
	require.Contains(t, logs.String(), `"kid":"`+kids[0]+`"`)
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + metricsAddr + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(body)
	}
	status, body := get("/healthz")
	require.Equal(t, http.StatusOK, status, body)
	require.Contains(t, body, `"status":"ok"`)
	status, body = get("/metrics")
	require.Equal(t, http.StatusOK, status)
	for _, series := range []string{`tokka_connections{status="pending"} 1`, "tokka_sync_last_pass_timestamp_seconds",
		`go_sql_in_use_connections{db_name="tokka"}`, `go_sql_wait_count_total{db_name="tokka"}`} {
		require.Contains(t, body, series)
	}

	cancel() // SIGTERM: the drain begins with the sync still in flight
	require.Eventually(t, func() bool {
		ln, err := net.Listen("tcp", metricsAddr)
		if err != nil {
			return false
		}
		require.NoError(t, ln.Close())
		return true
	}, 10*time.Second, 10*time.Millisecond, "a new syncer on this host can bind METRICS_ADDR while this one drains")
	select {
	case err := <-done:
		t.Fatalf("run returned (%v) before its sync finished: the port was freed only at exit", err)
	default:
	}
	close(prov.release)
	require.NoError(t, <-done)
	require.False(t, strings.Contains(logs.String(), "sk-admin-daemon"), "no key in the logs")
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}
