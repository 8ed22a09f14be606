package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httputil"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/seal"
	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/spectest"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// recorder keeps every response (status line, headers, body) the test's
// client receives, after spectest has validated it against openapi.yaml.
type recorder struct {
	base http.RoundTripper
	mu   sync.Mutex
	buf  bytes.Buffer
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	dump, err := httputil.DumpResponse(resp, true)
	if err != nil {
		return nil, err
	}
	// Only what came back: the request (whose path or body may carry a
	// canary on purpose) is not part of what is searched.
	r.mu.Lock()
	fmt.Fprintf(&r.buf, "### response to a %s\n%s\n", req.Method, dump)
	r.mu.Unlock()
	return resp, nil
}

func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String()
}

// stop ends a process the way an orchestrator does (SIGINT, then a kill after
// a grace period) and waits for it, so its last log lines are captured.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.exited: // start's goroutine is the one that waits for it
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

func (s *stack) owner(t *testing.T) *sqlx.DB {
	t.Helper()
	d, err := sqlx.Open("postgres", s.dbURL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close() })
	return d
}

// waitFor polls one connection until its status is want.
func (s *stack) waitFor(t *testing.T, u user, id, want string) connection {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var c connection
		require.Equal(t, http.StatusOK, s.call(t, u, http.MethodGet, "/v1/connections/"+id, nil, &c))
		if c.Status == want {
			return c
		}
		require.True(t, time.Now().Before(deadline), "connection %s is %q, not %q, after 60s (last error %v)", id, c.Status, want, c.LastError)
		time.Sleep(200 * time.Millisecond)
	}
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	return string(body)
}

// dumpTables returns every row of every table in schema tokka as JSON, one
// row a line, leaving out only connections.sealed_key (the ciphertext).
func dumpTables(t *testing.T, db *sqlx.DB) string {
	t.Helper()
	var tables []string
	require.NoError(t, db.Select(&tables, `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'tokka' AND c.relkind IN ('r', 'p') ORDER BY 1`))
	require.Contains(t, tables, "audit_events")
	var out strings.Builder
	for _, name := range tables {
		var rows string
		require.NoError(t, db.Get(&rows, `SELECT coalesce(string_agg((to_jsonb(t) - 'sealed_key')::text, E'\n'), '')
			FROM tokka.`+name+` t`))
		fmt.Fprintf(&out, "## tokka.%s\n%s\n", name, rows)
	}
	return out.String()
}

// canary is a provider key made to be found: after its public part (the
// provider prefix and the fake's behaviour markers, which Tokka may show),
// it is "CANARY" and random letters none of which is a hex digit, so no
// hash, id or ciphertext can contain a piece of it by chance.
type canary struct {
	key, public string
}

func newCanary(public string) canary {
	const letters = "ghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ"
	var b strings.Builder
	for i := 0; i < 40; i++ {
		n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(letters))))
		b.WriteByte(letters[n.Int64()])
	}
	return canary{key: public + "CANARY" + b.String(), public: public}
}

// windows returns the whole key and every 8-character piece of it that
// holds at least one character of its secret part.
func (c canary) windows() []string {
	out := []string{c.key}
	for i := max(0, len(c.public)-7); i+8 <= len(c.key); i++ {
		out = append(out, c.key[i:i+8])
	}
	return out
}

// leaks lists where any window of any canary occurs in any source.
func leaks(sources map[string]string, canaries []canary) []string {
	var found []string
	for name, text := range sources {
		for _, c := range canaries {
			for _, w := range c.windows() {
				if i := strings.Index(text, w); i >= 0 {
					found = append(found, fmt.Sprintf("%s contains %q (from %s…): …%s…", name, w, c.public,
						text[max(0, i-80):min(len(text), i+len(w)+80)]))
					break
				}
			}
		}
	}
	return found
}

