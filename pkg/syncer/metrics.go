package syncer

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// Metrics are the syncer's Prometheus series. Labels carry provider names,
// outcomes, statuses and kinds from fixed sets only, never ids, keys, error
// text or anything a provider chose (see ObserveProvider).
type Metrics struct {
	PlaintextLifetime *prometheus.HistogramVec
	SyncDuration      *prometheus.HistogramVec
	Syncs             *prometheus.CounterVec
	RowsWritten       *prometheus.CounterVec
	AuditFailures     prometheus.Counter
	Failures          *prometheus.CounterVec
	Due               prometheus.Gauge
	LeaseTakeovers    prometheus.Counter
	ProviderResponses *prometheus.CounterVec
	// Connections counts connections by status, refreshed at the start of
	// every pass.
	Connections *prometheus.GaugeVec
	// LastPass is when the last pass that could run (the database answered)
	// completed, as Unix seconds.
	LastPass prometheus.Gauge

	// progress is when the syncer last showed it is working (UnixNano): a
	// pass ended, a sync finished or a lease was renewed. Liveness reads it.
	progress atomic.Int64
	statusMu sync.Mutex
	statuses map[tokka.ConnectionStatus]bool // Connections labels set so far
}

// NewMetrics registers the syncer's series on reg (a fresh registry in
// tests, the default one in the binary).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		PlaintextLifetime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tokka_key_plaintext_seconds",
			Help:    "Time from opening a sealed key to wiping its plaintext.",
			Buckets: []float64{.01, .025, .05, .1, .2, .3, .5, 1, 2, 5, 10, 30, 60},
		}, []string{"provider"}),
		SyncDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tokka_sync_duration_seconds",
			Help:    "Duration of one connection's sync, by provider and outcome.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 12),
		}, []string{"provider", "outcome"}),
		Syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokka_syncs_total",
			Help: "Connection syncs by provider and outcome.",
		}, []string{"provider", "outcome"}),
		RowsWritten: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokka_rows_written_total",
			Help: "Usage and cost rows written by syncs.",
		}, []string{"table"}),
		AuditFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokka_audit_write_failures_total",
			Help: "Audit events that could not be written (the key was then not used).",
		}),
	}
	m.Failures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokka_sync_failures_total",
		Help: "Failed provider calls by provider and kind (auth, rate_limited, unavailable, bad_response, request).",
	}, []string{"provider", "kind"})
	m.Due = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tokka_connections_due",
		Help: "Connections due for a sync at the start of the last pass.",
	})
	m.LeaseTakeovers = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tokka_lease_takeovers_total",
		Help: "Leases taken over after another syncer's lease expired (a crashed or stuck syncer).",
	})
	m.ProviderResponses = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokka_provider_responses_total",
		Help: "Provider HTTP responses by provider and status (0: no response; unusual codes grouped as 2xx…5xx or other).",
	}, []string{"provider", "status"})
	m.Connections = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tokka_connections",
		Help: "Connections by status, counted at the start of the last pass.",
	}, []string{"status"})
	m.LastPass = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tokka_sync_last_pass_timestamp_seconds",
		Help: "When the last sync pass that could run completed (Unix time; 0: none yet).",
	})
	m.progress.Store(time.Now().UnixNano())
	reg.MustRegister(m.PlaintextLifetime, m.SyncDuration, m.Syncs, m.RowsWritten, m.AuditFailures,
		m.Failures, m.Due, m.LeaseTakeovers, m.ProviderResponses, m.Connections, m.LastPass)
	return m
}

// ObserveProvider counts one provider response; pass it as
// provider.HTTPClient.Observe. A provider (or something posing as one)
// chooses its status codes, any of 000–999, so only the codes the syncer
// acts on are labels of their own; other ones count under their class
// ("2xx" … "5xx") or "other".
func (m *Metrics) ObserveProvider(p tokka.Provider, status int) {
	m.ProviderResponses.WithLabelValues(providerLabel(string(p)), providerStatusLabel(status)).Inc()
}

