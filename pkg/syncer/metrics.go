package syncer

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the syncer's Prometheus series. Labels carry provider names
// and outcomes only, never ids, keys or error text.
type Metrics struct {
	PlaintextLifetime *prometheus.HistogramVec
	SyncDuration      *prometheus.HistogramVec
	Syncs             *prometheus.CounterVec
	RowsWritten       *prometheus.CounterVec
	AuditFailures     prometheus.Counter
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
	reg.MustRegister(m.PlaintextLifetime, m.SyncDuration, m.Syncs, m.RowsWritten, m.AuditFailures)
	return m
}
