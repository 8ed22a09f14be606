package syncer_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/syncer"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// TestProviderStatusLabelsAreBounded: a provider (or whatever answers at its
// base URL) chooses the status code, any of 000–999, and each used to become
// a series of its own.
func TestProviderStatusLabelsAreBounded(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := syncer.NewMetrics(reg)
	for code := range 1000 {
		m.ObserveProvider(tokka.OpenAI, code)
		m.ObserveProvider(tokka.Provider("mallory"), code)
	}
	n := testutil.CollectAndCount(m.ProviderResponses)
	require.LessOrEqual(t, n, 2*22, "2,000 distinct (provider, status) pairs must fold into a fixed set")
	require.Equal(t, 1.0, testutil.ToFloat64(m.ProviderResponses.WithLabelValues("openai", "429")), "codes the syncer acts on keep their own series")
	require.Equal(t, 91.0, testutil.ToFloat64(m.ProviderResponses.WithLabelValues("openai", "4xx")), "400–499 but the 9 codes with a series of their own")
	require.Equal(t, 599.0, testutil.ToFloat64(m.ProviderResponses.WithLabelValues("other", "other")),
		"1–199 and 600–999 from an unknown provider share one series")
}

// TestPassMetricsCountConnectionsByStatus: each pass refreshes the
// connections-per-status gauge (every status has a series, zero included)
// and the time of the last completed pass.
func TestPassMetricsCountConnectionsByStatus(t *testing.T) {
	t.Parallel()
	b := setup(t)
	user := uuid.NewString()
	b.addConnection(t, user, tokka.OpenAI, "sk-admin-status-"+user[:8])
	invalid := b.addConnection(t, user, tokka.Anthropic, "sk-ant-admin01-status-"+user[:8])
	_, err := b.sql.Exec(`UPDATE tokka.connections SET status = 'invalid' WHERE id = $1`, invalid)
	require.NoError(t, err)

	reg := prometheus.NewRegistry()
	m := syncer.NewMetrics(reg)
	s := syncer.New(syncer.Config{Instance: "status", BackfillDays: 3}, b.db, b.kr, b.clients, zerolog.Nop(), m)
	require.Zero(t, testutil.ToFloat64(m.LastPass))
	before := time.Now()
	_, err = s.RunOnce(context.Background())
	require.NoError(t, err)
	require.GreaterOrEqual(t, testutil.ToFloat64(m.LastPass), float64(before.Unix()))
	require.Equal(t, 1.0, testutil.ToFloat64(m.Connections.WithLabelValues("pending")), "counted at the start of the pass")
	require.Equal(t, 1.0, testutil.ToFloat64(m.Connections.WithLabelValues("invalid")))
	require.Zero(t, testutil.ToFloat64(m.Connections.WithLabelValues("compromised")))

	_, err = s.RunOnce(context.Background())
	require.NoError(t, err)
	require.Equal(t, 1.0, testutil.ToFloat64(m.Connections.WithLabelValues("active")))
	require.Zero(t, testutil.ToFloat64(m.Connections.WithLabelValues("pending")), "a status no connection has any more drops to zero")
	require.Equal(t, 6, testutil.CollectAndCount(m.Connections))
}

// TestHealthFailsOnlyWhenTheSyncerStalls is the daemon's liveness probe: it
// answers 200 from start-up while passes end, syncs finish or leases are
// renewed within the stall time, and 503 once nothing has for longer.
func TestHealthFailsOnlyWhenTheSyncerStalls(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := syncer.NewMetrics(prometheus.NewRegistry())
	now := time.Now()
	clock := func() time.Time { return now }
	srv := httptest.NewServer(m.Health(time.Minute, clock))
	t.Cleanup(srv.Close)
	probe := func() (int, string) {
		resp, err := http.Get(srv.URL + "/healthz")
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(body)
	}
	code, body := probe()
	require.Equal(t, http.StatusOK, code, "healthy from start-up, before the first pass")
	require.Contains(t, body, `"status":"ok"`)

	now = now.Add(2 * time.Minute)
	code, body = probe()
	require.Equal(t, http.StatusServiceUnavailable, code, "no progress for longer than the stall time")
	require.Contains(t, body, `"status":"stalled"`)

	// A pass, even one with nothing to do, is progress.
	s := syncer.New(syncer.Config{Instance: "health"}, b.db, b.kr, b.clients, zerolog.Nop(), m)
	_, err := s.RunOnce(context.Background())
	require.NoError(t, err)
	now = time.Now()
	code, _ = probe()
	require.Equal(t, http.StatusOK, code)
	require.WithinRange(t, m.LastProgress(), now.Add(-time.Minute), now)
}
