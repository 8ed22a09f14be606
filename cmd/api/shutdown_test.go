package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/authtest"
	"github.com/tokka-dev/tokka/pkg/logtest"
	"github.com/tokka-dev/tokka/pkg/pgtest"
	"github.com/tokka-dev/tokka/pkg/spectest"
)

// TestShutdownTurnsReadinessOffThenDrains replays issue 16's restart
// finding (on SIGTERM the api closed its listener at once: 883 new requests
// refused, 2 accepted connections reset). On cancel (SIGTERM) the api must
// first answer /readyz with 503 while still serving every request, new ones
// and those on connections it already accepted, for SHUTDOWN_READINESS_DELAY;
// only then stop listening, and let a request already in flight finish.
// The test ends the delay itself instead of waiting it out.
func TestShutdownTurnsReadinessOffThenDrains(t *testing.T) {
	t.Parallel()
	env := baseEnv(t)
	env["DATABASE_URL"], env["API_ADDR"] = pgtest.URL(t), "127.0.0.1:0"
	env["SHUTDOWN_READINESS_DELAY"], env["SHUTDOWN_GRACE"] = "1h", "1m"
	cfg, err := loadConfig(envFrom(env), true)
	require.NoError(t, err)
	require.Equal(t, time.Hour, cfg.ShutdownReadinessDelay)
	require.Equal(t, time.Minute, cfg.ShutdownGrace)
	delayOver := make(chan struct{})
	cfg.delayOver = delayOver

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	logs := &logtest.Buffer{}
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, logs, ready) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("serve: %v\n%s", err, logs.String())
	}
	base := "http://" + addr

	// A fresh connection per probe, validated against the spec.
	fresh := spectest.Client(t)
	fresh.Transport.(*spectest.Transport).Base = &http.Transport{DisableKeepAlives: true}
	get := func(c *http.Client, path string) (int, http.Header, string) {
		t.Helper()
		resp, err := c.Get(base + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, resp.Header, string(body)
	}
	status, _, _ := get(fresh, "/readyz")
	require.Equal(t, http.StatusOK, status)

	// A client with a kept-alive connection the api accepted before the
	// signal, and a request whose headers are still arriving.
	keepAlive := spectest.Client(t)
	keepAlive.Transport.(*spectest.Transport).Base = &http.Transport{MaxIdleConnsPerHost: 1}
	status, _, _ = get(keepAlive, "/healthz")
	require.Equal(t, http.StatusOK, status)
	partial := startRequest(t, addr)

	cancel() // SIGTERM
	require.Eventually(t, func() bool {
		resp, err := fresh.Get(base + "/readyz")
		if err != nil {
			return false // fails the check below: the listener must stay open
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		// The database is up: a 503 here is the drain (its detail says
		// "shutting down" once problem documents keep 503 details).
		return resp.StatusCode == http.StatusServiceUnavailable
	}, 10*time.Second, 10*time.Millisecond, "readiness goes false first, while the api still answers")

	// Still serving during the delay: new connections, the kept-alive one
	// (told to close after this answer, so the client moves on), and the
	// request that was arriving.
	status, _, _ = get(fresh, "/healthz")
	require.Equal(t, http.StatusOK, status, "new requests during the delay are served")
	var reused bool
	req, err := http.NewRequest(http.MethodGet, base+"/openapi.yaml", nil)
	require.NoError(t, err)
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused },
	}))
	resp, err := keepAlive.Do(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.True(t, reused, "the connection accepted before the signal still works")
	require.True(t, resp.Close, "and is asked to close after the answer")
	require.Equal(t, http.StatusOK, partial.finish(t), "a request arriving across the signal is answered")

	// The delay ends: the listener closes, but a request in flight (its
	// handler is reading the body) is still answered before serve returns.
	inflight := startUpload(t, addr)
	close(delayOver)
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return false
		}
		return true
	}, 10*time.Second, 10*time.Millisecond, "the listener closes once the delay is over")
	select {
	case err := <-done:
		t.Fatalf("serve returned (%v) while a request was in flight", err)
	default:
	}
	require.Equal(t, http.StatusCreated, inflight.finish(t), "a request in flight when draining starts is answered")
	require.NoError(t, <-done)
	for _, want := range []string{`"message":"shutting down: /readyz answers 503`, `"message":"draining"`, `"message":"stopped"`} {
		require.Contains(t, logs.String(), want)
	}
}

// rawRequest is a request of which only a first part has been sent.
type rawRequest struct {
	conn net.Conn
	rd   *bufio.Reader
	rest string
}

// startRequest sends a GET /healthz without its last header line.

func startRequest(t *testing.T, addr string) *rawRequest {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	_, err = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: tokka.test\r\n")
	require.NoError(t, err)
	return &rawRequest{conn: c, rd: bufio.NewReader(c), rest: "Connection: close\r\n\r\n"}
}

// startUpload sends POST /v1/connections with all its headers and half its
// body, and returns once the handler is reading the body (the server said
// 100 Continue): the request is in flight.
func startUpload(t *testing.T, addr string) *rawRequest {
	t.Helper()
	tok, err := authtest.Token{}.HS256([]byte(testSecret))
	require.NoError(t, err)
	body := `{"provider":"openai","label":"in flight","api_key":"sk-admin-inflight0123456789abcdef"}`
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	_, err = fmt.Fprintf(c, "POST /v1/connections HTTP/1.1\r\nHost: tokka.test\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n%s",
		tok, len(body), body[:20])
	require.NoError(t, err)
	r := &rawRequest{conn: c, rd: bufio.NewReader(c), rest: body[20:]}
	resp, err := http.ReadResponse(r.rd, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusContinue, resp.StatusCode)
	return r
}

// finish sends the rest of the request and returns the answer's status.
func (r *rawRequest) finish(t *testing.T) int {
	t.Helper()
	_, err := io.WriteString(r.conn, r.rest)
	require.NoError(t, err)
	resp, err := http.ReadResponse(r.rd, nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	var body map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	return resp.StatusCode
}
