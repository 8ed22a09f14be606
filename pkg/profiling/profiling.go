// Package profiling serves Go's CPU and heap profiler on a loopback
// address, for the binaries whose settings offer it (the syncer's
// PPROF_ADDR, the fake provider's FAKEPROVIDER_PPROF_ADDR) and the
// benchmarks that read it (bench/syncer -pprof).
package profiling

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// CheckLoopback refuses an address that is not a loopback host and port:
// profiles are for whoever runs the process, never for the network. The
// error names the setting (name); "" is accepted (profiling off).
func CheckLoopback(name, addr string) error {
	if addr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	ip := net.ParseIP(host)
	if err != nil || (host != "localhost" && (ip == nil || !ip.IsLoopback())) {
		return fmt.Errorf("%s: %q is not a loopback address like 127.0.0.1:6060", name, addr)
	}
	return nil
}

// Serve starts the /debug/pprof/ handlers on addr (checked with
// CheckLoopback under name) and returns the server, which the caller
// closes. It fails when addr is not loopback or cannot be listened on.
func Serve(name, addr string) (*http.Server, error) {
	if err := CheckLoopback(name, addr); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return srv, nil
}
