package syncer_test

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/keyring"
	"github.com/tokka-dev/tokka/pkg/postgres"
	"github.com/tokka-dev/tokka/pkg/seal"
	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/syncer"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// v1Vector is one blob the seed's Node.js code made (pkg/keyring/testdata/v1/gen.js).
type v1Vector struct {
	EncryptionKey string `json:"encryption_key"`
	Plaintext     string `json:"plaintext"`
	Blob          string `json:"blob"`
}

// nodeVector returns the Node-made v1 vector whose plaintext starts with prefix.
func nodeVector(t *testing.T, prefix string) v1Vector {
	t.Helper()
	raw, err := os.ReadFile("../keyring/testdata/v1/vectors.json")
	require.NoError(t, err)
	var vs []v1Vector
	require.NoError(t, json.Unmarshal(raw, &vs))
	for _, v := range vs {
		if strings.HasPrefix(v.Plaintext, prefix) && len(v.Plaintext) > 40 {
			return v
		}
	}
	t.Fatalf("no Node-made vector with a %s key", prefix)
	return v1Vector{}
}

func newKeyring(t *testing.T, current string, retired ...string) *keyring.Keyring {
	t.Helper()
	kr, err := keyring.New(current, retired)
	require.NoError(t, err)
	return kr
}

// insertRow stores a connection as the table owner with whatever blob
// makeBlob returns for its binding: an import, or what an attacker with
// database access could write.
func (b *testBundle) insertRow(t *testing.T, userID string, p tokka.Provider, makeBlob func(seal.Binding) string) string {
	t.Helper()
	id := uuid.NewString()
	blob := makeBlob(seal.Binding{TeamID: userID, ConnectionID: id, Provider: p})
	_, err := b.sql.Exec(`INSERT INTO tokka.connections (id, team_id, provider, label, key_hint, sealed_key)
		VALUES ($1, $2, $3, 'imported', 'h', $4)`, id, userID, string(p), blob)
	require.NoError(t, err)
	return id
}

func sealTo(t *testing.T, kr *keyring.Keyring, key string) func(seal.Binding) string {
	return func(b seal.Binding) string {
		blob, err := kr.PublicKey().Seal(secret.FromString(key), b)
		require.NoError(t, err)
		return blob
	}
}

func (b *testBundle) blob(t *testing.T, id string) string {
	t.Helper()
	var blob string
	require.NoError(t, b.sql.Get(&blob, `SELECT sealed_key FROM tokka.connections WHERE id = $1`, id))
	return blob
}

func (b *testBundle) makeDue(t *testing.T, ids ...string) {
	t.Helper()
	_, err := b.sql.Exec(`UPDATE tokka.connections SET next_sync_at = now() WHERE id = ANY($1)`, pqArray(ids...))
	require.NoError(t, err)
}

func (b *testBundle) details(t *testing.T, id, action string) []string {
	t.Helper()
	var out []string
	require.NoError(t, b.sql.Select(&out, `SELECT outcome || ':' || detail FROM tokka.audit_events
		WHERE connection_id = $1 AND action = $2 ORDER BY id`, id, action))
	return out
}

func (b *testBundle) syncerWith(t *testing.T, opener syncer.Opener) *syncer.Syncer {
	return b.syncer(t, "s-"+uuid.NewString()[:6], nil, opener)
}

func requireOpensTo(t *testing.T, kr *keyring.Keyring, blob, userID, connID string, p tokka.Provider, want string) {
	t.Helper()
	k, err := kr.Open(blob, seal.Binding{TeamID: userID, ConnectionID: connID, Provider: p})
	require.NoError(t, err)
	require.Equal(t, want, string(k.Bytes()))
	k.Wipe()
}

