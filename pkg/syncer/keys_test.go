package syncer_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/fakeprovider"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// hygiene returns the key hygiene alerts of connection id by the kind of
// finding (the dedup key's first part), each with its dedup key.
func (b *testBundle) hygiene(t *testing.T, id string) map[string][]tokka.Alert {
	t.Helper()
	var all []tokka.Alert
	require.NoError(t, b.sql.Select(&all, `SELECT id, team_id, kind, severity, connection_id, dedup_key, title, detail,
		created_at, acknowledged_at FROM tokka.alerts WHERE connection_id = $1 ORDER BY id`, id))
	out := map[string][]tokka.Alert{}
	for _, a := range all {
		switch {
		case strings.HasPrefix(a.DedupKey, "admin_key_new:"):
			out["new_admin"] = append(out["new_admin"], a)
		case strings.HasPrefix(a.DedupKey, "key_unused:"):
			out["unused"] = append(out["unused"], a)
		case strings.HasPrefix(a.DedupKey, "key_rotation:provider:"):
			out["held_age"] = append(out["held_age"], a)
		}
	}
	return out
}

// The fake's directory drives each hygiene alert exactly once. A fresh
// organisation (every key recent and in use) raises none, and its admin
// keys do not count as new on the first directory sync. Then, at the
// provider, an admin key is created, a project key is left unused for 100
// days, and the admin key Tokka holds (matched by its redacted value) is
// backdated 200 days: the next sync raises one critical key_access alert for
// the new admin key, one warning for the unused key and one key_rotation
// alert for the held key, older than KEY_ROTATION_REMINDER_DAYS (90) by the
// provider's created_at. A third sync raises nothing new, and no alert or
// log line holds more of a key than its hint.
func TestKeyHygieneAlertsFireOnceEach(t *testing.T) {
	t.Parallel()
	b := setup(t)
	user := uuid.NewString()
	key := "sk-admin-hygiene-org_h" + user[:8]
	id := b.addConnection(t, user, tokka.OpenAI, key)
	s := b.syncer(t, "one", nil, nil)
	sync := func() {
		t.Helper()
		_, err := b.sql.Exec(`UPDATE tokka.connections SET next_sync_at = now() WHERE id = $1`, id)
		require.NoError(t, err)
		_, err = s.RunOnce(context.Background())
		require.NoError(t, err)
		st, reason := b.status(t, id)
		require.Equal(t, "active", st, reason)
	}
	sync()
	require.Empty(t, b.hygiene(t, id), "a fresh organisation; nothing is new on the first directory sync")

	now := time.Now()
	heldKey := fakeprovider.OpenAIAdminKeys(key, 0)[0]
	projectKey := fakeprovider.OpenAIProjectKeys(key, fakeprovider.OpenAIProjects(key)[1].ID, 0)[0]
	added := b.fake.AddAdminKey(key, "someone's admin key")
	b.fake.AgeKey(key, projectKey.ID, now.AddDate(0, 0, -100))
	b.fake.BackdateKey(key, heldKey.ID, now.AddDate(0, 0, -200))
	sync()
	got := b.hygiene(t, id)
	require.Len(t, got, 3, "%v", got)

	require.Len(t, got["new_admin"], 1)
	fresh := got["new_admin"][0]
	require.Equal(t, "admin_key_new:"+id+":"+added.ID, fresh.DedupKey)
	require.Equal(t, tokka.AlertKeyAccess, fresh.Kind)
	require.Equal(t, "critical", fresh.Severity)
	require.Contains(t, fresh.Title, "someone's admin key")
	require.Contains(t, fresh.Title, added.Redacted)

	require.Len(t, got["unused"], 1)
	unused := got["unused"][0]
	require.Equal(t, "key_unused:"+id+":"+projectKey.ID, unused.DedupKey)
	require.Equal(t, tokka.AlertKeyAccess, unused.Kind)
	require.Equal(t, "warning", unused.Severity)
	require.Contains(t, unused.Title, projectKey.Name)

	require.Len(t, got["held_age"], 1)
	held := got["held_age"][0]
	require.Equal(t, "key_rotation:provider:"+id+":"+heldKey.ID, held.DedupKey)
	require.Equal(t, tokka.AlertKeyRotation, held.Kind)
	require.Contains(t, held.Title, key[:8]+"...."+key[len(key)-4:])
	require.Contains(t, string(held.Detail), `"reminder_days": 90`)
	require.Contains(t, string(held.Detail), `"age_days": 200`)

	var before int
	require.NoError(t, b.sql.Get(&before, `SELECT count(*) FROM tokka.alerts WHERE connection_id = $1`, id))
	sync()
	var after int
	require.NoError(t, b.sql.Get(&after, `SELECT count(*) FROM tokka.alerts WHERE connection_id = $1`, id))
	require.Equal(t, before, after, "a third sync raises nothing new")

	var texts string
	require.NoError(t, b.sql.Get(&texts, `SELECT string_agg(title || detail::text, ' ') FROM tokka.alerts WHERE connection_id = $1`, id))
	require.NotContains(t, texts, key)
	require.NotContains(t, texts, key[8:len(key)-4], "nothing of the key between the hint's ends")
	require.NotContains(t, b.logs.String(), key[8:len(key)-4])
}

// An Anthropic key listing says nothing of last use, so its old keys are not
// reported unused; nor is an admin key new there (none are listed).
func TestAnthropicKeysAreNotReportedUnused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	user := uuid.NewString()
	key := "sk-ant-admin01-hygiene-org_a" + user[:8]
	id := b.addConnection(t, user, tokka.Anthropic, key)
	for _, k := range fakeprovider.AnthropicAPIKeys(key, 0) {
		b.fake.BackdateKey(key, k.ID, time.Now().AddDate(-2, 0, 0))
	}
	_, err := b.syncer(t, "one", nil, nil).RunOnce(context.Background())
	require.NoError(t, err)
	st, reason := b.status(t, id)
	require.Equal(t, "active", st, reason)
	require.Empty(t, b.hygiene(t, id))
}
