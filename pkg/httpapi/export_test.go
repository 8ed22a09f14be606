package httpapi_test

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/httpapi"
	"github.com/tokka-dev/tokka/pkg/pgtest"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// exportFixture gives u a connection with models × days usage and cost rows
// from 2026-01-01: an export grouped by day and model has models × days
// lines of about 60 bytes.
func exportFixture(t *testing.T, b *testBundle, u user, models, days int) {
	t.Helper()
	id := b.createConnection(t, u, tokka.OpenAI, "sk-admin-export0123456789abcdef"+u.id[:4])["id"].(string)
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var usage []tokka.UsageRow
	var costs []tokka.CostRow
	for d := range days {
		day := from.AddDate(0, 0, d)
		for m := range models {
			model := fmt.Sprintf("model-%02d", m)
			usage = append(usage, tokka.UsageRow{Day: day, Family: "completions", Model: model, Tokens: tokka.Tokens{InputUncachedTokens: int64(1000 + m), OutputTokens: int64(d), Requests: 1}})
			costs = append(costs, tokka.CostRow{Day: day, Model: model, AmountUSD: decimal.New(int64(m+1), -2), Amount: decimal.New(int64(m+1), -2), Currency: "usd"})
		}
	}
	syncRows(t, b, id, tokka.Window{From: from, To: from.AddDate(0, 0, days)}, usage, costs)
}

// serveWithSmallBuffers serves h on a listener whose connections have small
// kernel send buffers, so a client that stops reading blocks the handler's
// writes after a few kilobytes instead of after megabytes.
func serveWithSmallBuffers(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Listener = smallBufferListener{srv.Listener}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

type smallBufferListener struct{ net.Listener }

func (l smallBufferListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(4096)
	}
	return c, err
}

// stalledDownload sends GET path over a socket with a small receive buffer,
// reads the status line, the headers and a few bytes of the body, then
// stops reading: a slow client. Closing the returned conn cuts the download.
func stalledDownload(t *testing.T, addr, token, path string) (net.Conn, *http.Response) {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	conn, err := d.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	_, err = fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: tokka\r\nAuthorization: Bearer %s\r\n\r\n", path, token)
	require.NoError(t, err)
	// The deadline only turns a hang (a handler waiting for the database)
	// into a failure; nothing is timed.
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(30*time.Second)))
	r := bufio.NewReaderSize(conn, 64)
	resp, err := http.ReadResponse(r, nil)
	require.NoError(t, err, "the download did not start")
	if resp.StatusCode == http.StatusOK {
		_, err = io.ReadFull(resp.Body, make([]byte, 16))
		require.NoError(t, err)
	}
	return conn, resp
}

// A dimension named twice in group_by is one column of the export, as it
// is one field of a usage group; columns follow the dimensions' order,
// whatever order group_by names them in.
func TestExportNamesEachGroupColumnOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u := b.newUser(t)
	exportFixture(t, b, u, 2, 3)
	status, _, body := b.do(t, u, http.MethodGet, "/v1/usage/export.csv?from=2026-01-01&to=2026-01-03&group_by=model,day,model&group_by=day", nil)
	require.Equal(t, http.StatusOK, status, string(body))
	records, err := csv.NewReader(strings.NewReader(string(body))).ReadAll()
	require.NoError(t, err)
	require.Equal(t, []string{"day", "model", "input_tokens"}, records[0][:3])
	require.Len(t, records, 1+2*3)
	for _, r := range records[1:] {
		require.Len(t, r, len(records[0]))
	}
}

