package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// target is one URL to load: the host to dial and the request to send,
// written once and replayed byte for byte on every connection.
type target struct {
	addr string
	raw  []byte
}

func newTarget(addr, path, token string) target {
	req := "GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nUser-Agent: tokka-bench-api\r\nAccept: */*\r\n"
	if token != "" {
		req += "Authorization: Bearer " + token + "\r\n"
	}
	return target{addr: addr, raw: []byte(req + "\r\n")}
}

// stats is what one measurement saw.
type stats struct {
	requests int           // sent inside the measured window and answered with a 2xx
	elapsed  time.Duration // length of the measured window
	p50, p99 time.Duration
	statuses map[int]int // answers other than 2xx, by status (warm-up included)
	errors   int         // requests that got no answer: connection or protocol errors (warm-up included)
	sample   string      // the first failure, for the reader
}

func (s stats) perSecond() float64 {
	if s.elapsed <= 0 {
		return 0
	}
	return float64(s.requests) / s.elapsed.Seconds()
}

func (s stats) failures() int {
	n := s.errors
	for _, c := range s.statuses {
		n += c
	}
	return n
}

// load keeps conns keep-alive connections busy with t, each sending its
// next request as soon as the previous answer is read (as wrk does), for
// warmup and then d. Only requests sent after the warm-up are counted; the
// window ends when the last of them is answered.
//
// It speaks HTTP/1.1 on raw connections rather than through http.Client:
// the transport's per-connection goroutines and channels would cost the
// load generator more CPU than the servers it measures on a small machine.
func load(ctx context.Context, t target, conns int, warmup, d time.Duration) stats {
	begin := time.Now()
	from, until := begin.Add(warmup), begin.Add(warmup+d)
	type worker struct {
		lat      []time.Duration
		statuses map[int]int
		errors   int
		sample   string
		last     time.Time
	}
	workers := make([]worker, conns)
	var wg sync.WaitGroup
	for i := range workers {
		w := &workers[i]
		w.statuses = map[int]int{}
		wg.Go(func() {
			var c net.Conn
			var br *bufio.Reader
			defer func() {
				if c != nil {
					_ = c.Close()
				}
			}()
			fail := func(msg string) {
				w.errors++
				if w.sample == "" {
					w.sample = msg
				}
				if c != nil {
					_ = c.Close()
					c = nil
				}
			}
			for ctx.Err() == nil {
				start := time.Now()
				if !start.Before(until) {
					return
				}
				if c == nil {
					var err error
					if c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", t.addr); err != nil {
						fail(err.Error())
						// Do not spin on a refused port.
						select {
						case <-ctx.Done():
						case <-time.After(10 * time.Millisecond):
						}
						continue
					}
					br = bufio.NewReaderSize(c, 32<<10)
				}
				// A server that stops answering ends the run rather than hanging it.
				_ = c.SetDeadline(start.Add(time.Minute))
				status, closed, body, err := roundTrip(c, br, t.raw)
				if err != nil {
					fail(err.Error())
					continue
				}
				end := time.Now()
				// Failures count in the warm-up too: none is allowed.
				if status/100 != 2 {
					w.statuses[status]++
					if w.sample == "" {
						w.sample = fmt.Sprintf("HTTP %d: %s", status, body)
					}
				}
				if !start.Before(from) {
					if status/100 == 2 {
						w.lat = append(w.lat, end.Sub(start))
					}
					w.last = end
				}
				if closed {
					_ = c.Close()
					c = nil
				}
			}
		})
	}
	wg.Wait()
	out := stats{statuses: map[int]int{}}
	var lat []time.Duration
	last := from
	for _, w := range workers {
		lat = append(lat, w.lat...)
		for s, n := range w.statuses {
			out.statuses[s] += n
		}
		out.errors += w.errors
		if out.sample == "" {
			out.sample = w.sample
		}
		if w.last.After(last) {
			last = w.last
		}
	}
	out.requests, out.elapsed = len(lat), last.Sub(from)
	out.p50, out.p99 = percentiles(lat)
	return out
}

// roundTrip sends one request and reads its whole answer. body is the start
// of a non-2xx answer's body (for the report), closed whether the server
// ends the connection after it.
func roundTrip(c net.Conn, br *bufio.Reader, raw []byte) (status int, closed bool, body string, err error) {
	if _, err := c.Write(raw); err != nil {
		return 0, false, "", err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, false, "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		head, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		body = string(head)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, false, "", err
	}
	return resp.StatusCode, resp.Close, body, nil
}

// percentiles returns the median and the 99th percentile (nearest rank),
// or zeros for no samples. It sorts lat.
func percentiles(lat []time.Duration) (p50, p99 time.Duration) {
	if len(lat) == 0 {
		return 0, 0
	}
	slices.Sort(lat)
	rank := func(p float64) time.Duration {
		i := int(math.Ceil(p*float64(len(lat)))) - 1
		return lat[min(max(i, 0), len(lat)-1)]
	}
	return rank(.50), rank(.99)
}
