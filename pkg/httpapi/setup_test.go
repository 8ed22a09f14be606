package httpapi_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	openapi "github.com/tokka-dev/tokka"
	"github.com/tokka-dev/tokka/pkg/anthropic"
	"github.com/tokka-dev/tokka/pkg/auth"
	"github.com/tokka-dev/tokka/pkg/authtest"
	"github.com/tokka-dev/tokka/pkg/egress"
	"github.com/tokka-dev/tokka/pkg/fakeprovider"
	"github.com/tokka-dev/tokka/pkg/httpapi"
	"github.com/tokka-dev/tokka/pkg/keyring"
	"github.com/tokka-dev/tokka/pkg/logtest"
	"github.com/tokka-dev/tokka/pkg/notify/notifytest"
	"github.com/tokka-dev/tokka/pkg/openai"
	"github.com/tokka-dev/tokka/pkg/pgtest"
	"github.com/tokka-dev/tokka/pkg/postgres"
	"github.com/tokka-dev/tokka/pkg/provider"
	"github.com/tokka-dev/tokka/pkg/seal"
	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/spectest"
	"github.com/tokka-dev/tokka/pkg/syncer"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// Every test runs the API the way production does when Supabase signing
// keys are configured: the legacy HS256 secret and a JWKS with an ES256 and
// an RS256 key, and an issuer.
const (
	jwtSecret = "test-secret-test-secret-test-secret-0123456789"
	issuer    = "https://tokka-test.supabase.co/auth/v1"
)

// testBundle is one API under test and what a test needs around it: the
// router on an httptest server, the package database (or its own), the
// keyring the syncer would open blobs with, the API's log, and the fakes
// behind it (webhook DNS, JWKS, Auth server).
type testBundle struct {
	srv    *httptest.Server // closing it waits for every handler to return
	url    string
	e      *echo.Echo
	client *http.Client // validates every response against openapi.yaml
	plain  *http.Client // for what the spec does not describe (preflights, test-only routes)
	db     *postgres.DB
	sql    *sqlx.DB
	kr     *keyring.Keyring
	logs   *logtest.Buffer
	// res answers the webhook guard's DNS look-ups (with scriptedWebhooks).
	res     *notifytest.Resolver
	jwks    *authtest.KeySet
	authSrv *authtest.AuthServer // with liveSessions
	// syncer syncs from a fake provider on the API's clock (withSyncer).
	syncer *syncer.Syncer
	now    time.Time // the fixed clock, when there is one
}

// user is a caller: a Supabase user with one session and its token.
type user struct {
	id, sid, email, token string
}

// bearer is a caller known only by a token (forged, expired, foreign, ...).
func bearer(token string) user { return user{token: token} }

// options are what a test may change about the API it starts.
type options struct {
	cfg              httpapi.Config
	now              *time.Time
	dbURL            string // another database (a private server); default the package's
	ownDatabase      bool
	statementTimeout time.Duration
	sealer           func(*seal.PublicKey) httpapi.Sealer
	sessions         bool
	sourceIP         string
	allowAnonymous   bool
	unlimited        bool
	scripted         bool
	allowLoopback    bool
	syncer           bool
}

type option func(*options)

// configured starts the API with cfg; what cfg leaves zero takes setup's
// defaults (metrics, fingerprints) or the API's own.
func configured(cfg httpapi.Config) option { return func(o *options) { o.cfg = cfg } }

// at fixes the API's clock at now.
func at(now time.Time) option { return func(o *options) { o.now = &now } }

// onDatabase uses the database at url (a private server) instead of the
// package's.
func onDatabase(url string) option { return func(o *options) { o.dbURL = url } }

// ownDatabase gives the test a fresh database of its own.
func ownDatabase() option { return func(o *options) { o.ownDatabase = true } }

// statementTimeout sets the API pool's statement timeout.
func statementTimeout(d time.Duration) option { return func(o *options) { o.statementTimeout = d } }

// sealedBy replaces the sealer (the keyring's public key) with fn's.
func sealedBy(fn func(*seal.PublicKey) httpapi.Sealer) option {
	return func(o *options) { o.sealer = fn }
}

// liveSessions checks live sessions against a fake Auth server (b.authSrv).
func liveSessions() option { return func(o *options) { o.sessions = true } }

// fromIP connects from this loopback address (its own rate-limit bucket).
func fromIP(ip string) option { return func(o *options) { o.sourceIP = ip } }

// anonymousAllowed accepts tokens of anonymous sign-ins (ALLOW_ANONYMOUS_USERS).
func anonymousAllowed() option { return func(o *options) { o.allowAnonymous = true } }

// loopbackWebhooks is scriptedWebhooks with WEBHOOK_ALLOW_LOOPBACK_HTTP on.
func loopbackWebhooks() option {
	return func(o *options) { o.scripted, o.allowLoopback = true, true }
}

