package pgserver_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/pgserver"
)

// WaitForReplay pointed at a server that is not a standby says so at once
// rather than waiting for a replay position it will never report. (The
// replica's own behaviour is tested through pgtest.)
func TestWaitForReplayRejectsAPrimary(t *testing.T) {
	t.Parallel()
	s, err := pgserver.Start()
	require.NoError(t, err)
	t.Cleanup(s.Remove)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = pgserver.WaitForReplay(ctx, s.URL("postgres"), s.URL("postgres"))
	require.ErrorContains(t, err, "not in recovery")
	require.NoError(t, ctx.Err())
}
