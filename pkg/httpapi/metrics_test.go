package httpapi_test

import (
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/httpapi"
)

// TestRequestMetricLabelsAreBounded replays issue 16's finding: the request
// metric took any method a client sent, unauthenticated, so 3,000 requests
// with random methods made 42,140 series. Junk methods and junk paths,
// through the real router, must add no series beyond a fixed set: known
// methods or "other", route templates or "unmatched", and the statuses the
// API writes.
func TestRequestMetricLabelsAreBounded(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	b := setup(t, configured(httpapi.Config{Metrics: httpapi.NewMetrics(reg)}))
	send := func(method, path string) {
		req, err := http.NewRequest(method, b.url+path, nil)
		require.NoError(t, err)
		resp, err := b.client.Do(req)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
	}
	routes := []string{"/healthz", "/v1/connections", "/v1/connections/3f6c1d0e-0000-4000-8000-000000000001", "/v1/usage"}
	for i := range 300 {
		send(fmt.Sprintf("JUNK%d", i), routes[i%len(routes)])
		send(http.MethodGet, fmt.Sprintf("/no/such/route/%d", i))
		send(fmt.Sprintf("X-%d", i), fmt.Sprintf("/elsewhere/%d", i))
	}
	send(http.MethodGet, "/healthz")

	families, err := reg.Gather()
	require.NoError(t, err)
	var series int
	knownRoutes := map[string]bool{"unmatched": true}
	for _, r := range b.e.Routes() {
		knownRoutes[r.Path] = true
	}
	methods := []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}
	for _, f := range families {
		if f.GetName() != "tokka_http_request_duration_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			series++
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "method":
					require.Contains(t, methods, l.GetValue())
				case "route":
					require.True(t, knownRoutes[l.GetValue()], "route label %q", l.GetValue())
				case "status":
					require.True(t, slices.Contains([]string{"200", "401", "404", "405"}, l.GetValue()), "status %q", l.GetValue())
				}
			}
		}
	}
	require.Positive(t, series)
	require.LessOrEqual(t, series, 12, "900 junk requests must not grow the series")
}
