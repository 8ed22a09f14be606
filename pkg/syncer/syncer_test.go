package syncer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/anthropic"
	"github.com/tokka-dev/tokka/pkg/fakeprovider"
	"github.com/tokka-dev/tokka/pkg/keyring"
	"github.com/tokka-dev/tokka/pkg/logtest"
	"github.com/tokka-dev/tokka/pkg/openai"
	"github.com/tokka-dev/tokka/pkg/pgtest"
	"github.com/tokka-dev/tokka/pkg/postgres"
	"github.com/tokka-dev/tokka/pkg/provider"
	"github.com/tokka-dev/tokka/pkg/seal"
	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/syncer"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// testBundle is a syncer's surroundings: its own database (the due set
// spans every user, so each test gets one), the keyring blobs are sealed
// to, the fake provider behind the clients, and the syncers' log.
type testBundle struct {
	db      *postgres.DB
	sql     *sqlx.DB
	kr      *keyring.Keyring
	fake    *fakeprovider.Server
	clients map[tokka.Provider]provider.Client
	logs    *logtest.Buffer
	clock   *testClock // the syncers' and the fake's clock (clockedBy); nil is the wall clock
}

// options are what a test may change about the syncer's surroundings.
type options struct {
	clock *testClock
	dbURL string
	fake  fakeprovider.Options
	http  provider.HTTPClient
}

type option func(*options)

// clockedBy gives the fake and clockedSyncer's syncers one clock, c, so
// both agree on "today" whatever the wall clock does during the test.
func clockedBy(c *testClock) option { return func(o *options) { o.clock = c } }

// onDatabase uses the database at url (a private server, for fault tests)
// instead of a fresh one.
func onDatabase(url string) option { return func(o *options) { o.dbURL = url } }

// fakeWith starts the fake provider with opts (its clock is the bundle's).
func fakeWith(opts fakeprovider.Options) option { return func(o *options) { o.fake = opts } }

// httpWith is the clients' HTTP policy; retries never really sleep unless
// h says how.
func httpWith(h provider.HTTPClient) option { return func(o *options) { o.http = h } }

// setup starts the fake provider on httptest and clients for it, on a
// fresh database unless opts say otherwise; all of it ends with the test.
func setup(t *testing.T, opts ...option) *testBundle {
	t.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	kr, err := keyring.New("syncer-test-encryption-key-0123456789abcdef", nil)
	require.NoError(t, err)
	if o.clock != nil {
		o.fake.Now = o.clock.now
	}
	fake := fakeprovider.New(o.fake)
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	if o.http.Sleep == nil {
		o.http.Sleep = func(ctx context.Context, d time.Duration) error { return ctx.Err() }
	}
	if o.dbURL == "" {
		o.dbURL = pgtest.Fresh(t)
	}
	db, raw := pgtest.OpenURL(t, o.dbURL)
	return &testBundle{
		db: db, sql: raw, kr: kr, fake: fake, logs: &logtest.Buffer{}, clock: o.clock,
		clients: map[tokka.Provider]provider.Client{
			tokka.OpenAI:    openai.New(srv.URL, o.http),
			tokka.Anthropic: anthropic.New(srv.URL, o.http),
		},
	}
}

func (b *testBundle) syncer(t *testing.T, instance string, store syncer.Store, opener syncer.Opener) *syncer.Syncer {
	t.Helper()
	if store == nil {
		store = b.db
	}
	if opener == nil {
		opener = b.kr
	}
	log := zerolog.New(b.logs).Level(zerolog.DebugLevel)
	return syncer.New(syncer.Config{Instance: instance, BackfillDays: 35, Concurrency: 3},
		store, opener, b.clients, log, syncer.NewMetrics(prometheus.NewRegistry()))
}

