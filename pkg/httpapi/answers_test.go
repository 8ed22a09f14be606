package httpapi_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/httpapi"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// TestKeptAnswersFollowTheData: a usage page and a summary asked again are
// sent from the answer cache (shown by changing rows behind the database
// triggers' back: the kept bodies still carry the old figures), but as soon
// as the user's data changes through any ordinary write (a sync, a
// deletion) the next answer is computed afresh; another user asking the
// very same question gets their own answer; with the cache off every
// answer is fresh.
func TestKeptAnswersFollowTheData(t *testing.T) {
	t.Parallel()
	b := setup(t, at(nov5))
	off := setup(t, at(nov5), configured(httpapi.Config{AnswerCacheBytes: -1}))
	alice, bob := b.newUser(t), b.newUser(t)
	openaiID, anthropicID := spendFixture(t, b, alice)
	const page, summary = "/v1/usage?from=2026-11-01&to=2026-11-05&group_by=provider", "/v1/usage/summary"
	get := func(b *testBundle, u user, path string) string {
		t.Helper()
		status, _, body := b.do(t, u, http.MethodGet, path, nil)
		require.Equal(t, http.StatusOK, status, string(body))
		return string(body)
	}
	firstPage, firstSummary := get(b, alice, page), get(b, alice, summary)
	require.Contains(t, firstPage, `"cost_usd":"5"`)
	require.Equal(t, firstPage, get(b, alice, page))
	require.NotContains(t, get(b, bob, page), `"cost_usd":"5"`, "another user asking the same")

	// Behind the triggers' back (the replication role skips them), OpenAI's
	// November costs double: the kept answers do not see it, a process
	// without the cache does.
	tx := b.sql.MustBegin()
	_, err := tx.Exec(`SET LOCAL session_replication_role = replica`)
	require.NoError(t, err)
	for _, table := range []string{"cost_daily", "cost_monthly", "spend_daily"} {
		_, err = tx.Exec(`UPDATE tokka.`+table+` SET amount_usd = amount_usd * 2 WHERE connection_id = $1 AND day >= '2026-11-01'`, openaiID)
		require.NoError(t, err)
	}
	require.NoError(t, tx.Commit())
	require.Equal(t, firstPage, get(b, alice, page), "the page was sent from the cache")
	require.Equal(t, firstSummary, get(b, alice, summary), "the summary was sent from the cache")
	require.Contains(t, get(off, alice, page), `"cost_usd":"10"`)

	// An ordinary sync (of the other connection) moves the version: both
	// are computed again and show what the database holds.
	syncRows(t, b, anthropicID, tokka.Window{From: nov5, To: nov5.AddDate(0, 0, 1)}, nil, nil)
	require.Contains(t, get(b, alice, page), `"cost_usd":"10"`)
	require.NotEqual(t, firstSummary, get(b, alice, summary))
	require.Equal(t, get(off, alice, summary), get(b, alice, summary))

	// Deleting a connection is seen at once.
	status, _, body := b.do(t, alice, http.MethodDelete, "/v1/connections/"+openaiID, nil)
	require.Equal(t, http.StatusNoContent, status, string(body))
	require.NotContains(t, get(b, alice, page), `"provider":"openai"`)
	require.Equal(t, get(off, alice, summary), get(b, alice, summary))
}