// TestNodeMadeV1RowSyncsAndRewrapsToCurrentKey is the seed-compatibility
// path end to end at the syncer: a row holding a blob the seed's Node.js
// code made opens and syncs exactly that key's data, `rewrap` turns it into
// v2 under the current key, and it still syncs, also once the old key is gone.
func TestNodeMadeV1RowSyncsAndRewrapsToCurrentKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		p    tokka.Provider
		// seedKeyIsCurrent: the deployment keeps the seed's ENCRYPTION_KEY as
		// its current key; otherwise it rotated and the seed key is retired.
		seedKeyIsCurrent bool
	}{
		{"openai, seed key current", tokka.OpenAI, true},
		{"anthropic, seed key retired", tokka.Anthropic, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			vec := nodeVector(t, tc.p.KeyPrefix())
			current := vec.EncryptionKey
			kr := newKeyring(t, current)
			if !tc.seedKeyIsCurrent {
				current = "the-key-after-rotation-" + uuid.NewString()
				kr = newKeyring(t, current, vec.EncryptionKey)
			}
			user := uuid.NewString()
			id := b.insertRow(t, user, tc.p, func(seal.Binding) string { return vec.Blob })
			require.Equal(t, 1, mustParse(t, b.blob(t, id)).Version)

			_, err := b.syncerWith(t, kr).RunOnce(context.Background())
			require.NoError(t, err)
			st, reason := b.status(t, id)
			require.Equal(t, "active", st, reason)
			in, out, cost := expected(tc.p, vec.Plaintext, tokka.DayWindow(time.Now(), 35))
			gotIn, gotOut, gotCost := b.stored(t, id)
			require.NotZero(t, in)
			require.Equal(t, in, gotIn)
			require.Equal(t, out, gotOut)
			require.True(t, cost.Equal(gotCost))
			require.Equal(t, []string{"success:sealed as v1 (seed format)"}, b.details(t, id, tokka.ActionKeyDecrypted))

			sum, err := syncer.Rewrap(context.Background(), b.db, kr, "rewrap-test", zerolog.Nop())
			require.NoError(t, err)
			require.Equal(t, syncer.RewrapSummary{Rewrapped: 1}, sum)
			blob := b.blob(t, id)
			parsed := mustParse(t, blob)
			require.Equal(t, 2, parsed.Version)
			require.Equal(t, kr.PublicKey().KID(), parsed.KID)
			requireOpensTo(t, kr, blob, user, id, tc.p, vec.Plaintext)
			require.Equal(t, []string{"success:from v1 (seed format) to v2 key " + kr.PublicKey().KID()},
				b.details(t, id, tokka.ActionKeyRewrapped))

			sum, err = syncer.Rewrap(context.Background(), b.db, kr, "rewrap-test", zerolog.Nop())
			require.NoError(t, err)
			require.Equal(t, syncer.RewrapSummary{Current: 1}, sum, "a second pass changes nothing")
			require.Equal(t, blob, b.blob(t, id))

			// The rewrapped row syncs with the current key alone.
			only := newKeyring(t, current)
			b.makeDue(t, id)
			_, err = b.syncerWith(t, only).RunOnce(context.Background())
			require.NoError(t, err)
			st, _ = b.status(t, id)
			require.Equal(t, "active", st)
			require.Equal(t, []string{"success:sealed as v1 (seed format)", "success:sealed as v2 key " + kr.PublicKey().KID()},
				b.details(t, id, tokka.ActionKeyDecrypted))
		})
	}
}

func mustParse(t *testing.T, blob string) seal.Blob {
	t.Helper()
	p, err := seal.ParseBlob(blob)
	require.NoError(t, err)
	return p
}

// rotation is the key material of one rotation: the old key, the new one,
// and the keyrings before (old), during (new + old retired) and after (new).
type rotation struct {
	oldKey, newKey        string
	old, rotated, newOnly *keyring.Keyring
}

func rotatingKeys(t *testing.T) rotation {
	t.Helper()
	r := rotation{oldKey: "old-encryption-key-" + uuid.NewString(), newKey: "new-encryption-key-" + uuid.NewString()}
	r.old, r.rotated, r.newOnly = newKeyring(t, r.oldKey), newKeyring(t, r.newKey, r.oldKey), newKeyring(t, r.newKey)
	return r
}

// stepper is a Rewrapper that calls hook before each Rewrap, so tests can
// act at a precise moment of a pass.
type stepper struct {
	*keyring.Keyring
	calls      atomic.Int32
	beforeNext func(n int32, blob string)
}

func (s *stepper) NeedsRewrap(blob string) bool {
	needs := s.Keyring.NeedsRewrap(blob)
	if needs && s.beforeNext != nil {
		s.beforeNext(s.calls.Add(1), blob)
	}
	return needs
}

