package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// profileSlice is the length of one CPU profile the collector asks for, in
// seconds. A process that exits loses its unfinished slice, so short slices
// lose little; go tool pprof merges the files.
const profileSlice = 3

// collector takes back-to-back CPU profiles of a process through its
// pprof listener while a round runs, into dir/<name>-NNN.pprof.
type collector struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// freeLoopback returns a loopback address with a port that was free a
// moment ago, for a child process's profiler.
func freeLoopback() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

// collect profiles the process serving pprof on addr until stop is
// called or the process goes away.
func collect(ctx context.Context, addr, dir, name string) *collector {
	ctx, cancel := context.WithCancel(ctx)
	c := &collector{cancel: cancel}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for i := 1; ctx.Err() == nil; {
			err := fetchProfile(ctx, addr, filepath.Join(dir, fmt.Sprintf("%s-%03d.pprof", name, i)))
			switch {
			case err == nil:
				i++
			case i > 1:
				return // the process has gone
			default:
				// Not listening yet: the process is starting.
				select {
				case <-ctx.Done():
				case <-time.After(20 * time.Millisecond):
				}
			}
		}
	}()
	return c
}

// stop ends the collection; the slice in progress is dropped.
func (c *collector) stop() {
	c.cancel()
	c.wg.Wait()
}

// fetchProfile writes one profileSlice-second CPU profile to path; a
// partial one is removed.
func fetchProfile(ctx context.Context, addr, path string) error {
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, profileSlice)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
	}
	return err
}