// addConnection stores a connection the way the api does: sealed to the
// public key, bound to its row.
func (b *testBundle) addConnection(t *testing.T, userID string, p tokka.Provider, key string) string {
	t.Helper()
	id := uuid.NewString()
	blob, err := b.kr.PublicKey().Seal(secret.FromString(key), seal.Binding{TeamID: userID, ConnectionID: id, Provider: p})
	require.NoError(t, err)
	u := tokka.User{ID: userID, Claims: []byte(`{"sub":"` + userID + `","role":"authenticated"}`)}
	_, err = b.db.CreateConnection(context.Background(), u, tokka.NewConnection{
		ID: id, Provider: p, Label: "t", KeyHint: "h", SealedKey: blob,
	}, tokka.AuditEvent{Action: tokka.ActionKeyCreated, Outcome: tokka.OutcomeSuccess, Actor: "api:test"})
	require.NoError(t, err)
	return id
}

func (b *testBundle) status(t *testing.T, id string) (string, string) {
	t.Helper()
	var row struct {
		Status    string  `db:"status"`
		LastError *string `db:"last_error"`
	}
	require.NoError(t, b.sql.Get(&row, `SELECT status, last_error FROM tokka.connections WHERE id = $1`, id))
	if row.LastError == nil {
		return row.Status, ""
	}
	return row.Status, *row.LastError
}

func (b *testBundle) actions(t *testing.T, id string) []string {
	t.Helper()
	var out []string
	require.NoError(t, b.sql.Select(&out, `SELECT action || ':' || outcome FROM tokka.audit_events WHERE connection_id = $1 ORDER BY id`, id))
	return out
}

// expected computes from the fake's own data (not through HTTP) the totals
// a backfill of days must store for key.
func expected(p tokka.Provider, key string, w tokka.Window) (input, output int64, cost decimal.Decimal) {
	for d := w.From; d.Before(w.To); d = d.AddDate(0, 0, 1) {
		if p == tokka.OpenAI {
			for _, r := range fakeprovider.OpenAIDay(key, d) {
				input += r.InputTokens
				output += r.OutputTokens
				for _, c := range r.Costs {
					cost = cost.Add(c.Amount)
				}
			}
			continue
		}
		for _, r := range fakeprovider.AnthropicDay(key, d) {
			input += r.UncachedInputTokens + r.CacheReadInputTokens + r.CacheCreation5mTokens + r.CacheCreation1hTokens
			output += r.OutputTokens
			for _, c := range r.Costs {
				cost = cost.Add(c.AmountCents.Div(decimal.NewFromInt(100)))
			}
		}
	}
	return input, output, cost
}

func (b *testBundle) stored(t *testing.T, id string) (input, output int64, cost decimal.Decimal) {
	t.Helper()
	require.NoError(t, b.sql.QueryRow(`SELECT
		coalesce(sum(input_uncached_tokens + cache_read_tokens + cache_write_5m_tokens + cache_write_1h_tokens), 0),
		coalesce(sum(output_tokens), 0) FROM tokka.usage_daily WHERE connection_id = $1`, id).Scan(&input, &output))
	require.NoError(t, b.sql.QueryRow(`SELECT coalesce(sum(amount_usd), 0) FROM tokka.cost_daily WHERE connection_id = $1`, id).Scan(&cost))
	return input, output, cost
}