func TestRewrapIsResumableAndAtomicPerConnection(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := rotatingKeys(t)
	old, rotated := r.old, r.rotated
	user := uuid.NewString()
	var ids []string
	for i := 0; i < 6; i++ {
		ids = append(ids, b.insertRow(t, user, tokka.OpenAI, sealTo(t, old, "sk-admin-resume-"+string(rune('a'+i))+user[:8])))
	}
	// The first pass is interrupted (SIGTERM, a crash) while it handles its
	// fourth connection.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := &stepper{Keyring: rotated, beforeNext: func(n int32, _ string) {
		if n == 4 {
			cancel()
		}
	}}
	sum, err := syncer.Rewrap(ctx, b.db, st, "first", zerolog.Nop())
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, 3, sum.Rewrapped)

	// Each connection is either fully rewrapped (new blob and its one event)
	// or untouched (old blob, no event).
	done := 0
	for _, id := range ids {
		events := b.details(t, id, tokka.ActionKeyRewrapped)
		if rotated.NeedsRewrap(b.blob(t, id)) {
			require.Empty(t, events)
			continue
		}
		done++
		require.Len(t, events, 1)
	}
	require.Equal(t, 3, done)

	sum, err = syncer.Rewrap(context.Background(), b.db, rotated, "second", zerolog.Nop())
	require.NoError(t, err)
	require.Equal(t, syncer.RewrapSummary{Rewrapped: 3, Current: 3}, sum)
	for i, id := range ids {
		require.Len(t, b.details(t, id, tokka.ActionKeyRewrapped), 1, "exactly one key.rewrapped event per connection")
		requireOpensTo(t, rotated, b.blob(t, id), user, id, tokka.OpenAI, "sk-admin-resume-"+string(rune('a'+i))+user[:8])
	}
}

// TestRewrapNeverOverwritesAKeyReplacedMeanwhile replaces a key (as the api
// does on PATCH) between the moment the pass reads the row and the moment it
// writes: the compare-and-swap must leave the user's new key in place.
func TestRewrapNeverOverwritesAKeyReplacedMeanwhile(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := rotatingKeys(t)
	old, rotated, newOnly := r.old, r.rotated, r.newOnly
	user := uuid.NewString()
	u := tokka.User{ID: user, Claims: []byte(`{"sub":"` + user + `","role":"authenticated"}`)}
	id := b.insertRow(t, user, tokka.Anthropic, sealTo(t, old, "sk-ant-admin01-before-"+user[:8]))
	replacement := "sk-ant-admin01-replaced-" + user[:8]
	st := &stepper{Keyring: rotated, beforeNext: func(int32, string) {
		blob, err := rotated.PublicKey().Seal(secret.FromString(replacement),
			seal.Binding{TeamID: user, ConnectionID: id, Provider: "anthropic"})
		require.NoError(t, err)
		_, err = b.db.UpdateConnection(context.Background(), u, id, tokka.ConnectionUpdate{SealedKey: blob, KeyHint: "h"},
			tokka.AuditEvent{Action: tokka.ActionKeyReplaced, Outcome: tokka.OutcomeSuccess, Actor: "api:test"})
		require.NoError(t, err)
	}}
	sum, err := syncer.Rewrap(context.Background(), b.db, st, "cas", zerolog.Nop())
	require.NoError(t, err)
	require.Equal(t, syncer.RewrapSummary{Skipped: 1}, sum)
	requireOpensTo(t, newOnly, b.blob(t, id), user, id, tokka.Anthropic, replacement)
	require.Empty(t, b.details(t, id, tokka.ActionKeyRewrapped), "nothing was decrypted, so nothing is recorded")
}

