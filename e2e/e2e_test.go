// Package e2e runs the real binaries (api, syncer, fakeprovider) as separate
// processes that share only a Postgres database, the way an operator runs
// them, and drives them over HTTP like the SPA would.
package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/authtest"
	"github.com/tokka-dev/tokka/pkg/logtest"
	"github.com/tokka-dev/tokka/pkg/pgtest"
	"github.com/tokka-dev/tokka/pkg/spectest"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds the three commands once per test run, with the race
// detector, into a temporary directory.
func binaries(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "tokka-e2e-bin-")
		if buildErr != nil {
			return
		}
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Dir(filepath.Dir(file))
		cmd := exec.Command("go", "build", "-race", "-o", binDir+"/", "./cmd/api", "./cmd/syncer", "./cmd/fakeprovider", "./cmd/devtoken")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	require.NoError(t, buildErr)
	return binDir
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// proc is a running binary whose combined output the test can read.
type proc struct {
	cmd    *exec.Cmd
	out    *logtest.Buffer
	exited chan struct{} // closed once the process has been waited for
}

// wait returns the exit code once the process has ended, or fails the test
// after timeout.
func (p *proc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %s", filepath.Base(p.cmd.Path), timeout)
		return -1
	}
}

func start(t *testing.T, env []string, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), out: &logtest.Buffer{}}
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.exited = make(chan struct{})
	require.NoError(t, p.cmd.Start())
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(bin), p.out.String())
		}
	})
	return p
}

func waitHTTP(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s did not answer within 30s", url)
}

// serve starts a server binary whose listen addresses come from freeAddr
// and waits until ready() answers. freeAddr closes the port it found, so
// another process (a parallel test's server, an outgoing connection given
// that ephemeral port) can take it before the binary binds it; when the
// binary exits saying so, repick chooses new addresses and it starts again
// (three tries). env and ready are called after each repick.
func serve(t *testing.T, bin string, env func() []string, repick func(), ready func() string) *proc {
	t.Helper()
	for try := 1; ; try++ {
		p := start(t, env(), bin)
		if waitServing(ready(), p) {
			return p
		}
		if try == 3 || !strings.Contains(p.out.String(), "address already in use") {
			t.Fatalf("%s did not answer within 30s", ready())
		}
		repick()
	}
}

// waitServing waits until url answers below 500 (true), or p exits or 30s
// pass (false).
func waitServing(url string, p *proc) bool {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return false
		default:
		}
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return true
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

// stack is a running api + syncer + fakeprovider on one fresh database.
type stack struct {
	api, syncer, fake *proc
	apiURL            string
	client            *http.Client
	jwtSecret         []byte
	encryptionKey     string
	fingerprintSecret string // the api's KEY_FINGERPRINT_SECRET
	dbURL             string

	bin      string   // the built binaries
	base     []string // environment every process gets
	fakeAddr string
	apiAddr  string
	// apiMetrics and syncerMetrics are the METRICS_ADDR of each, when
	// stackOptions.metrics asked for them.
	apiMetrics, syncerMetrics string
}

// stackOptions changes what startStackWith runs; the zero value is the
// stack every test gets from startStack.
type stackOptions struct {
	encryptionKey string // the syncer's ENCRYPTION_KEY; default random
	metrics       bool   // serve /metrics from the api and the syncer
	noSyncer      bool   // the test starts its own syncers
	fakeLatency   string // FAKEPROVIDER_LATENCY, e.g. "100ms"
}

func runWithEnv(env []string, bin string, args ...string) ([]byte, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	return cmd.CombinedOutput()
}