func TestBackfillStoresExactlyWhatTheProviderServes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	user := uuid.NewString()
	keys := map[tokka.Provider]string{
		tokka.OpenAI:    "sk-admin-backfill-" + user[:8],
		tokka.Anthropic: "sk-ant-admin01-backfill-" + user[:8],
	}
	ids := map[tokka.Provider]string{}
	for p, k := range keys {
		ids[p] = b.addConnection(t, user, p, k)
	}
	s := b.syncer(t, "one", nil, nil)
	sum, err := s.RunOnce(context.Background())
	require.NoError(t, err)
	require.GreaterOrEqual(t, sum.Synced, 2)

	w := tokka.DayWindow(time.Now(), 35)
	for p, id := range ids {
		st, _ := b.status(t, id)
		require.Equal(t, "active", st)
		in, out, cost := expected(p, keys[p], w)
		require.NotZero(t, in)
		gotIn, gotOut, gotCost := b.stored(t, id)
		require.Equal(t, in, gotIn, p)
		require.Equal(t, out, gotOut, p)
		require.True(t, cost.Equal(gotCost), "%s cost: want %s, got %s", p, cost, gotCost)
		require.Equal(t, []string{"key.created:success", "key.decrypted:success", "sync.succeeded:success"}, b.actions(t, id))
	}

	// Nothing is due any more; a re-sync replaces the trailing window and
	// the totals do not move.
	_, err = b.sql.Exec(`UPDATE tokka.connections SET next_sync_at = now() WHERE id = ANY($1)`,
		pqArray(ids[tokka.OpenAI], ids[tokka.Anthropic]))
	require.NoError(t, err)
	_, err = s.RunOnce(context.Background())
	require.NoError(t, err)
	for p, id := range ids {
		in, out, cost := expected(p, keys[p], w)
		gotIn, gotOut, gotCost := b.stored(t, id)
		require.Equal(t, in, gotIn, p)
		require.Equal(t, out, gotOut, p)
		require.True(t, cost.Equal(gotCost), p)
	}
	for _, k := range keys {
		require.NotContains(t, b.logs.String(), k)
	}
}

func pqArray(ids ...string) string { return "{" + strings.Join(ids, ",") + "}" }

func TestRevokedKeyIsInvalidWithAKeyFreeReason(t *testing.T) {
	t.Parallel()
	b := setup(t)
	user := uuid.NewString()
	key := "sk-admin-revoked-CANARY" + user[:8]
	id := b.addConnection(t, user, tokka.OpenAI, key)
	_, err := b.syncer(t, "one", nil, nil).RunOnce(context.Background())
	require.NoError(t, err)
	st, reason := b.status(t, id)
	require.Equal(t, "invalid", st)
	require.NotEmpty(t, reason)
	require.NotContains(t, reason, "CANARY")
	require.Equal(t, 1, b.fake.Requests(key), "a rejected key is not retried")
	require.Equal(t, []string{"key.created:success", "key.decrypted:success", "sync.failed:failure"}, b.actions(t, id))
	var details string
	require.NoError(t, b.sql.Get(&details, `SELECT string_agg(detail || purpose, ' ') FROM tokka.audit_events WHERE connection_id = $1`, id))
	require.NotContains(t, details, "CANARY")
	require.NotContains(t, b.logs.String(), "CANARY")
	// An invalid connection is not due again until the user replaces the key.
	sum, err := b.syncer(t, "two", nil, nil).RunOnce(context.Background())
	require.NoError(t, err)
	require.Zero(t, sum.Synced+sum.Failed)
}

// failingAudit refuses the key.decrypted write, as a full disk or a lost
// database would.
type failingAudit struct{ *postgres.DB }

func (failingAudit) RecordKeyUse(context.Context, tokka.Lease, tokka.AuditEvent) error {
	return errors.New("audit table unavailable")
}

// spyOpener counts the blobs it is asked to open and keeps each one and
// every key it hands out, so tests can check what was opened and that each
// key was wiped afterwards.
type spyOpener struct {
	mu    sync.Mutex
	calls int
	blobs []string
	keys  []*secret.Key
	next  syncer.Opener
}

func (s *spyOpener) OpenBlob(p seal.Blob, b seal.Binding) (*secret.Key, error) {
	k, err := s.next.OpenBlob(p, b)
	blob := p.String()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	s.blobs = append(s.blobs, blob)
	if err == nil {
		s.keys = append(s.keys, k)
	}
	return k, err
}