// TestRewrapBesideLiveSyncersAndReplacements runs a rewrap pass, two syncers
// and a stream of key replacements at once. Whatever the interleaving, every
// row ends up opening with the new key alone, to the last key its user set.
func TestRewrapBesideLiveSyncersAndReplacements(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := rotatingKeys(t)
	old, rotated, newOnly := r.old, r.rotated, r.newOnly
	user := uuid.NewString()
	u := tokka.User{ID: user, Claims: []byte(`{"sub":"` + user + `","role":"authenticated"}`)}
	want := map[string]string{}
	var ids []string
	for i := 0; i < 16; i++ {
		key := "sk-admin-live-" + string(rune('a'+i)) + user[:8]
		id := b.insertRow(t, user, tokka.OpenAI, sealTo(t, old, key))
		ids = append(ids, id)
		want[id] = key
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	wg.Go(func() {
		for i, id := range ids {
			if i%2 == 1 {
				continue
			}
			key := "sk-admin-replacement-" + string(rune('a'+i)) + user[:8]
			blob, err := rotated.PublicKey().Seal(secret.FromString(key), seal.Binding{TeamID: user, ConnectionID: id, Provider: "openai"})
			require.NoError(t, err)
			_, err = b.db.UpdateConnection(ctx, u, id, tokka.ConnectionUpdate{SealedKey: blob, KeyHint: "h"},
				tokka.AuditEvent{Action: tokka.ActionKeyReplaced, Outcome: tokka.OutcomeSuccess, Actor: "api:test"})
			require.NoError(t, err)
			mu.Lock()
			want[id] = key
			mu.Unlock()
		}
	})
	wg.Go(func() {
		_, err := syncer.Rewrap(ctx, b.db, rotated, "live", zerolog.Nop())
		require.NoError(t, err)
	})
	for i := 0; i < 2; i++ {
		s := b.syncer(t, "live-"+string(rune('a'+i)), nil, rotated)
		wg.Go(func() {
			_, err := s.RunOnce(ctx)
			require.NoError(t, err)
		})
	}
	wg.Wait()
	// A second pass finishes whatever the first met while it was being replaced.
	_, err := syncer.Rewrap(ctx, b.db, rotated, "after", zerolog.Nop())
	require.NoError(t, err)
	for _, id := range ids {
		requireOpensTo(t, newOnly, b.blob(t, id), user, id, tokka.OpenAI, want[id])
	}
	v, err := b.db.VerifyAuditChain(ctx, u, true)
	require.NoError(t, err)
	require.True(t, v.Intact)
}

func (b *testBundle) alerts(t *testing.T, kind string) []tokka.Alert {
	t.Helper()
	var out []tokka.Alert
	require.NoError(t, b.sql.Select(&out, `SELECT id, team_id, kind, severity, connection_id, dedup_key, title, detail,
		created_at, acknowledged_at FROM tokka.alerts WHERE kind = $1 ORDER BY id`, kind))
	return out
}

// TestRewrapFlagsBlobsNoKeyOpens: a blob under a key nobody configured, a
// tampered one, a v1 blob from an unknown key and a malformed value each put
// their connection in needs_reconnect with a reason, an audit event and one
// key_access alert, and the pass carries on. Configuring the missing key and
// rewrapping again brings its connection back.
func TestRewrapFlagsBlobsNoKeyOpens(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := rotatingKeys(t)
	old, rotated := r.old, r.rotated
	lostKey := "a-key-nobody-configured-" + uuid.NewString()
	lost := newKeyring(t, lostKey)
	user := uuid.NewString()
	good := b.insertRow(t, user, tokka.OpenAI, sealTo(t, old, "sk-admin-fine-"+user[:8]))
	unknownKID := b.insertRow(t, user, tokka.OpenAI, sealTo(t, lost, "sk-admin-lost-"+user[:8]))
	tampered := b.insertRow(t, user, tokka.OpenAI, func(bd seal.Binding) string {
		blob := sealTo(t, old, "sk-admin-tampered-"+user[:8])(bd)
		p := mustParse(t, blob)
		p.Ciphertext[0] ^= 1
		return p.String()
	})
	v1Unknown := b.insertRow(t, user, tokka.OpenAI, func(seal.Binding) string { return nodeVector(t, "sk-admin-").Blob })
	malformed := b.insertRow(t, user, tokka.OpenAI, func(seal.Binding) string { return "v2:0123:abc" })

	sum, err := syncer.Rewrap(context.Background(), b.db, rotated, "flags", zerolog.Nop())
	require.NoError(t, err)
	require.Equal(t, syncer.RewrapSummary{Rewrapped: 1, Failed: 4}, sum)
	st, _ := b.status(t, good)
	require.Equal(t, "pending", st)
	wantDetail := map[string]string{
		unknownKID: "no configured key: the sealed key is under key id " + lost.PublicKey().KID(),
		tampered:   "integrity failure: the sealed key under key id " + old.PublicKey().KID(),
		v1Unknown:  "cannot open: the seed-format (v1) sealed key",
		malformed:  "integrity failure: the sealed key is malformed",
	}
	for id, detail := range wantDetail {
		st, reason := b.status(t, id)
		require.Equal(t, "needs_reconnect", st)
		require.Contains(t, reason, "paste the key again")
		events := b.details(t, id, tokka.ActionKeyRewrapped)
		require.Len(t, events, 1)
		require.True(t, strings.HasPrefix(events[0], "failure:"+detail), events[0])
	}
	alerts := b.alerts(t, tokka.AlertKeyAccess)
	require.Len(t, alerts, 4)
	for _, a := range alerts {
		require.Equal(t, user, a.TeamID)
		require.NotNil(t, a.ConnectionID)
		require.Contains(t, wantDetail, *a.ConnectionID)
		severity := map[bool]string{true: "critical", false: "warning"}[*a.ConnectionID == tampered || *a.ConnectionID == malformed]
		require.Equal(t, severity, a.Severity, *a.ConnectionID)
	}

	// Another pass fails them again but raises nothing new.
	sum, err = syncer.Rewrap(context.Background(), b.db, rotated, "flags", zerolog.Nop())
	require.NoError(t, err)
	require.Equal(t, syncer.RewrapSummary{Current: 1, Failed: 4}, sum)
	require.Len(t, b.alerts(t, tokka.AlertKeyAccess), 4)

	// The operator finds the lost key and configures it as retired.
	found := newKeyring(t, r.newKey, lostKey, r.oldKey)
	sum, err = syncer.Rewrap(context.Background(), b.db, found, "found", zerolog.Nop())
	require.NoError(t, err)
	require.Equal(t, syncer.RewrapSummary{Rewrapped: 1, Current: 1, Failed: 3}, sum)
	st, reason := b.status(t, unknownKID)
	require.Equal(t, "pending", st, "its key opens after all, so it is due again")
	require.Empty(t, reason)
}

func TestPlaintextIsWipedAfterTheProviderCalls(t *testing.T) {
	t.Parallel()
	b := setup(t)
	user := uuid.NewString()
	keys := []struct {
		p   tokka.Provider
		key string
	}{
		{tokka.OpenAI, "sk-admin-wipe-ok-" + user[:8]},
		{tokka.Anthropic, "sk-ant-admin01-wipe-ok-" + user[:8]},
		{tokka.OpenAI, "sk-admin-wipe-revoked-" + user[:8]},        // 401 echoing the key
		{tokka.Anthropic, "sk-ant-admin01-wipe-flaky-" + user[:8]}, // a 500, then a retry
	}
	for _, k := range keys {
		b.addConnection(t, user, k.p, k.key)
	}
	spy := &spyOpener{next: b.kr}
	_, err := b.syncer(t, "wipe", nil, spy).RunOnce(context.Background())
	require.NoError(t, err)
	require.Len(t, spy.keys, len(keys))
	for i, k := range spy.keys {
		require.True(t, k.Wiped(), "key %d still holds its plaintext after the pass", i)
		require.Zero(t, k.Len())
	}
	for _, k := range keys {
		require.Positive(t, b.fake.Requests(k.key), "the provider saw the live key before the wipe")
	}
}

// TestReplacedKeyIsNeverOpenedUnderAnEarlierLease: the user replaces the key
// right after a syncer leased the connection. The syncer must not open the
// old blob, must give the lease back, and the same pass syncs the new key.
func TestReplacedKeyIsNeverOpenedUnderAnEarlierLease(t *testing.T) {
	t.Parallel()
	b := setup(t)
	user := uuid.NewString()
	u := tokka.User{ID: user, Claims: []byte(`{"sub":"` + user + `","role":"authenticated"}`)}
	oldKey, newKey := "sk-admin-oldkey-"+user[:8], "sk-admin-newkey-"+user[:8]
	id := b.addConnection(t, user, tokka.OpenAI, oldKey)
	oldBlob := b.blob(t, id)
	store := &replaceAfterLease{DB: b.db, replace: func() {
		blob, err := b.kr.PublicKey().Seal(secret.FromString(newKey), seal.Binding{TeamID: user, ConnectionID: id, Provider: "openai"})
		require.NoError(t, err)
		_, err = b.db.UpdateConnection(context.Background(), u, id, tokka.ConnectionUpdate{SealedKey: blob, KeyHint: "h"},
			tokka.AuditEvent{Action: tokka.ActionKeyReplaced, Outcome: tokka.OutcomeSuccess, Actor: "api:test"})
		require.NoError(t, err)
	}}
	opened := &spyOpener{next: b.kr}
	sum, err := b.syncer(t, "lease", store, opened).RunOnce(context.Background())
	require.NoError(t, err)
	require.Equal(t, 1, sum.Synced)
	require.Equal(t, 1, sum.Skipped)
	require.NotContains(t, opened.blobs, oldBlob, "the replaced key was opened")
	require.Zero(t, b.fake.Requests(oldKey))
	require.Positive(t, b.fake.Requests(newKey))
	require.Equal(t, []string{"key.created:success", "key.replaced:success", "key.decrypted:success", "sync.succeeded:success"}, b.actions(t, id))
}

type replaceAfterLease struct {
	*postgres.DB
	once    sync.Once
	replace func()
}

func (r *replaceAfterLease) LeaseDue(ctx context.Context, owner string, n int, d time.Duration) ([]tokka.Lease, error) {
	ls, err := r.DB.LeaseDue(ctx, owner, n, d)
	if len(ls) > 0 {
		r.once.Do(r.replace)
	}
	return ls, err
}

func TestOldKeysGetOneRotationReminder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	user := uuid.NewString()
	u := tokka.User{ID: user, Claims: []byte(`{"sub":"` + user + `","role":"authenticated"}`)}
	oldID := b.addConnection(t, user, tokka.OpenAI, "sk-admin-oldrotation-"+user[:8])
	youngID := b.addConnection(t, user, tokka.Anthropic, "sk-ant-admin01-young-"+user[:8])
	_, err := b.sql.Exec(`UPDATE tokka.connections SET key_set_at = now() - interval '100 days' WHERE id = $1`, oldID)
	require.NoError(t, err)
	_, err = b.sql.Exec(`UPDATE tokka.connections SET key_set_at = now() - interval '89 days' WHERE id = $1`, youngID)
	require.NoError(t, err)

	for i := 0; i < 3; i++ { // three syncers, as after restarts: still one alert
		_, err = b.syncer(t, "remind-"+string(rune('a'+i)), nil, nil).RunOnce(context.Background())
		require.NoError(t, err)
	}
	alerts := b.alerts(t, tokka.AlertKeyRotation)
	require.Len(t, alerts, 1)
	a := alerts[0]
	require.Equal(t, user, a.TeamID)
	require.Equal(t, oldID, *a.ConnectionID)
	require.Contains(t, a.Title, "more than 90 days old")
	var detail map[string]any
	require.NoError(t, json.Unmarshal(a.Detail, &detail))
	require.EqualValues(t, 100, detail["age_days"])
	require.EqualValues(t, 90, detail["reminder_days"])
	require.Nil(t, a.AcknowledgedAt)

	// Replacing the key clears the reminder; the new key is not due one.
	blob, err := b.kr.PublicKey().Seal(secret.FromString("sk-admin-rotated-"+user[:8]), seal.Binding{TeamID: user, ConnectionID: oldID, Provider: "openai"})
	require.NoError(t, err)
	_, err = b.db.UpdateConnection(context.Background(), u, oldID, tokka.ConnectionUpdate{SealedKey: blob, KeyHint: "h"},
		tokka.AuditEvent{Action: tokka.ActionKeyReplaced, Outcome: tokka.OutcomeSuccess, Actor: "api:test"})
	require.NoError(t, err)
	_, err = b.syncer(t, "remind-after", nil, nil).RunOnce(context.Background())
	require.NoError(t, err)
	alerts = b.alerts(t, tokka.AlertKeyRotation)
	require.Len(t, alerts, 1)
	require.NotNil(t, alerts[0].AcknowledgedAt)

	// When the new key ages too, it gets its own reminder.
	_, err = b.sql.Exec(`UPDATE tokka.connections SET key_set_at = key_set_at - interval '91 days' WHERE id = $1`, oldID)
	require.NoError(t, err)
	_, err = b.syncer(t, "remind-later", nil, nil).RunOnce(context.Background())
	require.NoError(t, err)
	require.Len(t, b.alerts(t, tokka.AlertKeyRotation), 2)

	// A syncer configured for 30 days reminds about the younger key as well.
	s := syncer.New(syncer.Config{Instance: "thirty", KeyRotationReminderDays: 30}, b.db, b.kr, b.clients,
		zerolog.Nop(), syncer.NewMetrics(prometheus.NewRegistry()))
	_, err = s.RunOnce(context.Background())
	require.NoError(t, err)
	require.Len(t, b.alerts(t, tokka.AlertKeyRotation), 3)
}