// observeSync records one connection's sync and counts as progress.
func (m *Metrics) observeSync(p, outcome string, d time.Duration) {
	p = providerLabel(p)
	m.SyncDuration.WithLabelValues(p, outcome).Observe(d.Seconds())
	m.Syncs.WithLabelValues(p, outcome).Inc()
	m.progressed(time.Now())
}

// passDone records the end of a pass; ran is false when the pass could not
// run (the database did not answer), which still shows the scheduler alive.
func (m *Metrics) passDone(now time.Time, ran bool) {
	if ran {
		m.LastPass.Set(float64(now.UnixNano()) / 1e9)
	}
	m.progressed(now)
}

func (m *Metrics) progressed(now time.Time) { m.progress.Store(now.UnixNano()) }

// knownStatuses always have a series, zero when no connection has them.
var knownStatuses = []tokka.ConnectionStatus{tokka.StatusPending, tokka.StatusActive, tokka.StatusInvalid, tokka.StatusError,
	tokka.StatusNeedsReconnect, tokka.StatusCompromised}

// setConnections replaces the per-status counts. Statuses come from the
// database, whose CHECK constraint bounds them; one that disappears drops
// to zero rather than keeping its last count.
func (m *Metrics) setConnections(counts map[tokka.ConnectionStatus]int) {
	m.statusMu.Lock()
	defer m.statusMu.Unlock()
	if m.statuses == nil {
		m.statuses = map[tokka.ConnectionStatus]bool{}
		for _, s := range knownStatuses {
			m.statuses[s] = true
		}
	}
	for s := range counts {
		m.statuses[s] = true
	}
	for s := range m.statuses {
		m.Connections.WithLabelValues(string(s)).Set(float64(counts[s]))
	}
}

// StatusCounter counts connections by status for the per-status gauge.
type StatusCounter interface {
	CountByStatus(ctx context.Context) (map[tokka.ConnectionStatus]int, error)
}

// observeConnections refreshes the per-status gauge; a failure leaves the
// last counts (the pass itself reports database trouble).
func (s *Syncer) observeConnections(ctx context.Context) {
	if counts, err := s.store.CountByStatus(ctx); err == nil {
		s.metrics.setConnections(counts)
	}
}

// LastProgress returns when the syncer last showed it is working: a pass
// ended (even one the database refused), a sync finished, or a lease was
// renewed; before any of these, when the metrics were created.
func (m *Metrics) LastProgress() time.Time { return time.Unix(0, m.progress.Load()) }

// Health answers a liveness probe: 200 while the syncer has made progress
// (see LastProgress) within stall, 503 once it has not, since a scheduler
// that stopped running passes and no sync in flight means a wedged process
// that only a restart fixes. now is the clock (time.Now in the binary).
func (m *Metrics) Health(stall time.Duration, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		last := m.LastProgress()
		since := now().Sub(last)
		status, code := "ok", http.StatusOK
		if since > stall {
			status, code = "stalled", http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(code)
		if r.Method == http.MethodHead {
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{
			"status": status, "last_progress": last.UTC().Format(time.RFC3339Nano),
			"stall_after_seconds": stall.Seconds(),
		})
	})
}

func providerLabel(p string) string {
	switch tokka.Provider(p) {
	case tokka.OpenAI, tokka.Anthropic:
		return p
	}
	return "other"
}

// providerStatusLabel keeps the statuses the provider clients treat
// differently (see provider.HTTPClient) and groups the rest.
func providerStatusLabel(status int) string {
	switch status {
	case 0, 200, 400, 401, 403, 404, 408, 409, 413, 422, 429, 500, 502, 503, 504, 529:
		return strconv.Itoa(status)
	}
	if status >= 200 && status <= 599 {
		return strconv.Itoa(status/100) + "xx"
	}
	return "other"
}