func TestCanaryScanFindsAPiece(t *testing.T) {
	t.Parallel()
	c := newCanary("sk-admin-")
	piece := c.key[len(c.public)+10 : len(c.public)+18]
	require.NotEmpty(t, leaks(map[string]string{"log": `{"msg":"x ` + piece + ` y"}`}, []canary{c}))
	require.NotEmpty(t, leaks(map[string]string{"log": "-admin-C"}, []canary{c}), "a piece straddling the prefix counts")
	require.Empty(t, leaks(map[string]string{"log": "sk-admin-…" + c.key[len(c.key)-4:]}, []canary{c}), "the key hint is allowed")
}

// TestCanaryKeysAppearNowhere is the end-to-end proof of "never returned or
// logged": canary keys go through create, sync (a healthy one, one whose
// provider 401 echoes the whole key, one whose provider fails with a 500 before
// a retry succeeds), replace (PATCH, to a revoked key and back to a good one)
// and delete, plus rejected requests that carry them. Then every HTTP
// response, every line the api, the syncer and the fake provider printed
// (debug level), both /metrics pages and every row of every tokka table
// (but connections.sealed_key) are searched for each key and every
// 8-character piece of its secret part.
func TestCanaryKeysAppearNowhere(t *testing.T) {
	t.Parallel()
	s := startStackWith(t, stackOptions{metrics: true})
	rec := &recorder{base: &spectest.Transport{TB: t}}
	s.client = &http.Client{Transport: rec}
	db := s.owner(t)
	alice := s.newUser(t)

	good := newCanary("sk-admin-")
	revoked := newCanary("sk-admin-revoked-")
	regood := newCanary("sk-admin-")
	antRevoked := newCanary("sk-ant-admin01-revoked-")
	antFlaky := newCanary("sk-ant-admin01-flaky-")
	rejected := newCanary("sk-admin-")
	canaries := []canary{good, revoked, regood, antRevoked, antFlaky, rejected}
	snapshots := map[string]string{}

	// Create and sync.
	var oai, antR, antF connection
	require.Equal(t, http.StatusCreated, s.call(t, alice, http.MethodPost, "/v1/connections",
		map[string]string{"provider": "openai", "label": "canary", "api_key": good.key}, &oai))
	require.Equal(t, http.StatusCreated, s.call(t, alice, http.MethodPost, "/v1/connections",
		map[string]string{"provider": "anthropic", "api_key": antRevoked.key}, &antR))
	require.Equal(t, http.StatusCreated, s.call(t, alice, http.MethodPost, "/v1/connections",
		map[string]string{"provider": "anthropic", "api_key": antFlaky.key}, &antF))
	s.waitFor(t, alice, oai.ID, "active")
	invalid := s.waitFor(t, alice, antR.ID, "invalid")
	require.NotNil(t, invalid.LastError, "the echoing 401 left a reason")
	s.waitFor(t, alice, antF.ID, "active")
	snapshots["database after the first syncs"] = dumpTables(t, db)

	// Replace with a key the provider rejects, echoing it, then with a good one.
	var patched connection
	require.Equal(t, http.StatusOK, s.call(t, alice, http.MethodPatch, "/v1/connections/"+oai.ID,
		map[string]string{"api_key": revoked.key}, &patched))
	require.Equal(t, "pending", patched.Status)
	s.waitFor(t, alice, oai.ID, "invalid")
	snapshots["database after the revoked key"] = dumpTables(t, db)
	require.Equal(t, http.StatusOK, s.call(t, alice, http.MethodPatch, "/v1/connections/"+oai.ID,
		map[string]string{"api_key": regood.key, "label": "canary, rotated"}, nil))
	s.waitFor(t, alice, oai.ID, "active")

	// Requests that fail, each carrying a canary somewhere.
	for _, r := range []struct {
		method, path, body string
		status             int
	}{
		{http.MethodPost, "/v1/connections", `{"provider":"anthropic","api_key":"` + rejected.key + `"}`, 400},
		{http.MethodPost, "/v1/connections", `{"provider":"openai","api_key":"` + rejected.key + `","status":"active"}`, 400},
		{http.MethodPost, "/v1/connections", `{"provider":"openai","api_key":"` + rejected.key + ` "}`, 400},
		{http.MethodPost, "/v1/connections", `{"provider":"openai","api_key":["` + rejected.key + `"]}`, 400},
		{http.MethodPatch, "/v1/connections/" + oai.ID, `{"api_key":"sk-ant-admin01-` + rejected.key + `"}`, 400},
		{http.MethodPatch, "/v1/connections/" + oai.ID, `{"api_key":"` + rejected.key + `","sealed_key":"v2:00"}`, 400},
		{http.MethodPatch, "/v1/connections/" + uuid.NewString(), `{"api_key":"` + rejected.key + `"}`, 404},
		{http.MethodPatch, "/v1/connections/" + rejected.key, `{"label":"x"}`, 404},
		{http.MethodGet, "/v1/connections/" + rejected.key, ``, 404},
	} {
		req, err := http.NewRequest(r.method, s.apiURL+r.path, strings.NewReader(r.body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+alice.token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := s.client.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, r.status, resp.StatusCode, r.method+" "+r.path)
	}
	require.Equal(t, http.StatusUnauthorized, s.call(t, user{token: rejected.key}, http.MethodGet, "/v1/connections", nil, nil))

	// Read everything a user can read.
	for _, path := range []string{"/v1/me", "/v1/connections", "/v1/connections/" + oai.ID, "/v1/connections/" + antR.ID,
		"/v1/audit-events?limit=200", "/v1/audit-events/verify", "/v1/alerts?limit=200",
		"/v1/usage?group_by=day,provider,model,connection", "/openapi.yaml"} {
		require.Equal(t, http.StatusOK, s.call(t, alice, http.MethodGet, path, nil, nil), path)
	}
	var verify struct{ Intact bool }
	require.Equal(t, http.StatusOK, s.call(t, alice, http.MethodGet, "/v1/audit-events/verify", nil, &verify))
	require.True(t, verify.Intact)
	snapshots["database before the deletes"] = dumpTables(t, db)
	metricsBefore := map[string]string{"api /metrics before the deletes": scrape(t, s.apiMetrics),
		"syncer /metrics before the deletes": scrape(t, s.syncerMetrics)}

	// Delete.
	for _, id := range []string{oai.ID, antR.ID, antF.ID} {
		require.Equal(t, http.StatusNoContent, s.call(t, alice, http.MethodDelete, "/v1/connections/"+id, nil, nil))
		require.Equal(t, http.StatusNotFound, s.call(t, alice, http.MethodGet, "/v1/connections/"+id, nil, nil))
	}
	require.Equal(t, http.StatusOK, s.call(t, alice, http.MethodGet, "/v1/audit-events?limit=200", nil, nil))
	snapshots["database at the end"] = dumpTables(t, db)
	apiMetrics, syncerMetrics := scrape(t, s.apiMetrics), scrape(t, s.syncerMetrics)
	logPlaintextLifetime(t, syncerMetrics)
	s.api.stop()
	s.syncer.stop()
	s.fake.stop()

	sources := map[string]string{
		"HTTP responses":      rec.String(),
		"api output":          s.api.out.String(),
		"syncer output":       s.syncer.out.String(),
		"fakeprovider output": s.fake.out.String(),
		"api /metrics":        apiMetrics,
		"syncer /metrics":     syncerMetrics,
	}
	for k, v := range snapshots {
		sources[k] = v
	}
	for k, v := range metricsBefore {
		sources[k] = v
	}
	// The sources hold what they should, so an empty search means something.
	require.Contains(t, sources["HTTP responses"], "sk-admin-…"+regood.key[len(regood.key)-4:])
	require.Contains(t, sources["HTTP responses"], `"action":"key.replaced"`)
	require.Contains(t, sources["syncer output"], `"level":"debug"`)
	require.Contains(t, sources["syncer output"], oai.ID)
	require.Contains(t, sources["api output"], `"route":"/v1/connections/:id"`)
	require.Contains(t, sources["syncer /metrics"], "tokka_key_plaintext_seconds_bucket")
	require.Contains(t, sources["api /metrics"], "tokka_http_request_duration_seconds")
	require.Contains(t, sources["database before the deletes"], `"key_hint": "sk-admin-…`)
	require.Contains(t, sources["database at the end"], `"action": "key.deleted"`)
	require.Contains(t, sources["database after the revoked key"], `"status": "invalid"`)

	require.Empty(t, leaks(sources, canaries), "a canary key (or a piece of one) leaked")
}

// logPlaintextLifetime prints the syncer's key plaintext lifetime histogram:
// how long each opened key lived before it was wiped.
func logPlaintextLifetime(t *testing.T, metrics string) {
	t.Helper()
	var lines []string
	for _, l := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(l, "tokka_key_plaintext_seconds") {
			lines = append(lines, l)
		}
	}
	require.NotEmpty(t, lines)
	t.Logf("key plaintext lifetime (decrypt to wipe), from the syncer's /metrics:\n%s", strings.Join(lines, "\n"))
}

