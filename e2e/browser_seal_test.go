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
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// sealPage is what seal.html recorded: the POSTs it made and the ids it chose.
type sealPage struct {
	URL     string `json:"url"`
	Results struct {
		Kid     string                 `json:"kid"`
		Failure string                 `json:"failure"`
		Steps   map[string]browserStep `json:"steps"`
		Sealed  struct{ ID, Blob string }
		// The ids of the connections the syncer must refuse or open.
		Tampered, Elsewhere, Resealed, Team struct{ ID string }
	} `json:"results"`
	ConsoleErrors []string `json:"consoleErrors"`
}

// TestBrowserSealsTheKey is the real-browser proof of sealing in the client
// (issue 17): with PLAINTEXT_KEYS=refuse, page JavaScript in headless
// Chromium loads the clients/js bundle, reads GET /v1/sealing-key, seals a
// canary key and posts only the blob; the syncer opens it and syncs usage
// equal to the fake provider's to the cent. A plaintext api_key is refused
// with a problem that says how to seal; a tampered blob and one sealed for
// another connection id become invalid; one sealed under a kid the api does
// not use gets 409 with the current parameters, and sealing again succeeds.
// No canary (nor an 8-character piece of one) is in any api or syncer log
// line, either /metrics page, any row (but the blob), or anything the page
// read: only the fake provider received them, which the synced usage,
// derived from the key, proves.
func TestBrowserSealsTheKey(t *testing.T) {
	t.Parallel()
	chromium, node, dir := browserTools(t)
	_, jsDir := sealjsDir(t)
	s := startStackWith(t, stackOptions{noSyncer: true, metrics: true})
	s.api.stop() // this test's api refuses plaintext keys and allows the page's origin

	// The bundle the page loads, built from clients/js's source for this run
	// (esbuild's bin is the platform's native binary).
	bundle := filepath.Join(t.TempDir(), "tokka-seal.js")
	out, err := exec.Command(filepath.Join(jsDir, "node_modules", ".bin", "esbuild"), filepath.Join(jsDir, "src", "index.ts"),
		"--bundle", "--format=esm", "--target=es2022", "--outfile="+bundle, "--log-level=warning").CombinedOutput()
	require.NoError(t, err, string(out))
	script, err := os.ReadFile(bundle)
	require.NoError(t, err)
	pageHTML, err := os.ReadFile(filepath.Join(dir, "seal.html"))
	require.NoError(t, err)
	pages := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_, _ = w.Write(pageHTML)
		case "/tokka-seal.js":
			w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
			_, _ = w.Write(script)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(pages.Close)
	_, port, err := net.SplitHostPort(pages.Listener.Addr().String())
	require.NoError(t, err)
	origin := "http://localhost:" + port

	apiAddr := freeAddr(t)
	api := start(t, append(s.base, "DATABASE_URL="+withUser(s.dbURL, "tokka_api"), "API_ADDR="+apiAddr,
		"ENCRYPTION_PUBLIC_KEY="+s.publicKey(t, s.encryptionKey), "SUPABASE_JWT_SECRET="+string(s.jwtSecret),
		"KEY_FINGERPRINT_SECRET="+s.fingerprintSecret, "CORS_ALLOWED_ORIGINS="+origin, "PLAINTEXT_KEYS=refuse",
		"METRICS_ADDR="+s.apiMetrics, "SHUTDOWN_READINESS_DELAY=0"), s.bin+"/api")
	s.apiURL = "http://" + apiAddr
	waitHTTP(t, s.apiURL+"/readyz")
	syncer := start(t, append(s.syncerEnv(s.encryptionKey), "KEY_FINGERPRINT_SECRET="+s.fingerprintSecret), s.bin+"/syncer", "run")

	u := s.newUser(t)
	openai, anthropic := newCanary("sk-admin-"), newCanary("sk-ant-admin01-")
	plain, tampered, elsewhere, teamKey := newCanary("sk-admin-"), newCanary("sk-admin-"), newCanary("sk-admin-"), newCanary("sk-admin-")
	canaries := []canary{openai, anthropic, plain, tampered, elsewhere, teamKey}
	var team struct{ ID string }
	require.Equal(t, http.StatusCreated, s.call(t, u, http.MethodPost, "/v1/teams", map[string]string{"name": "Browser team"}, &team))
	stale, err := json.Marshal(mustPublicKey(t, s.publicKey(t, randomHex(32))).Parameters())
	require.NoError(t, err)
	frag := "#" + url.Values{"api": {s.apiURL}, "token": {u.token}, "user": {u.id}, "openai": {openai.key},
		"anthropic": {anthropic.key}, "plain": {plain.key}, "tampered": {tampered.key}, "elsewhere": {elsewhere.key},
		"stale": {string(stale)}, "team": {team.ID}, "teamkey": {teamKey.key}}.Encode()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "run.mjs", origin+"/"+frag)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "CHROMIUM_PATH=" + chromium}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "driving Chromium failed:\n%s", stderr.String())
	var got []sealPage
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &got), stdout.String())
	require.Len(t, got, 1)
	page := got[0].Results
	require.Empty(t, page.Failure, "console: %v", got[0].ConsoleErrors)
	for name, st := range page.Steps {
		require.True(t, st.OK, "%s failed in the browser: %s (console: %v)", name, st.Error, got[0].ConsoleErrors)
	}

	// The sealed key is created; the row holds exactly the page's blob.
	require.Equal(t, http.StatusCreated, page.Steps["sealed"].Status, string(page.Steps["sealed"].Body))
	require.True(t, strings.HasPrefix(page.Sealed.Blob, "v2:"+page.Kid+":"), "sealed under the current kid")
	db := s.owner(t)
	var stored string
	require.NoError(t, db.Get(&stored, `SELECT sealed_key FROM tokka.connections WHERE id = $1`, page.Sealed.ID))
	require.Equal(t, page.Sealed.Blob, stored)

	// A plaintext key is refused with a problem that says how to seal.
	refused := page.Steps["plaintext"]
	require.Equal(t, http.StatusBadRequest, refused.Status)
	require.Equal(t, "application/problem+json", *refused.Headers["Content-Type"])
	var problem struct{ Detail, Field string }
	require.NoError(t, json.Unmarshal(refused.Body, &problem))
	require.Equal(t, "api_key", problem.Field)
	require.Contains(t, problem.Detail, "GET /v1/sealing-key")
	require.Contains(t, problem.Detail, "sealed_key")

	// A stale kid: 409 with the current parameters; sealed again, created.
	require.Equal(t, http.StatusConflict, page.Steps["stale"].Status, string(page.Steps["stale"].Body))
	var conflict struct {
		SealingKey struct{ Kid string } `json:"sealing_key"`
	}
	require.NoError(t, json.Unmarshal(page.Steps["stale"].Body, &conflict))
	require.Equal(t, page.Kid, conflict.SealingKey.Kid)
	require.Equal(t, http.StatusCreated, page.Steps["resealed"].Status, string(page.Steps["resealed"].Body))

	// The api cannot open a blob, so it takes the tampered one and the one
	// sealed for another id; the syncer refuses both on its first open.
	require.Equal(t, http.StatusCreated, page.Steps["tampered"].Status, string(page.Steps["tampered"].Body))
	require.Equal(t, http.StatusCreated, page.Steps["elsewhere"].Status, string(page.Steps["elsewhere"].Body))
	s.waitFor(t, u, page.Tampered.ID, "invalid")
	s.waitFor(t, u, page.Elsewhere.ID, "invalid")

	// The syncer opens the good ones and syncs to the cent.
	c := s.waitFor(t, u, page.Sealed.ID, "active")
	require.Equal(t, "sk-admin-…"+openai.key[len(openai.key)-4:], c.KeyHint)
	s.waitFor(t, u, page.Resealed.ID, "active")
	// The team's key was sealed to the team in the browser: it opens.
	require.Equal(t, http.StatusCreated, page.Steps["team"].Status, string(page.Steps["team"].Body))
	s.waitInTeam(t, u, page.Team.ID, "team_id="+team.ID, func(c connection) bool { return c.Status == "active" })
	total := s.requireUsageMatchesFake(t, u, map[string]string{"openai": openai.key, "anthropic": anthropic.key},
		tokka.DayWindow(time.Now(), 90))
	require.True(t, total.IsPositive())

	// Nowhere but in the fake provider's requests.
	seen, err := json.Marshal(got)
	require.NoError(t, err)
	sources := map[string]string{
		"what the page read": string(seen),
		"database":           dumpTables(t, db),
		"api /metrics":       scrape(t, s.apiMetrics),
		"syncer /metrics":    scrape(t, s.syncerMetrics),
	}
	api.stop()
	syncer.stop()
	s.fake.stop()
	sources["api output"], sources["syncer output"], sources["fakeprovider output"] = api.out.String(), syncer.out.String(), s.fake.out.String()
	// The sources hold what they should, so an empty search means something.
	require.Contains(t, sources["api output"], `"route":"/v1/connections"`)
	require.Contains(t, sources["api output"], `"route":"/v1/sealing-key"`)
	require.Contains(t, sources["syncer output"], page.Sealed.ID)
	require.Contains(t, sources["database"], `"key_hint": "sk-admin-…`)
	require.Contains(t, sources["api /metrics"], "tokka_http_request_duration_seconds")
	require.Contains(t, sources["syncer /metrics"], "tokka_key_plaintext_seconds_bucket")
	require.Empty(t, leaks(sources, canaries), "a canary key (or a piece of one) leaked")
}
