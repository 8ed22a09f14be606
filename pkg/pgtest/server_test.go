package pgtest_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/pgtest"
)

// TestPrivateServerSurvivesStopAndStart: a private server is migrated, can
// be stopped (clients then fail) and started again with its data intact.
func TestPrivateServerSurvivesStopAndStart(t *testing.T) {
	t.Parallel()
	pg := pgtest.StartServer(t)
	db, err := sqlx.Open("postgres", pg.URL())
	require.NoError(t, err)
	defer db.Close()
	ctx := context.Background()
	_, err = db.ExecContext(ctx, `INSERT INTO tokka.rate_limits (bucket_key, window_start, hit_count)
		VALUES ('test', now(), 7)`)
	require.NoError(t, err)

	pg.Stop()
	require.Error(t, db.PingContext(ctx), "a stopped server does not answer")
	pg.Start()
	var hits int
	require.NoError(t, db.GetContext(ctx, &hits, `SELECT hit_count FROM tokka.rate_limits WHERE bucket_key = 'test'`))
	require.Equal(t, 7, hits)
	pg.Restart()
	require.NoError(t, db.GetContext(ctx, &hits, `SELECT hit_count FROM tokka.rate_limits WHERE bucket_key = 'test'`))
}

// TestWaitForReplaySeesWhatWasJustCommitted: right after a commit (which
// the private server makes with synchronous_commit=off, so it may not be
// written out yet), WaitForReplay returns only once the replica shows it,
// every time.
func TestWaitForReplaySeesWhatWasJustCommitted(t *testing.T) {
	t.Parallel()
	pg := pgtest.StartServer(t)
	replica := pg.StartReplica(t)
	primary, err := sqlx.Open("postgres", pg.URL())
	require.NoError(t, err)
	defer primary.Close()
	standby, err := sqlx.Open("postgres", replica.URL())
	require.NoError(t, err)
	defer standby.Close()
	for i := range 20 {
		_, err := primary.Exec(`INSERT INTO tokka.rate_limits (bucket_key, window_start, hit_count) VALUES ($1, now(), 1)`,
			fmt.Sprint("replay-", i))
		require.NoError(t, err)
		pg.WaitForReplay(t, replica)
		var n int
		require.NoError(t, standby.Get(&n, `SELECT count(*) FROM tokka.rate_limits WHERE bucket_key LIKE 'replay-%'`))
		require.Equal(t, i+1, n, "the replica has replayed commit %d", i)
	}
}
