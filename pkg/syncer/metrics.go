package syncer

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokka-dev/tokka/pkg/provider"
)

// Metrics are the syncer's Prometheus series. Labels carry provider names
// and outcomes only, never ids, keys or error text.
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
		Help: "Provider HTTP responses by provider and status (0: no response).",
	}, []string{"provider", "status"})
	reg.MustRegister(m.PlaintextLifetime, m.SyncDuration, m.Syncs, m.RowsWritten, m.AuditFailures,
		m.Failures, m.Due, m.LeaseTakeovers, m.ProviderResponses)
	return m
}

// ObserveProvider counts one provider response; pass it as
// provider.HTTPClient.Observe.
func (m *Metrics) ObserveProvider(p provider.Name, status int) {
	m.ProviderResponses.WithLabelValues(string(p), strconv.Itoa(status)).Inc()
}