func withUser(dbURL, user string) string {
	u, _ := url.Parse(dbURL)
	u.User = url.UserPassword(user, "tokka-e2e")
	return u.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// loginRoles serialises deploy/login-roles.sql across this binary's tests.
var loginRoles sync.Mutex

func startStack(t *testing.T) *stack { return startStackWith(t, stackOptions{}) }

func startStackWith(t *testing.T, opts stackOptions) *stack {
	t.Helper()
	bin := binaries(t)
	dbURL := pgtest.Fresh(t)
	if opts.encryptionKey == "" {
		opts.encryptionKey = randomHex(32)
	}
	s := &stack{jwtSecret: []byte(randomHex(32)), encryptionKey: opts.encryptionKey, fingerprintSecret: randomHex(32),
		dbURL: dbURL, client: spectest.Client(t)}
	base := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir(), "LOG_LEVEL=debug"}
	s.bin, s.base = bin, slices.Clip(base) // appends to it never share an array
	if opts.metrics {
		s.apiMetrics, s.syncerMetrics = freeAddr(t), freeAddr(t)
	}

	// The operator's steps: migrate as the owner, create the login roles.
	out, err := runWithEnv(append(base, "DATABASE_URL="+dbURL), bin+"/api", "migrate")
	require.NoError(t, err, string(out))
	psql, err := exec.LookPath("psql")
	require.NoError(t, err, "psql (postgresql-client) is needed to apply deploy/login-roles.sql")
	_, file, _, _ := runtime.Caller(0)
	roles := filepath.Join(filepath.Dir(filepath.Dir(file)), "deploy", "login-roles.sql")
	// The login roles are the cluster's, shared by every test's database:
	// two ALTER ROLEs of one role at once fail ("tuple concurrently
	// updated"), so the tests of this binary take turns.
	loginRoles.Lock()
	out, err = exec.Command(psql, dbURL, "-q", "-v", "api_password=tokka-e2e", "-v", "syncer_password=tokka-e2e", "-f", roles).CombinedOutput()
	loginRoles.Unlock()
	require.NoError(t, err, string(out))

	s.fakeAddr, s.apiAddr = freeAddr(t), freeAddr(t)
	s.fake = serve(t, bin+"/fakeprovider",
		func() []string {
			return append(base, "FAKEPROVIDER_ADDR="+s.fakeAddr, "FAKEPROVIDER_LATENCY="+opts.fakeLatency)
		},
		func() { s.fakeAddr = freeAddr(t) },
		func() string { return "http://" + s.fakeAddr + "/v1/organization/costs" })

	s.startAPI(t, s.publicKey(t, s.encryptionKey))
	if !opts.noSyncer {
		s.startSyncer(t, s.encryptionKey)
	}
	return s
}

// publicKey is `syncer public-key` for key.
func (s *stack) publicKey(t *testing.T, key string) string {
	t.Helper()
	out, err := runWithEnv(append(s.base, "ENCRYPTION_KEY="+key), s.bin+"/syncer", "public-key")
	require.NoError(t, err, string(out))
	return strings.TrimSpace(string(out))
}

// startAPI starts the api (on the stack's address, so restarts keep apiURL
// unless another process took the port meanwhile) sealing to publicKey,
// and waits until it is ready.
func (s *stack) startAPI(t *testing.T, publicKey string) {
	t.Helper()
	env := func() []string {
		// No readiness delay on shutdown: no load balancer needs to notice.
		env := append(s.base, "DATABASE_URL="+withUser(s.dbURL, "tokka_api"), "API_ADDR="+s.apiAddr,
			"ENCRYPTION_PUBLIC_KEY="+publicKey, "SUPABASE_JWT_SECRET="+string(s.jwtSecret),
			"KEY_FINGERPRINT_SECRET="+s.fingerprintSecret, "SHUTDOWN_READINESS_DELAY=0")
		if s.apiMetrics != "" {
			env = append(env, "METRICS_ADDR="+s.apiMetrics)
		}
		return env
	}
	repick := func() {
		s.apiAddr = freeAddr(t)
		if s.apiMetrics != "" {
			s.apiMetrics = freeAddr(t)
		}
	}
	s.api = serve(t, s.bin+"/api", env, repick, func() string { return "http://" + s.apiAddr + "/readyz" })
	s.apiURL = "http://" + s.apiAddr
}

// syncerEnv is the syncer's environment with ENCRYPTION_KEY=key and, when
// given, ENCRYPTION_KEYS_RETIRED.
func (s *stack) syncerEnv(key string, retired ...string) []string {
	env := append(s.base, "DATABASE_URL="+withUser(s.dbURL, "tokka_sync"), "ENCRYPTION_KEY="+key,
		"SYNC_POLL_INTERVAL=500ms", "OPENAI_BASE_URL=http://"+s.fakeAddr, "ANTHROPIC_BASE_URL=http://"+s.fakeAddr)
	if len(retired) > 0 {
		env = append(env, "ENCRYPTION_KEYS_RETIRED="+strings.Join(retired, ","))
	}
	if s.syncerMetrics != "" {
		env = append(env, "METRICS_ADDR="+s.syncerMetrics)
	}
	return env
}

// startSyncer starts `syncer run` with ENCRYPTION_KEY=key and retired keys.
func (s *stack) startSyncer(t *testing.T, key string, retired ...string) {
	t.Helper()
	s.syncer = start(t, s.syncerEnv(key, retired...), s.bin+"/syncer", "run")
}

type user struct{ id, token string }

func (s *stack) newUser(t *testing.T) user {
	t.Helper()
	id := uuid.NewString()
	tok, err := authtest.Token{Subject: id, Email: id[:8] + "@example.com"}.HS256(s.jwtSecret)
	require.NoError(t, err)
	return user{id: id, token: tok}
}