// withSyncer adds a real syncer behind the fake provider on the API's
// clock, on a database of its own (a syncer pass takes every due
// connection, so it must not see other tests' connections).
func withSyncer() option {
	return func(o *options) { o.syncer, o.ownDatabase, o.unlimited = true, true, true }
}

// budgetNow is the API's and the evaluator's clock in the budget tests.
var budgetNow = time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)

// forBudgets is the budget tests' API: a fixed clock, a webhook guard with
// a scripted resolver, and no rate limit.
func forBudgets() option {
	return func(o *options) {
		o.now = &budgetNow
		o.unlimited, o.scripted = true, true
	}
}

// setup starts the API with opts and returns its bundle; everything it
// starts stops when the test ends.
func setup(t *testing.T, opts ...option) *testBundle {
	t.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.syncer && o.now == nil {
		now := time.Now().UTC()
		o.now = &now
	}
	signingKeys(t)
	kr, err := keyring.New("test-encryption-key-0123456789-abcdef", nil)
	require.NoError(t, err)
	b := &testBundle{kr: kr, logs: &logtest.Buffer{}, res: notifytest.NewResolver(), jwks: authtest.NewKeySet(esKey, rsKey)}
	b.db, b.sql = openDatabase(t, o)
	log := zerolog.New(b.logs).Level(zerolog.DebugLevel)
	cfg := b.config(t, o, &log)
	jsrv := httptest.NewServer(b.jwks)
	t.Cleanup(jsrv.Close)
	verifier, err := auth.NewVerifier(auth.Config{HS256Secret: []byte(jwtSecret),
		JWKSURL: jsrv.URL + "/auth/v1/.well-known/jwks.json", Issuer: issuer, Log: &log, AllowAnonymous: o.allowAnonymous})
	require.NoError(t, err)
	var sealer httpapi.Sealer = kr.PublicKey()
	if o.sealer != nil {
		sealer = o.sealer(kr.PublicKey())
	}
	b.e = httpapi.New(cfg, b.db, sealer, verifier, log, openapi.Spec)
	srv := httptest.NewServer(b.e)
	t.Cleanup(srv.Close)
	b.srv, b.url = srv, srv.URL
	base := http.DefaultTransport
	if o.sourceIP != "" {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(o.sourceIP)}, Timeout: 5 * time.Second}
		base = &http.Transport{DialContext: d.DialContext}
	}
	b.client = &http.Client{Transport: &spectest.Transport{TB: t, Base: base}}
	b.plain = &http.Client{Transport: base}
	if o.syncer {
		b.startSyncer(t, log)
	}
	return b
}

// openDatabase opens the database o asks for: the package's, a fresh one,
// one on another server, or the package's with a statement timeout.
func openDatabase(t *testing.T, o options) (*postgres.DB, *sqlx.DB) {
	t.Helper()
	switch {
	case o.dbURL != "":
		return pgtest.OpenURL(t, o.dbURL)
	case o.ownDatabase:
		return pgtest.OpenURL(t, pgtest.Fresh(t))
	case o.statementTimeout > 0:
		db, err := postgres.Open(context.Background(), pgtest.URL(t), 4)
		require.NoError(t, err)
		t.Cleanup(func() { _ = db.Close() })
		db.SetStatementTimeout(o.statementTimeout)
		return db, pgtest.SQL(t)
	default:
		return pgtest.Open(t), pgtest.SQL(t)
	}
}

// config completes o's configuration with the test defaults and the fakes
// o asks for.
func (b *testBundle) config(t *testing.T, o options, log *zerolog.Logger) httpapi.Config {
	t.Helper()
	cfg := o.cfg
	if o.now != nil {
		b.now = *o.now
		now := *o.now
		cfg.Now = func() time.Time { return now }
	}
	if cfg.Metrics == nil {
		cfg.Metrics = httpapi.NewMetrics(prometheus.NewRegistry())
	}
	if cfg.AnswerCacheBytes == 0 {
		// On, as cmd/api runs it: every usage and summary test here also
		// checks that a kept answer is never given once its data changed.
		cfg.AnswerCacheBytes = 8 << 20
	}
	if cfg.Fingerprints == nil {
		cfg.Fingerprints = fingerprints(t)
	}
	if o.unlimited && cfg.RateLimiter == nil {
		cfg.RateLimiter = allowAll{}
	}
	if o.scripted && cfg.WebhookGuard == nil {
		cfg.WebhookGuard = &egress.Guard{AllowLoopback: o.allowLoopback, Resolver: b.res}
	}
	if o.sessions {
		b.authSrv = authtest.NewAuthServer([]byte(jwtSecret))
		b.authSrv.APIKey = "test-anon-key"
		asrv := httptest.NewServer(b.authSrv)
		t.Cleanup(asrv.Close)
		sc, err := auth.NewSessionChecker(auth.SessionConfig{AuthURL: asrv.URL + "/auth/v1", AnonKey: "test-anon-key", Log: log})
		require.NoError(t, err)
		cfg.Sessions = sc
	}
	return cfg
}

