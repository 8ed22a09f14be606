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
	loaders := make([]loader, conns)
	var wg sync.WaitGroup
	for i := range loaders {
		l := &loaders[i]
		l.t, l.statuses = t, map[int]int{}
		wg.Go(func() { l.run(ctx, from, until) })
	}
	wg.Wait()
	return merge(loaders, from)
}

// loader is one of load's connections and what it saw. Only its own
// goroutine touches it until load merges the loaders.
type loader struct {
	t        target
	c        net.Conn // nil until dialled and after the server closes it
	br       *bufio.Reader
	lat      []time.Duration // of the measured 2xx answers
	statuses map[int]int
	errors   int
	sample   string
	last     time.Time // when the last measured answer arrived
}

// run sends t's request, one after another, until until (or until ctx
// ends), measuring those sent from from on.
func (l *loader) run(ctx context.Context, from, until time.Time) {
	defer l.hangUp()
	for ctx.Err() == nil {
		start := time.Now()
		if !start.Before(until) {
			return
		}
		if l.c == nil && !l.dial(ctx) {
			continue
		}
		// A server that stops answering ends the run rather than hanging it.
		_ = l.c.SetDeadline(start.Add(time.Minute))
		status, closed, body, err := roundTrip(l.c, l.br, l.t.raw)
		if err != nil {
			l.fail(err.Error())
			continue
		}
		l.record(status, body, start, time.Now(), from)
		if closed {
			l.hangUp()
		}
	}
}

// dial connects to the target, reporting whether it did; a failure is
// counted, and the next attempt waits a moment rather than spin on a
// refused port.
func (l *loader) dial(ctx context.Context) bool {
	c, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", l.t.addr)
	if err != nil {
		l.fail(err.Error())
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
		return false
	}
	l.c, l.br = c, bufio.NewReaderSize(c, 32<<10)
	return true
}

// record counts one answer: a non-2xx one always (failures count in the
// warm-up too: none is allowed), a 2xx one's latency when it was sent
// inside the measured window.
func (l *loader) record(status int, body string, start, end, from time.Time) {
	if status/100 != 2 {
		l.statuses[status]++
		if l.sample == "" {
			l.sample = fmt.Sprintf("HTTP %d: %s", status, body)
		}
	}
	if start.Before(from) {
		return
	}
	if status/100 == 2 {
		l.lat = append(l.lat, end.Sub(start))
	}
	l.last = end
}

// fail counts a request that got no answer and drops the connection.
func (l *loader) fail(msg string) {
	l.errors++
	if l.sample == "" {
		l.sample = msg
	}
	l.hangUp()
}

func (l *loader) hangUp() {
	if l.c != nil {
		_ = l.c.Close()
		l.c = nil
	}
}

// merge adds up what the loaders saw in a window that began at from.
func merge(loaders []loader, from time.Time) stats {
	out := stats{statuses: map[int]int{}}
	var lat []time.Duration
	last := from
	for _, l := range loaders {
		lat = append(lat, l.lat...)
		for s, n := range l.statuses {
			out.statuses[s] += n
		}
		out.errors += l.errors
		if out.sample == "" {
			out.sample = l.sample
		}
		if l.last.After(last) {
			last = l.last
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
