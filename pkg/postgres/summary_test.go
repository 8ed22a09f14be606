package postgres_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/pgtest"
	"github.com/tokka-dev/tokka/pkg/postgres"
)

// TestSummaryIsFourRoundTrips: the summary reads its periods in one
// statement and the top lists, their directory names and the last sync in
// another, between BEGIN (with the caller's claims) and COMMIT. It was
// seven trips when the names and the sync time were queries of their own.
func TestSummaryIsFourRoundTrips(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	u := newUser()
	b.addConnection(t, u, "openai")

	u0, err := url.Parse(pgtest.URL(t))
	require.NoError(t, err)
	tc := newTripCounter(t, u0.Host)
	u0.Host = tc.ln.Addr().String()
	d, err := postgres.Open(ctx, u0.String(), 1)
	require.NoError(t, err)
	defer d.Close()

	summary := func() int64 {
		t.Helper()
		before := tc.trips.Load()
		_, err := d.Summary(ctx, u, time.Now(), 5)
		require.NoError(t, err)
		return tc.trips.Load() - before
	}
	require.Equal(t, int64(6), summary(), "the first time on a connection: prepare both statements")
	require.Equal(t, int64(4), summary())
	require.Equal(t, int64(4), summary())
}
