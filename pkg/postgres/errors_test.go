package postgres_test

import (
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"

	"github.com/lib/pq"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/postgres"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// TestUnreachableDatabaseIsUnavailable: every way a database can be out of
// reach (no connection, a broken one, a server shutting down or starting
// up, no connection slots) is ErrUnavailable, whose message is safe to show
// and which keeps the driver's error for the logs; statement errors are not.
func TestUnreachableDatabaseIsUnavailable(t *testing.T) {
	t.Parallel()
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	for name, err := range map[string]error{
		"connection refused":      refused,
		"connection reset":        fmt.Errorf("read: %w", syscall.ECONNRESET),
		"bad connection":          driver.ErrBadConn,
		"admin shutdown":          &pq.Error{Code: "57P01"},
		"crash shutdown":          &pq.Error{Code: "57P02"},
		"cannot connect now":      &pq.Error{Code: "57P03"},
		"connection failure":      &pq.Error{Code: "08006"},
		"too many connections":    &pq.Error{Code: "53300"},
		"wrapped by a method too": fmt.Errorf("postgres: list: %w", refused),
	} {
		got := postgres.DomainError(err, "thing")
		require.ErrorIs(t, got, tokka.ErrUnavailable, name)
		require.Equal(t, tokka.CodeUnavailable, tokka.ErrorCode(got), name)
		var te *tokka.Error
		require.True(t, errors.As(got, &te), name)
		require.Equal(t, "the database is unavailable; try again shortly", te.Message, name)
		require.ErrorIs(t, got, err, "%s: the cause stays in the chain for the logs", name)
	}
	for name, err := range map[string]error{
		"undefined table": &pq.Error{Code: "42P01"},
		"plain failure":   errors.New("something else"),
	} {
		got := postgres.DomainError(err, "thing")
		require.NotErrorIs(t, got, tokka.ErrUnavailable, name)
		require.Equal(t, tokka.CodeInternal, tokka.ErrorCode(got), name)
	}
	require.Equal(t, tokka.CodeConflict, tokka.ErrorCode(postgres.DomainError(&pq.Error{Code: "23505"}, "thing")))
}
