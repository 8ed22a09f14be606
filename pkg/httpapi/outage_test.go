package httpapi_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/httpapi"
	"github.com/tokka-dev/tokka/pkg/pgtest"
)

// unavailableDetail is what every answer says while the database is down.
const unavailableDetail = "the database is unavailable; try again shortly"

// outageReads are GETs that need the database, with the fixture's data.
var outageReads = []string{
	"/v1/connections",
	"/v1/usage?from=2026-10-01&to=2026-11-05&group_by=provider,model",
	"/v1/usage/summary",
	"/v1/usage/export.csv?from=2026-10-01&to=2026-11-05&group_by=day",
	"/v1/audit-events",
	"/v1/budgets",
	"/v1/alerts",
}

// logLines returns the log's lines from the from-th on.
func logLines(b *testBundle, from int) []string {
	all := strings.Split(strings.TrimSpace(b.logs.String()), "\n")
	if from >= len(all) {
		return nil
	}
	return all[from:]
}

// requireUnavailable checks one answer given while the database is down.
func requireUnavailable(t *testing.T, path string, status int, h http.Header, body []byte) {
	t.Helper()
	require.NoError(t, unavailableProblem(path, status, h, body))
}

// unavailableProblem says what is wrong with an answer given while the
// database is down, or nil when it is the 503 problem it must be.
func unavailableProblem(path string, status int, h http.Header, body []byte) error {
	if status != http.StatusServiceUnavailable {
		return fmt.Errorf("%s: status %d, want 503: %s", path, status, body)
	}
	if ct := h.Get("Content-Type"); ct != "application/problem+json" {
		return fmt.Errorf("%s: content type %q", path, ct)
	}
	if secs, err := strconv.Atoi(h.Get("Retry-After")); err != nil || secs < 1 {
		return fmt.Errorf("%s: Retry-After %q", path, h.Get("Retry-After"))
	}
	var p httpapi.Problem
	if err := json.Unmarshal(body, &p); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if p.Detail != unavailableDetail || p.RequestID == "" {
		return fmt.Errorf("%s: problem %+v", path, p)
	}
	return nil
}

// TestDatabaseOutageAnswers503AndRecovers stops the api's database: every
// read and /readyz answer 503 problem+json with Retry-After and a detail
// that says what is wrong, the log holds one line for the whole outage (not
// one per request), and once the database is back every read answers
// exactly what it answered before.
func TestDatabaseOutageAnswers503AndRecovers(t *testing.T) {
	t.Parallel()
	pg := pgtest.StartServer(t)
	b := setup(t, at(nov5), onDatabase(pg.URL()), configured(httpapi.Config{FailureLogEvery: time.Hour}))
	alice := b.newUser(t)
	spendFixture(t, b, alice)
	before := map[string]string{}
	for _, path := range outageReads {
		status, _, body := b.do(t, alice, http.MethodGet, path, nil)
		require.Equal(t, http.StatusOK, status, "%s: %s", path, body)
		before[path] = string(body)
	}
	seen := len(logLines(b, 0))

	pg.Stop()
	const rounds = 4
	for range rounds {
		for _, path := range append([]string{"/readyz"}, outageReads...) {
			status, h, body := b.do(t, alice, http.MethodGet, path, nil)
			requireUnavailable(t, path, status, h, body)
		}
	}
	var failures []string
	for _, l := range logLines(b, seen) {
		if strings.Contains(l, `"level":"error"`) || strings.Contains(l, `"level":"warn"`) {
			failures = append(failures, l)
		}
	}
	require.NotEmpty(t, failures, "the outage is logged")
	require.LessOrEqual(t, len(failures), 2,
		"%d requests failed; the log says so once, not per request:\n%s", rounds*(len(outageReads)+1), strings.Join(failures, "\n"))

	pg.Start()
	require.Eventually(t, func() bool {
		status, _, _ := b.do(t, alice, http.MethodGet, "/readyz", nil)
		return status == http.StatusOK
	}, time.Minute, 50*time.Millisecond)
	for _, path := range outageReads {
		// A pooled connection the stop cut may fail one more request (503);
		// then the answer is exactly the one from before the outage.
		var body []byte
		require.Eventually(t, func() bool {
			var status int
			var h http.Header
			status, h, body = b.do(t, alice, http.MethodGet, path, nil)
			if status != http.StatusOK {
				requireUnavailable(t, path, status, h, body)
			}
			return status == http.StatusOK
		}, time.Minute, 10*time.Millisecond, path)
		require.Equal(t, before[path], string(body), path)
	}
}

// TestRestartUnderLoadFailsFastAndLosesNothing restarts the database while
// clients keep reading: every answer is a 200 or a 503 problem (never a 500
// or a hang), and afterwards the totals are those from before.
func TestRestartUnderLoadFailsFastAndLosesNothing(t *testing.T) {
	t.Parallel()
	pg := pgtest.StartServer(t)
	const clients = 4
	b := setup(t, at(nov5), onDatabase(pg.URL()), configured(httpapi.Config{ExportsPerUser: clients}))
	alice := b.newUser(t)
	spendFixture(t, b, alice)
	const totals = "/v1/usage?from=2026-10-01&to=2026-11-05"
	_, _, want := b.do(t, alice, http.MethodGet, totals, nil)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	var wrong []error
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				path := outageReads[(w+i)%len(outageReads)]
				status, h, body, err := b.get(alice, path)
				if err == nil && status != http.StatusOK {
					err = unavailableProblem(path, status, h, body)
				}
				mu.Lock()
				statuses[status]++
				if err != nil {
					wrong = append(wrong, err)
				}
				mu.Unlock()
			}
		}()
	}
	// Let the clients get going, restart under them, then let them see the
	// database back before stopping them.
	waitForRequests := func(n int) {
		require.Eventually(t, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return statuses[http.StatusOK] >= n
		}, time.Minute, 10*time.Millisecond)
	}
	waitForRequests(20)
	pg.Restart()
	mu.Lock()
	after := statuses[http.StatusOK]
	mu.Unlock()
	waitForRequests(after + 20)
	close(stop)
	wg.Wait()
	t.Logf("answers during the restart: %v", statuses)
	require.Empty(t, wrong, "every answer is a 200 or the 503 problem")
	status, _, got := b.do(t, alice, http.MethodGet, totals, nil)
	require.Equal(t, http.StatusOK, status)
	require.JSONEq(t, string(want), string(got), "the restart lost or doubled nothing")
}

// get is do for other goroutines than the test's: it reports failures
// instead of stopping the test.
func (b *testBundle) get(u user, path string) (int, http.Header, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, b.url+path, nil)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+u.token)
	resp, err := b.client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, body, err
}
