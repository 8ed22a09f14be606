package profiling_test

import (
	"net"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/profiling"
)

func TestOnlyLoopbackAddressesAreAccepted(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"", "127.0.0.1:6060", "[::1]:6060", "localhost:6060"} {
		require.NoError(t, profiling.CheckLoopback("PPROF_ADDR", ok), ok)
	}
	for _, bad := range []string{":6060", "0.0.0.0:6060", "10.0.0.1:6060", "example.com:6060", "127.0.0.1"} {
		err := profiling.CheckLoopback("PPROF_ADDR", bad)
		require.ErrorContains(t, err, "PPROF_ADDR:", bad)
	}
	_, err := profiling.Serve("X_PPROF_ADDR", "0.0.0.0:0")
	require.ErrorContains(t, err, "X_PPROF_ADDR:")
}

func TestServeServesTheProfiler(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	srv, err := profiling.Serve("PPROF_ADDR", addr)
	require.NoError(t, err)
	defer srv.Close()
	resp, err := http.Get("http://" + addr + "/debug/pprof/")
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode)
}
