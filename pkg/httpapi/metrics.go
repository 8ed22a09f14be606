package httpapi

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the API's Prometheus series, labelled by route template (never
// the raw path, which holds ids) and status.
type Metrics struct {
	Requests *prometheus.HistogramVec
}

// NewMetrics registers the API's series on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{Requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tokka_http_request_duration_seconds",
		Help:    "API request latency by route, method and status.",
		Buckets: prometheus.DefBuckets,
	}, []string{"route", "method", "status"})}
	reg.MustRegister(m.Requests)
	return m
}
