package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/lib/pq"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/pgtest"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

type verification struct {
	Intact        bool    `json:"intact"`
	Events        int64   `json:"events"`
	Checked       int64   `json:"checked"`
	FirstBrokenID *int64  `json:"first_broken_id"`
	Problem       *string `json:"problem"`
	HeadHash      *string `json:"head_hash"`
}

func (b *testBundle) verifyChain(t *testing.T, u user, query string) verification {
	t.Helper()
	status, _, body := b.do(t, u, http.MethodGet, "/v1/audit-events/verify"+query, nil)
	require.Equal(t, http.StatusOK, status, string(body))
	var v verification
	require.NoError(t, json.Unmarshal(body, &v))
	return v
}

// TestAuditVerifyAtScaleIsIncrementalAndBounded seeds a 200,000-event chain
// and checks, through the real router: the first verification reads it all,
// the next only what is new; a checkpoint cannot be planted; a verification
// whose statement outlives the statement timeout is a 503 problem, not a
// held connection; and full=true still finds an edit the table owner made
// behind the checkpoint.
func TestAuditVerifyAtScaleIsIncrementalAndBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, statementTimeout(time.Second))
	alice, bob := b.newUser(t), b.newUser(t)
	id := b.createConnection(t, alice, tokka.OpenAI, "sk-admin-scale0123456789abcdefghij")["id"].(string)
	b.createConnection(t, bob, tokka.OpenAI, "sk-admin-scale0123456789abcdefghik")
	const seeded = 200_000
	require.NoError(t, pgtest.SeedAuditChain(ctx, b.sql, alice.id, seeded))
	rename := func() {
		t.Helper()
		status, _, body := b.do(t, alice, http.MethodPatch, "/v1/connections/"+id, map[string]string{"label": "renamed"})
		require.Equal(t, http.StatusOK, status, string(body))
	}

	v := b.verifyChain(t, alice, "")
	require.True(t, v.Intact, "broken at %v: %v", v.FirstBrokenID, v.Problem)
	require.EqualValues(t, 1+seeded, v.Events)
	require.EqualValues(t, 1+seeded, v.Checked)
	rename()
	rename()
	v = b.verifyChain(t, alice, "")
	require.True(t, v.Intact)
	require.EqualValues(t, 3+seeded, v.Events)
	require.EqualValues(t, 2, v.Checked, "the second verification reads only what is new")

	// Planting a checkpoint, as an SQL injection in the api would try.
	var bobEvent struct {
		ID   int64  `db:"id"`
		Hash []byte `db:"hash"`
	}
	require.NoError(t, b.sql.Get(&bobEvent, `SELECT id, hash FROM tokka.audit_events WHERE team_id = $1`, bob.id))
	for _, q := range []string{
		`SELECT tokka.advance_audit_checkpoint($1, $2)`,
		`UPDATE tokka.audit_checkpoints SET event_id = $1, hash = $2`,
	} {
		tx, err := b.sql.Beginx()
		require.NoError(t, err)
		_, err = tx.Exec(`SELECT set_config('request.jwt.claims', $1, true), set_config('role', 'authenticated', true)`,
			`{"sub":"`+alice.id+`","role":"authenticated"}`)
		require.NoError(t, err)
		_, err = tx.Exec(q, bobEvent.ID, bobEvent.Hash)
		var pqErr *pq.Error
		require.True(t, errors.As(err, &pqErr) && (pqErr.Code == "22023" || pqErr.Code == "42501"), "%s: %v", q, err)
		require.NoError(t, tx.Rollback())
	}

	// A statement that cannot finish in time: the checkpoint row is locked
	// (by the owner, standing in for anything slow) while a verification
	// wants to move it.
	rename()
	lock, err := b.sql.Beginx()
	require.NoError(t, err)
	_, err = lock.Exec(`SELECT 1 FROM tokka.audit_checkpoints WHERE team_id = $1 FOR UPDATE`, alice.id)
	require.NoError(t, err)
	status, h, body := b.do(t, alice, http.MethodGet, "/v1/audit-events/verify", nil)
	requireProblem(t, status, h, body, http.StatusServiceUnavailable)
	require.Contains(t, string(body), `"detail":"the database took too long to answer; try again shortly"`)
	require.NotEmpty(t, h.Get("Retry-After"))
	require.NoError(t, lock.Rollback())
	v = b.verifyChain(t, alice, "")
	require.True(t, v.Intact)
	require.EqualValues(t, 1, v.Checked)

	// The owner edits an event far behind the checkpoint.
	var edited int64
	require.NoError(t, b.sql.Get(&edited, `SELECT id FROM tokka.audit_events WHERE team_id = $1 ORDER BY id OFFSET 100 LIMIT 1`, alice.id))
	_, err = b.sql.Exec(`UPDATE tokka.audit_events SET detail = 'nothing happened' WHERE id = $1`, edited)
	require.NoError(t, err)
	v = b.verifyChain(t, alice, "")
	require.True(t, v.Intact, "behind the checkpoint: only a full check reads it")
	require.Zero(t, v.Checked)
	v = b.verifyChain(t, alice, "?full=true")
	require.False(t, v.Intact)
	require.Equal(t, edited, *v.FirstBrokenID)
	require.EqualValues(t, 4+seeded, v.Events)
	require.EqualValues(t, 4+seeded, v.Checked)

	// Bob's chain, and Bob, were never affected.
	v = b.verifyChain(t, bob, "")
	require.True(t, v.Intact)
	require.EqualValues(t, 1, v.Events)
}