func TestKeyIsNeverOpenedWhenTheAuditWriteFails(t *testing.T) {
	t.Parallel()
	b := setup(t)
	user := uuid.NewString()
	key := "sk-admin-failclosed-" + user[:8]
	id := b.addConnection(t, user, tokka.OpenAI, key)
	spy := &spyOpener{next: b.kr}
	sum, err := b.syncer(t, "one", failingAudit{b.db}, spy).RunOnce(context.Background())
	require.NoError(t, err)
	require.Zero(t, spy.calls, "the key must not be opened without its audit event")
	require.Zero(t, b.fake.Requests(key))
	require.Zero(t, sum.Synced)
	st, _ := b.status(t, id)
	require.Equal(t, "pending", st)
	require.Contains(t, b.logs.String(), "audit write failed; key not used")
}

// TestBlobMovedToAnotherRowDoesNotOpen copies a blob into another connection
// of the same user and into another user's connection: neither opens, each is
// audited as an integrity failure and raises one key_access alert for the
// owner of the row it was copied into, however often the syncer meets it.
func TestBlobMovedToAnotherRowDoesNotOpen(t *testing.T) {
	t.Parallel()
	b := setup(t)
	alice, mallory := uuid.NewString(), uuid.NewString()
	victim := b.addConnection(t, alice, tokka.OpenAI, "sk-admin-victim-"+alice[:8])
	thief := b.addConnection(t, mallory, tokka.OpenAI, "sk-admin-thief-"+mallory[:8])
	sibling := b.addConnection(t, alice, tokka.OpenAI, "sk-admin-sibling-"+alice[:8])
	// As the table owner (what a database-level attacker could do): copy the
	// victim's blob into another user's row and into another of her own.
	_, err := b.sql.Exec(`UPDATE tokka.connections SET sealed_key = (SELECT sealed_key FROM tokka.connections WHERE id = $1) WHERE id = ANY($2)`,
		victim, pqArray(thief, sibling))
	require.NoError(t, err)
	_, err = b.syncer(t, "one", nil, nil).RunOnce(context.Background())
	require.NoError(t, err)
	for _, id := range []string{thief, sibling} {
		st, reason := b.status(t, id)
		require.Equal(t, "needs_reconnect", st)
		require.Contains(t, reason, "paste the key again")
		require.Equal(t, []string{"key.created:success", "key.decrypted:success", "key.decrypted:failure"}, b.actions(t, id))
	}
	require.Zero(t, b.fake.Requests("sk-admin-thief-"+mallory[:8]))
	require.Positive(t, b.fake.Requests("sk-admin-victim-"+alice[:8]), "the victim's own row still syncs")
	st, _ := b.status(t, victim)
	require.Equal(t, "active", st)

	// Meet the same blobs again, as after a user reconnecting and an attacker
	// copying once more: audited again, alerted once.
	_, err = b.sql.Exec(`UPDATE tokka.connections SET status = 'pending', next_sync_at = now() WHERE id = ANY($1)`, pqArray(thief, sibling))
	require.NoError(t, err)
	_, err = b.syncer(t, "two", nil, nil).RunOnce(context.Background())
	require.NoError(t, err)
	kid := b.kr.PublicKey().KID()
	for _, id := range []string{thief, sibling} {
		d := b.details(t, id, tokka.ActionKeyDecrypted)
		require.Len(t, d, 4)
		for _, failure := range []string{d[1], d[3]} {
			require.Equal(t, "failure:integrity failure: the sealed key under key id "+kid+
				" does not open for this connection (altered, or copied from another connection)", failure)
		}
	}
	alerts := b.alerts(t, tokka.AlertKeyAccess)
	require.Len(t, alerts, 2, "one alert per connection and blob, however often it is met")
	copied := b.blob(t, victim)
	owners := map[string]string{}
	for _, a := range alerts {
		owners[*a.ConnectionID] = a.TeamID
		require.Equal(t, "critical", a.Severity)
		require.Contains(t, a.DedupKey, kid)
		var detail map[string]string
		require.NoError(t, json.Unmarshal(a.Detail, &detail))
		require.Equal(t, kid, detail["kid"])
		require.Len(t, detail["blob_fingerprint"], 16)
		require.NotContains(t, string(a.Detail), copied[20:60], "the alert repeats no ciphertext")
	}
	require.Equal(t, map[string]string{thief: mallory, sibling: alice}, owners)
}

