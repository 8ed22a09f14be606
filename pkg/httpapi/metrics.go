package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the API's Prometheus series, labelled by route template (never
// the raw path, which holds ids), method and status. Every label comes from
// a fixed set, whatever a client sends (see ObserveRequest).
type Metrics struct {
	Requests *prometheus.HistogramVec
}

// NewMetrics registers the API's series on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{Requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tokka_http_request_duration_seconds",
		Help:    "API request latency by route template (\"unmatched\" for no route), method (\"other\" for unusual ones) and status.",
		Buckets: prometheus.DefBuckets,
	}, []string{"route", "method", "status"})}
	reg.MustRegister(m.Requests)
	return m
}

// ObserveRequest records one request. route is the router's template ("" when
// no route matched). Unauthenticated clients choose the method and the path,
// so neither reaches a label as sent: a method outside the standard ones the
// API could serve becomes "other", and every unmatched path is "unmatched".
// A status outside 100–599 (which the API never writes) becomes "other".
func (m *Metrics) ObserveRequest(route, method string, status int, d time.Duration) {
	if route == "" {
		route = "unmatched"
	}
	m.Requests.WithLabelValues(route, methodLabel(method), statusLabel(status)).Observe(d.Seconds())
}

func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return method
	}
	return "other"
}

func statusLabel(status int) string {
	if status < 100 || status > 599 {
		return "other"
	}
	return strconv.Itoa(status)
}
