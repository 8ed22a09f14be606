package syncer_test

import (
	"context"
	"strings"
	"testing"

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
	require.NoError(t, b.sql.Select(&all, `SELECT id, user_id, kind, severity, connection_id, dedup_key, title, detail,
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

// The fake's directory drives each hygiene alert exactly once: every key of
// the organisation (all created in 2024–2025, none used since) is reported
// unused, the admin key Tokka holds (matched by its redacted value) is
// reported older than KEY_ROTATION_REMINDER_DAYS by the provider's
// created_at, and no admin key counts as new on the first directory sync. An
// admin key created at the provider afterwards is reported once, as a
// critical key_access alert, and is not unused. Syncing again raises
// nothing new, and no alert or log line holds more of a key than its hint.
func TestKeyHygieneAlertsFireOnceEach(t *testing.T) {
	t.Parallel()
	b := setup(t)
	user := uuid.NewString()
	key := "sk-admin-hygiene-org_h" + user[:8]
	id := b.addConnection(t, user, tokka.OpenAI, key)
	s := b.syncer(t, "one", nil, nil)
	again := func() {
		t.Helper()
		_, err := b.sql.Exec(`UPDATE tokka.connections SET next_sync_at = now() WHERE id = $1`, id)
		require.NoError(t, err)
		_, err = s.RunOnce(context.Background())
		require.NoError(t, err)
		st, reason := b.status(t, id)
		require.Equal(t, "active", st, reason)
	}
	_, err := s.RunOnce(context.Background())
	require.NoError(t, err)

	admin := fakeprovider.OpenAIAdminKeys(key, 0)
	keyIDs := []string{admin[0].ID, admin[1].ID}
	for _, p := range fakeprovider.OpenAIProjects(key) {
		for _, k := range fakeprovider.OpenAIProjectKeys(key, p.ID, 0) {
			keyIDs = append(keyIDs, k.ID)
		}
	}
	got := b.hygiene(t, id)
	require.Empty(t, got["new_admin"], "the first directory sync has nothing to compare with")
	require.Len(t, got["unused"], len(keyIDs))
	for _, kid := range keyIDs {
		require.True(t, slicesHas(got["unused"], "key_unused:"+id+":"+kid), kid)
	}
	for _, a := range got["unused"] {
		require.Equal(t, tokka.AlertKeyAccess, a.Kind)
		require.Equal(t, "warning", a.Severity)
	}
	require.Len(t, got["held_age"], 1)
	held := got["held_age"][0]
	require.Equal(t, "key_rotation:provider:"+id+":"+admin[0].ID, held.DedupKey)
	require.Equal(t, tokka.AlertKeyRotation, held.Kind)
	require.Contains(t, held.Title, key[:8]+"..."+key[len(key)-4:])
	require.Contains(t, string(held.Detail), `"reminder_days": 90`)

	added := b.fake.AddAdminKey(key, "someone's admin key")
	again()
	got = b.hygiene(t, id)
	require.Len(t, got["new_admin"], 1)
	fresh := got["new_admin"][0]
	require.Equal(t, "admin_key_new:"+id+":"+added.ID, fresh.DedupKey)
	require.Equal(t, tokka.AlertKeyAccess, fresh.Kind)
	require.Equal(t, "critical", fresh.Severity)
	require.Contains(t, fresh.Title, "someone's admin key")
	require.Contains(t, fresh.Title, added.Redacted)
	require.Len(t, got["unused"], len(keyIDs), "the new key was used today")
	require.Len(t, got["held_age"], 1)

	var before int
	require.NoError(t, b.sql.Get(&before, `SELECT count(*) FROM tokka.alerts WHERE connection_id = $1`, id))
	again()
	var after int
	require.NoError(t, b.sql.Get(&after, `SELECT count(*) FROM tokka.alerts WHERE connection_id = $1`, id))
	require.Equal(t, before, after, "a third sync raises nothing new")

	var texts string
	require.NoError(t, b.sql.Get(&texts, `SELECT string_agg(title || detail::text, ' ') FROM tokka.alerts WHERE connection_id = $1`, id))
	require.NotContains(t, texts, key)
	require.NotContains(t, texts, key[8:len(key)-4], "nothing of the key between the hint's ends")
	require.NotContains(t, b.logs.String(), key[8:len(key)-4])
}

func slicesHas(alerts []tokka.Alert, dedup string) bool {
	for _, a := range alerts {
		if a.DedupKey == dedup {
			return true
		}
	}
	return false
}
