package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// profiler takes CPU profiles of the measured api process through its
// PPROF_ADDR listener, so what is profiled is the process under load, not
// the load generator.
type profiler struct {
	addr, dir string
}

// start begins a CPU profile that covers the measured window of a load
// starting now (after warmup, for d) and returns a function that waits for
// it and writes it to dir/name.pprof. A nil profiler profiles nothing.
func (p *profiler) start(ctx context.Context, name string, warmup, d time.Duration) func() error {
	if p == nil {
		return func() error { return nil }
	}
	done := make(chan error, 1)
	go func() {
		select {
		case <-ctx.Done():
			done <- ctx.Err()
			return
		case <-time.After(warmup):
		}
		seconds := max(1, int(d.Round(time.Second)/time.Second))
		url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", p.addr, seconds)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			done <- err
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- err
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			done <- fmt.Errorf("%s: %s", url, resp.Status)
			return
		}
		f, err := os.Create(filepath.Join(p.dir, name+".pprof"))
		if err != nil {
			done <- err
			return
		}
		_, err = io.Copy(f, resp.Body)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		done <- err
	}()
	return func() error { return <-done }
}

// slug is the endpoint's name as a file name.
func (ep *endpoint) slug() string {
	return strings.Trim(strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(ep.name)), "-")
}
