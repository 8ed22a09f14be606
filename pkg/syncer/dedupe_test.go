package syncer_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/syncer"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// userCost is everything the user's spend is computed from: cost lines,
// and the daily spend totals the summary and budgets read.
func (b *testBundle) userCost(t *testing.T, user string) (lines, daily string) {
	t.Helper()
	require.NoError(t, b.sql.QueryRow(`SELECT
		(SELECT coalesce(sum(amount_usd), 0)::text FROM tokka.cost_daily WHERE team_id = $1),
		(SELECT coalesce(sum(amount_usd), 0)::text FROM tokka.spend_daily WHERE team_id = $1)`, user).Scan(&lines, &daily))
	return lines, daily
}

// Two admin keys of one organisation, synced in one pass (each provider),
// or the newer first and the older a pass later: one connection is counted,
// the older one; the other is a duplicate that is not synced again. Every
// decryption still ends with a sync outcome of the syncer that made it, so
// no key-access alert can follow.
func TestSameOrganisationIsCountedOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	w := tokka.DayWindow(time.Now(), 35)

	// Together, in one pass.
	user := uuid.NewString()
	keys := map[tokka.Provider][2]string{
		tokka.OpenAI:    {"sk-admin-a-org_same1-" + user[:8], "sk-admin-b-org_same1-" + user[:8]},
		tokka.Anthropic: {"sk-ant-admin01-a-org_same1-" + user[:8], "sk-ant-admin01-b-org_same1-" + user[:8]},
	}
	ids := map[tokka.Provider][2]string{}
	for p, k := range keys {
		older := b.addConnection(t, user, p, k[0])
		newer := b.addConnection(t, user, p, k[1])
		_, err := b.sql.Exec(`UPDATE tokka.connections SET created_at = created_at - interval '1 minute' WHERE id = $1`, older)
		require.NoError(t, err)
		ids[p] = [2]string{older, newer}
	}
	s := b.syncer(t, "dedupe", nil, nil)
	sum, err := s.RunOnce(ctx)
	require.NoError(t, err)
	// Which of a pair learns its organisation first is a race: the newer
	// may be marked duplicate at once, or be synced and then demoted by the
	// older (after or during its sync). Either way nothing fails.
	require.Zero(t, sum.Failed)
	require.Equal(t, 4, sum.Synced+sum.Duplicates+sum.Skipped, "%+v", sum)
	for p, pair := range ids {
		st, _ := b.status(t, pair[0])
		require.Equal(t, "active", st, p)
		st, reason := b.status(t, pair[1])
		require.Equal(t, "duplicate", st, p)
		require.Contains(t, reason, pair[0])
		require.Zero(t, b.usageRowCount(t, pair[1]))
		b.requireStoresWhatIsServed(t, pair[0], p, keys[p][0], w)
	}
	sum, err = s.RunOnce(ctx)
	require.NoError(t, err)
	require.Equal(t, syncer.Summary{}, sum, "a duplicate is never synced again")

	// The newer one first, the older one a pass later: the older is kept
	// and the newer's rows go.
	other := uuid.NewString()
	older := b.addConnection(t, other, tokka.OpenAI, "sk-admin-a-org_same2-"+other[:8])
	newerKey := "sk-admin-b-org_same2-" + other[:8]
	newer := b.addConnection(t, other, tokka.OpenAI, newerKey)
	_, err = b.sql.Exec(`UPDATE tokka.connections SET created_at = created_at - interval '1 minute',
		next_sync_at = now() + interval '1 hour' WHERE id = $1`, older)
	require.NoError(t, err)
	sum, err = s.RunOnce(ctx)
	require.NoError(t, err)
	require.Equal(t, syncer.Summary{Synced: 1}, sum)
	counted, _ := b.userCost(t, other)
	require.NotEqual(t, "0", counted)
	_, err = b.sql.Exec(`UPDATE tokka.connections SET next_sync_at = now() WHERE id = $1`, older)
	require.NoError(t, err)
	sum, err = s.RunOnce(ctx)
	require.NoError(t, err)
	require.Equal(t, syncer.Summary{Synced: 1}, sum)
	st, _ := b.status(t, newer)
	require.Equal(t, "duplicate", st)
	lines, daily := b.userCost(t, other)
	require.Equal(t, counted, lines, "the same organisation, counted once")
	require.Equal(t, counted, daily)

	// Every decryption has its outcome: nothing for the key-access check.
	n, err := b.db.FlagKeyAccessAnomalies(ctx, 0, nil)
	require.NoError(t, err)
	require.Zero(t, n)
	for _, k := range []string{keys[tokka.OpenAI][0], keys[tokka.OpenAI][1], newerKey} {
		require.NotContains(t, b.logs.String(), k)
	}
}