func (s *stack) call(t *testing.T, u user, method, path string, body any, into any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.apiURL+path, rd)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+u.token)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if into != nil && resp.StatusCode < 300 {
		require.NoError(t, json.Unmarshal(raw, into), string(raw))
	}
	return resp.StatusCode
}

type connection struct {
	ID        string  `json:"id"`
	Provider  string  `json:"provider"`
	Status    string  `json:"status"`
	KeyHint   string  `json:"key_hint"`
	LastError *string `json:"last_error"`
}

func TestAPIRefusesToStartWithTheSyncerSecret(t *testing.T) {
	t.Parallel()
	bin := binaries(t)
	cmd := exec.Command(bin + "/api")
	cmd.Env = []string{"ENCRYPTION_KEY=" + randomHex(32), "DATABASE_URL=postgres://127.0.0.1:1/x"}
	out, err := cmd.CombinedOutput()
	require.Error(t, err)
	require.Equal(t, 1, cmd.ProcessState.ExitCode())
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	require.Len(t, lines, 1, "one clear line")
	require.Contains(t, lines[0], "ENCRYPTION_KEY is set in the api's environment")
}

// TestWalkingSkeleton is issue 2's "done when": paste two keys, both become
// active within 30 seconds, the API's usage equals what the fake provider
// serves, the audit log shows every use of each key, and another user sees
// none of it.
func TestWalkingSkeleton(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	alice, bob := s.newUser(t), s.newUser(t)
	keys := map[string]string{
		"openai":    "sk-admin-e2eSKELETON" + randomHex(8),
		"anthropic": "sk-ant-admin01-e2eSKELETON" + randomHex(8),
	}
	ids := map[string]string{}
	for p, k := range keys {
		var c connection
		status := s.call(t, alice, http.MethodPost, "/v1/connections", map[string]string{"provider": p, "api_key": k}, &c)
		require.Equal(t, http.StatusCreated, status)
		require.Equal(t, "pending", c.Status)
		require.Equal(t, p, c.Provider)
		require.True(t, strings.HasSuffix(c.KeyHint, k[len(k)-4:]))
		ids[p] = c.ID
	}

	deadline := time.Now().Add(30 * time.Second)
	var list struct{ Data []connection }
	for {
		require.Equal(t, http.StatusOK, s.call(t, alice, http.MethodGet, "/v1/connections", nil, &list))
		active := 0
		for _, c := range list.Data {
			if c.Status == "active" {
				active++
			}
		}
		if active == 2 {
			break
		}
		require.True(t, time.Now().Before(deadline), "connections not active within 30s: %+v", list.Data)
		time.Sleep(200 * time.Millisecond)
	}

	// Expected figures, from the fake's own data functions, per day,
	// provider and model, over the 90-day backfill.
	w := tokka.DayWindow(time.Now(), 90)
	q := "/v1/usage?from=" + w.From.Format(time.DateOnly) + "&to=" + w.To.AddDate(0, 0, -1).Format(time.DateOnly) + "&group_by=day,provider,model"
	totalCost := s.requireUsageMatchesFake(t, alice, keys, w)
	require.True(t, totalCost.IsPositive())

	var audit struct {
		Data []struct {
			Action, Outcome, Provider string
			ConnectionID              string `json:"connection_id"`
		}
	}
	require.Equal(t, http.StatusOK, s.call(t, alice, http.MethodGet, "/v1/audit-events?limit=200", nil, &audit))
	for p, id := range ids {
		var actions []string
		for i := len(audit.Data) - 1; i >= 0; i-- { // oldest first
			if e := audit.Data[i]; e.ConnectionID == id {
				actions = append(actions, e.Action+":"+e.Outcome)
			}
		}
		require.Equal(t, []string{"key.created:success", "key.decrypted:success", "sync.succeeded:success"}, actions, p)
	}

	// Bob sees none of it.
	for _, id := range ids {
		require.Equal(t, http.StatusNotFound, s.call(t, bob, http.MethodGet, "/v1/connections/"+id, nil, nil))
	}
	var bobUsage struct{ Data []map[string]any }
	require.Equal(t, http.StatusOK, s.call(t, bob, http.MethodGet, q, nil, &bobUsage))
	require.Empty(t, bobUsage.Data)

	// No process printed a key, even at debug level.
	for _, k := range keys {
		for _, p := range []*proc{s.api, s.syncer, s.fake} {
			require.NotContains(t, p.out.String(), k)
			require.NotContains(t, p.out.String(), k[len(k)-12:])
		}
	}
}