// startSyncer builds the syncer withSyncer asks for.
func (b *testBundle) startSyncer(t *testing.T, log zerolog.Logger) {
	t.Helper()
	clock := func() time.Time { return b.now }
	fake := httptest.NewServer(fakeprovider.New(fakeprovider.Options{Now: clock}))
	t.Cleanup(fake.Close)
	fast := provider.HTTPClient{Sleep: func(ctx context.Context, d time.Duration) error { return ctx.Err() }}
	b.syncer = syncer.New(syncer.Config{Instance: "dedupe", BackfillDays: 35, Now: clock}, b.db, b.kr,
		map[tokka.Provider]provider.Client{tokka.OpenAI: openai.New(fake.URL, fast), tokka.Anthropic: anthropic.New(fake.URL, fast)},
		log, syncer.NewMetrics(prometheus.NewRegistry()))
}

var (
	keysOnce             sync.Once
	esKey, rsKey, evilES *authtest.Key
	evilRS               *authtest.Key
)

// signingKeys makes the JWKS's keys and two the API does not know, once.
func signingKeys(t *testing.T) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		esKey, err = authtest.NewES256Key("es-1")
		require.NoError(t, err)
		rsKey, err = authtest.NewRS256Key("rs-1")
		require.NoError(t, err)
		evilES, err = authtest.NewES256Key("evil")
		require.NoError(t, err)
		evilRS, err = authtest.NewRS256Key("evil-rs")
		require.NoError(t, err)
	})
	require.NotNil(t, evilRS, "key generation failed in another test")
}

// fingerprints is the KEY_FINGERPRINT_SECRET every test api uses.
func fingerprints(t *testing.T) *secret.Fingerprinter {
	t.Helper()
	f, err := secret.NewFingerprinter([]byte("test-fingerprint-secret-0123456789-abcdef"))
	require.NoError(t, err)
	return f
}

// allowAll is a rate limiter that never limits.
type allowAll struct{}

func (allowAll) HitRateLimit(context.Context, tokka.User, string, tokka.RateLimit) (tokka.RateLimitResult, error) {
	return tokka.RateLimitResult{Allowed: true, Limit: 1000, Remaining: 999, Reset: time.Minute}, nil
}

// uniqueLoopback returns a loopback address no other test uses, so a test's
// per-IP rate-limit bucket is its own even on the shared package database.
var loopbackSeq atomic.Int64

func uniqueLoopback() string {
	n := loopbackSeq.Add(1)
	var r [2]byte
	_, _ = rand.Read(r[:])
	return fmt.Sprintf("127.%d.%d.%d", 1+int(r[0])%250, r[1], 1+n%250)
}

// newUser mints a user with a session and an email; adjust changes the
// token's claims (e.g. no email).
func (b *testBundle) newUser(t *testing.T, adjust ...func(*authtest.Token)) user {
	t.Helper()
	id := uuid.NewString()
	tok := authtest.Token{Subject: id, SessionID: uuid.NewString(), Email: id[:8] + "@example.com", Issuer: issuer}
	for _, fn := range adjust {
		fn(&tok)
	}
	signed, err := tok.HS256([]byte(jwtSecret))
	require.NoError(t, err)
	return user{id: id, sid: tok.SessionID, email: tok.Email, token: signed}
}

// do sends a request as u (no Authorization header for a zero user) with
// extra headers as name/value pairs, and returns the status, headers and
// body; the response is checked against openapi.yaml.
func (b *testBundle) do(t *testing.T, u user, method, path string, body any, hdr ...string) (int, http.Header, []byte) {
	t.Helper()
	return b.call(t, b.client, u, method, path, body, hdr...)
}

// call is do through client (b.plain for what the spec does not describe).
func (b *testBundle) call(t *testing.T, client *http.Client, u user, method, path string, body any, hdr ...string) (int, http.Header, []byte) {
	t.Helper()
	var rd io.Reader
	switch v := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(v)
	default:
		buf, err := json.Marshal(v)
		require.NoError(t, err)
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequest(method, b.url+path, rd)
	require.NoError(t, err)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if u.token != "" {
		req.Header.Set("Authorization", "Bearer "+u.token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, out
}

// syncAll runs syncer passes (withSyncer) until nothing is due.
func (b *testBundle) syncAll(t *testing.T) {
	t.Helper()
	for i := 0; i < 5; i++ {
		sum, err := b.syncer.RunOnce(context.Background())
		require.NoError(t, err)
		if sum == (syncer.Summary{}) {
			return
		}
	}
	t.Fatal("connections stayed due after five passes")
}