// TestSlowExportDownloadsDoNotStarveOthers: ten exports read by clients
// that stall (two for each of five users, more than the api's pool of
// eight connections) hold no database connection, so another user's list
// and /readyz still answer; a user's third export at once is refused with a
// 429 and Retry-After; cut-off downloads are logged as aborted with the
// bytes sent, not as clean 200s; and once a download ends its slot is free.
func TestSlowExportDownloadsDoNotStarveOthers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	addr := serveWithSmallBuffers(t, b.e)
	const models, days = 20, 120
	path := "/v1/usage/export.csv?from=2026-01-01&to=2026-04-30&group_by=day,model"
	var exporters []user
	for range 5 {
		u := b.newUser(t)
		exportFixture(t, b, u, models, days)
		exporters = append(exporters, u)
	}
	bob := b.newUser(t)
	b.createConnection(t, bob, tokka.Anthropic, "sk-ant-admin01-bobslowexport0123456789")
	var stalled []net.Conn
	for _, u := range exporters {
		for range 2 {
			conn, resp := stalledDownload(t, addr, u.token, path)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			stalled = append(stalled, conn)
		}
	}

	// The api is ready and serves everyone else while the downloads stall.
	// (The deadline only turns a hang into a failure; nothing is timed.)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	get := func(u user, path string) (int, http.Header, []byte) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.url+path, nil)
		require.NoError(t, err)
		if u.token != "" {
			req.Header.Set("Authorization", "Bearer "+u.token)
		}
		resp, err := b.client.Do(req)
		require.NoError(t, err, path)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, resp.Header, body
	}
	status, _, body := get(user{}, "/readyz")
	require.Equal(t, http.StatusOK, status, "readiness does not fail because users are busy: %s", body)
	status, _, body = get(bob, "/v1/connections")
	require.Equal(t, http.StatusOK, status, string(body))
	require.Contains(t, string(body), `"provider":"anthropic"`)

	// A third export of the same user at once is refused, politely.
	status, h, body := get(exporters[0], path)
	require.Equal(t, http.StatusTooManyRequests, status, string(body))
	require.Equal(t, "application/problem+json", h.Get("Content-Type"))
	secs, err := strconv.Atoi(h.Get("Retry-After"))
	require.NoError(t, err)
	require.Positive(t, secs)
	var p httpapi.Problem
	require.NoError(t, json.Unmarshal(body, &p))
	require.Contains(t, p.Detail, "exports")

	// Cut every stalled download off: each is logged as aborted, with the
	// bytes that did go out, and none as a clean 200.
	for _, c := range stalled {
		require.NoError(t, c.Close())
	}
	exportLines := func() (aborted, clean int) {
		for _, l := range logLines(b, 0) {
			if !strings.Contains(l, `"route":"/v1/usage/export.csv"`) || !strings.Contains(l, `"status":200`) {
				continue
			}
			var line struct {
				Aborted bool  `json:"aborted"`
				Bytes   int64 `json:"bytes"`
			}
			require.NoError(t, json.Unmarshal([]byte(l), &line))
			if line.Aborted {
				require.Positive(t, line.Bytes, l)
				aborted++
			} else {
				clean++
			}
		}
		return aborted, clean
	}
	require.Eventually(t, func() bool { a, _ := exportLines(); return a == len(stalled) }, time.Minute, 10*time.Millisecond)
	_, clean := exportLines()
	require.Zero(t, clean, "a cut-off download is not logged as a clean 200")

	// The slots are free again, and a download read to the end is whole.
	status, _, body = get(exporters[0], path)
	require.Equal(t, http.StatusOK, status, string(body))
	records, err := csv.NewReader(strings.NewReader(string(body))).ReadAll()
	require.NoError(t, err)
	require.Len(t, records, 1+models*days)
}

// TestExportCutShortByTheDatabaseIsNotMistakenForWhole stops the database
// while a slow client is part way through a large export: the download
// ends in an error on the client's side (the connection is aborted, with no
// final chunk), never in a clean end of a truncated file, and the request
// is logged as aborted.
func TestExportCutShortByTheDatabaseIsNotMistakenForWhole(t *testing.T) {
	t.Parallel()
	pg := pgtest.StartServer(t)
	b := setup(t, onDatabase(pg.URL()))
	addr := serveWithSmallBuffers(t, b.e)
	alice := b.newUser(t)
	const models, days = 20, 120 // more rows than one chunk of the export
	exportFixture(t, b, alice, models, days)
	conn, resp := stalledDownload(t, addr, alice.token,
		"/v1/usage/export.csv?from=2026-01-01&to=2026-04-30&group_by=day,model")
	require.Equal(t, http.StatusOK, resp.StatusCode)

	pg.Stop()
	require.NoError(t, conn.SetReadDeadline(time.Time{}))
	rest, err := io.ReadAll(resp.Body)
	require.ErrorIs(t, err, io.ErrUnexpectedEOF, "the client must see that the file is incomplete")
	require.Less(t, strings.Count(string(rest), "\n"), models*days)
	require.Eventually(t, func() bool {
		for _, l := range logLines(b, 0) {
			if strings.Contains(l, `"route":"/v1/usage/export.csv"`) && strings.Contains(l, `"aborted":true`) {
				return true
			}
		}
		return false
	}, time.Minute, 10*time.Millisecond)
}
