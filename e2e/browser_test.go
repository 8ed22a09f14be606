package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/spectest"
)

// browserStep is what the page's JavaScript could see of one call.
type browserStep struct {
	OK      bool               `json:"ok"`
	Error   string             `json:"error"`
	Status  int                `json:"status"`
	Headers map[string]*string `json:"headers"`
	Body    json.RawMessage    `json:"body"`
}

type browserPage struct {
	URL     string `json:"url"`
	Results struct {
		Origin string                 `json:"origin"`
		Steps  map[string]browserStep `json:"steps"`
	} `json:"results"`
	ConsoleErrors []string `json:"consoleErrors"`
}

// browserTools returns Chromium's path and the directory of the page and its
// driver, failing (never skipping) with how to install what is missing.
func browserTools(t *testing.T) (chromium, node, dir string) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir = filepath.Join(filepath.Dir(file), "browser")
	chromium = os.Getenv("CHROMIUM_PATH")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("headless Chromium is needed at %s: run ./scripts/test (it installs it), or `apt-get install -y chromium` "+
			"(or set CHROMIUM_PATH to a Chromium or Chrome binary)", chromium)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is needed to drive Chromium: run ./scripts/test (it installs it), or `apt-get install -y nodejs npm`")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core", "package.json")); err != nil {
		t.Fatalf("playwright-core is not installed in %s: run ./scripts/test, or `npm ci` in that directory", dir)
	}
	return chromium, node, dir
}