type v1Vector struct {
	EncryptionKey string `json:"encryption_key"`
	Plaintext     string `json:"plaintext"`
	Blob          string `json:"blob"`
}

// nodeVectors returns the blobs the seed's Node.js code made
// (pkg/keyring/testdata/v1/gen.js) under the first test key, with an admin
// key of each provider as plaintext.
func nodeVectors(t *testing.T) (key string, openai, anthropic v1Vector) {
	t.Helper()
	raw, err := os.ReadFile("../pkg/keyring/testdata/v1/vectors.json")
	require.NoError(t, err)
	var vs []v1Vector
	require.NoError(t, json.Unmarshal(raw, &vs))
	key = vs[0].EncryptionKey
	for _, v := range vs {
		if v.EncryptionKey != key || len(v.Plaintext) < 40 {
			continue
		}
		switch {
		case strings.HasPrefix(v.Plaintext, "sk-admin-"):
			openai = v
		case strings.HasPrefix(v.Plaintext, "sk-ant-admin"):
			anthropic = v
		}
	}
	require.NotEmpty(t, openai.Blob)
	require.NotEmpty(t, anthropic.Blob)
	return key, openai, anthropic
}

func (s *stack) rewrap(t *testing.T, key string, retired ...string) (lastLine string, exit int) {
	t.Helper()
	cmd := exec.Command(s.bin+"/syncer", "rewrap")
	cmd.Env = s.syncerEnv(key, retired...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee, string(out))
	}
	var summary string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "rewrap: rewrapped") {
			summary = l
		}
	}
	require.NotEmpty(t, summary, "no summary line in:\n%s", out)
	return summary, cmd.ProcessState.ExitCode()
}