func TestDeletedConnectionIsNeverDecrypted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	user := uuid.NewString()
	id := b.addConnection(t, user, tokka.Anthropic, "sk-ant-admin01-deleted-"+user[:8])
	ctx := context.Background()
	var lease tokka.Lease
	for i := 0; i < 20 && lease.ConnectionID == ""; i++ {
		ls, err := b.db.LeaseDue(ctx, "early", 50, time.Minute)
		require.NoError(t, err)
		for _, l := range ls {
			if l.ConnectionID == id {
				lease = l
			} else {
				require.NoError(t, b.db.ReleaseLease(ctx, l))
			}
		}
	}
	require.NotEmpty(t, lease.ConnectionID)
	u := tokka.User{ID: user, Claims: []byte(`{"sub":"` + user + `","role":"authenticated"}`)}
	require.NoError(t, b.db.DeleteConnection(ctx, u, id, tokka.AuditEvent{Action: tokka.ActionKeyDeleted, Outcome: tokka.OutcomeSuccess, Actor: "api:test"}))
	err := b.db.RecordKeyUse(ctx, lease, tokka.AuditEvent{Action: tokka.ActionKeyDecrypted, Outcome: tokka.OutcomeSuccess, Actor: "late"})
	require.ErrorIs(t, err, tokka.ErrLeaseLost)
}

func TestConcurrentSyncersNeverShareAConnection(t *testing.T) {
	t.Parallel()
	b := setup(t)
	user := uuid.NewString()
	var keys []string
	for i := 0; i < 12; i++ {
		p, k := tokka.OpenAI, "sk-admin-replica-"+user[:8]+"-"+string(rune('a'+i))
		if i%2 == 1 {
			p, k = tokka.Anthropic, "sk-ant-admin01-replica-"+user[:8]+"-"+string(rune('a'+i))
		}
		b.addConnection(t, user, p, k)
		keys = append(keys, k)
	}
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		s := b.syncer(t, "replica-"+string(rune('a'+i)), nil, nil)
		wg.Go(func() {
			_, err := s.RunOnce(context.Background())
			require.NoError(t, err)
		})
	}
	wg.Wait()
	// One sync of 35 days is exactly 2 usage pages per usage family + 1 cost
	// page (OpenAI: 31-day usage pages, 180-day cost pages) or 2 + 2
	// (Anthropic: 31 each), after one request for the key's organisation,
	// and then the directory's lists.
	for i, k := range keys {
		want := 1 + 2*len(openai.Families()) + 1 + directoryRequests(tokka.OpenAI, k)
		if i%2 == 1 {
			want = 1 + 4 + directoryRequests(tokka.Anthropic, k)
		}
		require.Equal(t, want, b.fake.Requests(k), "key %d synced more or less than once", i)
	}
}

func TestMetricsCountOutcomesWithoutIdentifiers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	user := uuid.NewString()
	b.addConnection(t, user, tokka.OpenAI, "sk-admin-metrics-"+user[:8])
	reg := prometheus.NewRegistry()
	m := syncer.NewMetrics(reg)
	s := syncer.New(syncer.Config{Instance: "m", BackfillDays: 3}, b.db, b.kr, b.clients, zerolog.Nop(), m)
	_, err := s.RunOnce(context.Background())
	require.NoError(t, err)
	require.GreaterOrEqual(t, testutil.ToFloat64(m.Syncs.WithLabelValues("openai", "succeeded")), 1.0)
	require.GreaterOrEqual(t, testutil.CollectAndCount(m.PlaintextLifetime), 1)
	var out bytes.Buffer
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		out.WriteString(mf.String())
	}
	require.NotContains(t, out.String(), user)
	require.NotContains(t, out.String(), "sk-admin")
}