// TestBrowserCallsTheAPIFromAnotherOrigin is the real-browser check: a
// static page on one origin calls the api on another with a bearer token
// from headless Chromium. It proves the CORS preflight is answered for the
// configured origin (and that an authenticated call from any other origin is
// never sent), that page JavaScript can read X-Request-Id, the RateLimit-*
// headers, Retry-After, Location and WWW-Authenticate (and not headers the
// api does not expose), and
// that 401, 404 and 429 problem documents are readable by the page.
func TestBrowserCallsTheAPIFromAnotherOrigin(t *testing.T) {
	t.Parallel()
	chromium, node, dir := browserTools(t)
	s := startStack(t)

	// The page's server. http://localhost:<port> is the allowed origin; the
	// same server reached as http://127.0.0.1:<port> is another origin.
	pageHTML, err := os.ReadFile(filepath.Join(dir, "index.html"))
	require.NoError(t, err)
	pages := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(pageHTML)
	}))
	t.Cleanup(pages.Close)
	_, port, err := net.SplitHostPort(pages.Listener.Addr().String())
	require.NoError(t, err)
	allowed, other := "http://localhost:"+port, "http://127.0.0.1:"+port

	// An api that allows the page's origin, with a small mutation budget so
	// the page meets a 429.
	const budget = 3
	apiAddr := freeAddr(t)
	api := start(t, append(s.base, "DATABASE_URL="+withUser(s.dbURL, "tokka_api"), "API_ADDR="+apiAddr,
		"ENCRYPTION_PUBLIC_KEY="+s.publicKey(t, s.encryptionKey), "SUPABASE_JWT_SECRET="+string(s.jwtSecret),
		"KEY_FINGERPRINT_SECRET="+s.fingerprintSecret, "CORS_ALLOWED_ORIGINS="+allowed, "RATE_LIMIT_MUTATIONS_PER_MINUTE="+strconv.Itoa(budget)), s.bin+"/api")
	apiURL := "http://" + apiAddr
	waitHTTP(t, apiURL+"/readyz")

	u := s.newUser(t)
	frag := func(mutations int) string {
		return "#" + url.Values{"api": {apiURL}, "token": {u.token}, "mutations": {strconv.Itoa(mutations)}}.Encode()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "run.mjs", allowed+"/"+frag(2*budget), other+"/"+frag(0))
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "CHROMIUM_PATH=" + chromium}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "driving Chromium failed:\n%s", stderr.String())
	var got []browserPage
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &got), stdout.String())
	require.Len(t, got, 2)
	page, blocked := got[0], got[1]
	require.Equal(t, allowed, page.Results.Origin)
	require.Equal(t, other, blocked.Results.Origin)
	hdr := func(st browserStep, name string) string {
		t.Helper()
		v := st.Headers[name]
		require.NotNil(t, v, "page JavaScript cannot read %s", name)
		return *v
	}
	steps := page.Results.Steps
	for name, st := range steps {
		require.True(t, st.OK, "%s failed in the browser: %s (console: %v)", name, st.Error, page.ConsoleErrors)
		require.NotEmpty(t, hdr(st, "X-Request-Id"), name)
		require.Nil(t, st.Headers["Strict-Transport-Security"], "%s: a header the api does not expose is hidden from the page", name)
		require.Nil(t, st.Headers["Content-Security-Policy"], name)
	}

	// An authenticated GET and a JSON POST: both need a preflight.
	me := steps["me"]
	require.Equal(t, http.StatusOK, me.Status)
	var meBody struct{ ID string }
	require.NoError(t, json.Unmarshal(me.Body, &meBody))
	require.Equal(t, u.id, meBody.ID)
	create := steps["create"]
	require.Equal(t, http.StatusCreated, create.Status, string(create.Body))
	require.Equal(t, strconv.Itoa(budget), hdr(create, "RateLimit-Limit"))
	require.Equal(t, strconv.Itoa(budget-1), hdr(create, "RateLimit-Remaining"))
	require.NotEmpty(t, hdr(create, "RateLimit-Reset"))
	require.NotContains(t, string(create.Body), "BROWSER", "the key is never returned")
	require.True(t, strings.HasPrefix(hdr(create, "Location"), "/v1/connections/"), "the page reads where the connection is")

	// Errors are problem documents the page can read, with the request id.
	for name, want := range map[string]int{"notFound": http.StatusNotFound, "noToken": http.StatusUnauthorized} {
		st := steps[name]
		require.Equal(t, want, st.Status, name)
		require.Equal(t, "application/problem+json", hdr(st, "Content-Type"), name)
		var p struct {
			Status    int
			Title     string
			RequestID string `json:"request_id"`
		}
		require.NoError(t, json.Unmarshal(st.Body, &p), name)
		require.Equal(t, want, p.Status, name)
		require.Equal(t, http.StatusText(want), p.Title, name)
		require.Equal(t, hdr(st, "X-Request-Id"), p.RequestID, name)
	}

	// The page can read the challenge of a 401 (exposed by CORS).
	require.Equal(t, "Bearer", hdr(steps["noToken"], "WWW-Authenticate"))

	// The mutation budget runs out: the page reads 429 and Retry-After.
	limited := 0
	for i := 1; i <= 2*budget; i++ {
		st := steps["delete"+strconv.Itoa(i)]
		require.NotEmpty(t, hdr(st, "RateLimit-Limit"), "delete %d", i)
		switch st.Status {
		case http.StatusNotFound:
		case http.StatusTooManyRequests:
			limited++
			retry, err := strconv.Atoi(hdr(st, "Retry-After"))
			require.NoError(t, err)
			require.Positive(t, retry)
			require.Equal(t, "0", hdr(st, "RateLimit-Remaining"))
		default:
			t.Fatalf("delete %d: status %d", i, st.Status)
		}
	}
	require.Positive(t, limited, "the page never met the rate limit")

	// What the page saw is what the spec promises.
	paths := map[string]struct{ method, path string }{
		"me": {http.MethodGet, "/v1/me"}, "create": {http.MethodPost, "/v1/connections"},
		"notFound": {http.MethodGet, "/v1/connections/00000000-0000-4000-8000-000000000000"},
		"noToken":  {http.MethodGet, "/v1/me"},
	}
	for name, p := range paths {
		st := steps[name]
		req := httptest.NewRequest(p.method, apiURL+p.path, nil)
		h := http.Header{}
		for k, v := range st.Headers {
			if v != nil {
				h.Set(k, *v)
			}
		}
		require.NoError(t, spectest.Validate(req, st.Status, h, st.Body), name)
	}

	// From any other origin, nothing the page sends with a token gets
	// through, and nothing it gets back is readable.
	require.NotEmpty(t, blocked.Results.Steps)
	for name, st := range blocked.Results.Steps {
		require.False(t, st.OK, "%s from a foreign origin was readable", name)
		require.Equal(t, "TypeError", st.Error, name)
	}

	// The api's access log shows the preflights it answered, and that the
	// foreign page's authenticated GET /v1/me was never sent: the only 200
	// for it is the allowed page's.
	type logLine struct {
		Method, Route string
		Status        int
	}
	var preflights, me200 int
	for _, line := range strings.Split(api.out.String(), "\n") {
		var l logLine
		if json.Unmarshal([]byte(line), &l) != nil {
			continue
		}
		if l.Method == http.MethodOptions && l.Status == http.StatusNoContent {
			preflights++
		}
		if l.Method == http.MethodGet && l.Route == "/v1/me" && l.Status == http.StatusOK {
			me200++
		}
	}
	require.GreaterOrEqual(t, preflights, 3, "preflights answered with 204:\n%s", api.out.String())
	require.Equal(t, 1, me200)
}