// TestRotationRunbook follows the README's rotation runbook step by step on
// the real binaries: a deployment on an old key (with v2 rows and rows
// imported from the seed, made by its Node.js code) rotates to a new key,
// retires the old one, rewraps, removes it, and every connection still
// syncs; a row left behind under the removed key is flagged without
// stopping anything, and comes back when the key is put back.
func TestRotationRunbook(t *testing.T) {
	t.Parallel()
	oldKey, v1OpenAI, v1Anthropic := nodeVectors(t)
	s := startStackWith(t, stackOptions{encryptionKey: oldKey})
	db := s.owner(t)
	alice := s.newUser(t)
	ids := map[string]string{}
	for name, p := range map[string]string{"v2 openai": "openai", "v2 anthropic": "anthropic"} {
		var c connection
		key := map[string]string{"openai": "sk-admin-rotation-", "anthropic": "sk-ant-admin01-rotation-"}[p] + randomHex(8)
		require.Equal(t, http.StatusCreated, s.call(t, alice, http.MethodPost, "/v1/connections",
			map[string]string{"provider": p, "api_key": key}, &c))
		ids[name] = c.ID
	}
	// Rows imported from the seed keep its v1 format until rewrapped.
	for name, v := range map[string]v1Vector{"v1 openai": v1OpenAI, "v1 anthropic": v1Anthropic} {
		id, p := uuid.NewString(), strings.Fields(name)[1]
		_, err := db.Exec(`INSERT INTO tokka.connections (id, team_id, provider, label, key_hint, sealed_key)
			VALUES ($1, $2, $3, 'imported from the seed', 'h', $4)`, id, alice.id, p, v.Blob)
		require.NoError(t, err)
		ids[name] = id
	}
	for _, id := range ids {
		s.waitFor(t, alice, id, "active")
	}
	resync := func() {
		_, err := db.Exec(`UPDATE tokka.connections SET next_sync_at = now() WHERE team_id = $1 AND status = 'active'`, alice.id)
		require.NoError(t, err)
	}
	syncedSince := func(since time.Time) {
		t.Helper()
		for name, id := range ids {
			deadline := time.Now().Add(60 * time.Second)
			for {
				var n int
				require.NoError(t, db.Get(&n, `SELECT count(*) FROM tokka.audit_events WHERE connection_id = $1
					AND action = 'sync.succeeded' AND created_at > $2`, id, since))
				if n > 0 {
					break
				}
				require.True(t, time.Now().Before(deadline), "%s did not sync again within 60s", name)
				time.Sleep(200 * time.Millisecond)
			}
			s.waitFor(t, alice, id, "active")
		}
	}

	// Step 1: a new key. Step 2: the syncer gets it as ENCRYPTION_KEY, the old
	// one moves to ENCRYPTION_KEYS_RETIRED.
	newKey := randomHex(32)
	s.syncer.stop()
	s.startSyncer(t, newKey, oldKey)
	// Step 3: the api gets the new public key.
	s.api.stop()
	s.startAPI(t, s.publicKey(t, newKey))
	var fresh connection
	require.Equal(t, http.StatusCreated, s.call(t, alice, http.MethodPost, "/v1/connections",
		map[string]string{"provider": "openai", "api_key": "sk-admin-afterrotation-" + randomHex(8)}, &fresh))
	ids["v2 openai, new key"] = fresh.ID
	// Everything still syncs: old blobs through the retired key.
	since := time.Now()
	resync()
	syncedSince(since)
	newKID := seal.KeyID(mustPublicKey(t, s.publicKey(t, newKey)).Bytes())
	require.Contains(t, s.syncer.out.String(), `"kid":"`+newKID+`"`, "the syncer's start-up line names the new key id")

	// Steps 4 and 5 of the README: rewrap, and again to check (idempotent).
	summary, exit := s.rewrap(t, newKey, oldKey)
	require.Equal(t, 0, exit, summary)
	require.Equal(t, "rewrap: rewrapped 4, already current 1, failed 0, skipped (changed meanwhile) 0", summary)
	summary, exit = s.rewrap(t, newKey, oldKey)
	require.Equal(t, 0, exit, summary)
	require.Equal(t, "rewrap: rewrapped 0, already current 5, failed 0, skipped (changed meanwhile) 0", summary)
	// Every blob is v2 under the new key id, each rewrapped once.
	for name, id := range ids {
		var blob string
		require.NoError(t, db.Get(&blob, `SELECT sealed_key FROM tokka.connections WHERE id = $1`, id))
		p, err := seal.ParseBlob(blob)
		require.NoError(t, err, name)
		require.Equal(t, 2, p.Version, name)
		require.Equal(t, newKID, p.KID, name)
		var n int
		require.NoError(t, db.Get(&n, `SELECT count(*) FROM tokka.audit_events WHERE connection_id = $1 AND action = 'key.rewrapped'`, id))
		require.Equal(t, map[bool]int{true: 0, false: 1}[name == "v2 openai, new key"], n, name)
	}

	// Step 6: the old key is removed; everything still syncs.
	s.syncer.stop()
	s.startSyncer(t, newKey)
	since = time.Now()
	resync()
	syncedSince(since)

	// Step 7: a row still under the removed key (say, restored from an old
	// backup) is flagged, not skipped and not fatal: the api keeps serving it.
	strayID := uuid.NewString()
	stray := sealedWith(t, s, oldKey, alice.id, strayID, "openai", "sk-admin-stray-"+randomHex(8))
	_, err := db.Exec(`INSERT INTO tokka.connections (id, team_id, provider, label, key_hint, sealed_key)
		VALUES ($1, $2, 'openai', 'restored', 'h', $3)`, strayID, alice.id, stray)
	require.NoError(t, err)
	flagged := s.waitFor(t, alice, strayID, "needs_reconnect")
	require.Contains(t, *flagged.LastError, "encryption key Tokka no longer has")
	var list struct{ Data []connection }
	require.Equal(t, http.StatusOK, s.call(t, alice, http.MethodGet, "/v1/connections", nil, &list))
	require.Len(t, list.Data, 6)
	// Budget and spend-anomaly alerts on the fake's data may be there too;
	// the key-access alerts are what this step is about.
	keyAlerts := func() []string {
		var alerts struct {
			Data []struct {
				Kind         string  `json:"kind"`
				ConnectionID *string `json:"connection_id"`
			}
		}
		require.Equal(t, http.StatusOK, s.call(t, alice, http.MethodGet, "/v1/alerts", nil, &alerts))
		var out []string
		for _, a := range alerts.Data {
			if a.Kind == "key_access" {
				out = append(out, *a.ConnectionID)
			}
		}
		return out
	}
	// The syncer records the status, then raises the alert: wait for it.
	waitFor(t, 30*time.Second, "the key_access alert", func() bool { return len(keyAlerts()) > 0 })
	require.Equal(t, []string{strayID}, keyAlerts())
	summary, exit = s.rewrap(t, newKey)
	require.Equal(t, 1, exit, "rewrap reports keys it cannot open with a failing exit status")
	require.Equal(t, "rewrap: rewrapped 0, already current 5, failed 1, skipped (changed meanwhile) 0", summary)
	// The runbook's remedy: put the old key back as retired and rewrap.
	summary, exit = s.rewrap(t, newKey, oldKey)
	require.Equal(t, 0, exit, summary)
	require.Equal(t, "rewrap: rewrapped 1, already current 5, failed 0, skipped (changed meanwhile) 0", summary)
	s.waitFor(t, alice, strayID, "active")

	var verify struct {
		Intact bool
		Events int
	}
	require.Equal(t, http.StatusOK, s.call(t, alice, http.MethodGet, "/v1/audit-events/verify", nil, &verify))
	require.True(t, verify.Intact)
	require.Positive(t, verify.Events)
}

func mustPublicKey(t *testing.T, text string) *seal.PublicKey {
	t.Helper()
	pk, err := seal.ParsePublicKey(text)
	require.NoError(t, err)
	return pk
}

// sealedWith seals key to the public key of encryptionKey, bound to a row, as
// an api configured with that key would have.
func sealedWith(t *testing.T, s *stack, encryptionKey, userID, connID, provider, key string) string {
	t.Helper()
	blob, err := mustPublicKey(t, s.publicKey(t, encryptionKey)).Seal(secret.FromString(key),
		seal.Binding{TeamID: userID, ConnectionID: connID, Provider: tokka.Provider(provider)})
	require.NoError(t, err)
	return blob
}
