package postgres_test

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/pgtest"
	"github.com/tokka-dev/tokka/pkg/postgres"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// tripCounter is a TCP proxy in front of Postgres that counts the server's
// ReadyForQuery messages: lib/pq waits for one at the end of every round
// trip (a simple query, or an extended-protocol exchange up to its Sync).
type tripCounter struct {
	ln    net.Listener
	trips atomic.Int64
}

func newTripCounter(t *testing.T, target string) *tripCounter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	tc := &tripCounter{ln: ln}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", target)
			if err != nil {
				_ = client.Close()
				continue
			}
			go func() { _, _ = io.Copy(server, client); _ = server.Close() }()
			go func() { tc.relay(client, server); _ = client.Close() }()
		}
	}()
	return tc
}

// relay copies the server's messages to the client, counting each 'Z'.
func (tc *tripCounter) relay(client, server net.Conn) {
	head := make([]byte, 5)
	for {
		if _, err := io.ReadFull(server, head); err != nil {
			return
		}
		body := make([]byte, binary.BigEndian.Uint32(head[1:])-4)
		if _, err := io.ReadFull(server, body); err != nil {
			return
		}
		if head[0] == 'Z' {
			tc.trips.Add(1)
		}
		if _, err := client.Write(append(head, body...)); err != nil {
			return
		}
	}
}

// TestAReadIsThreeRoundTrips: BEGIN goes with the statement that sets the
// caller's claims, role, search_path and timeout; the query with its
// arguments is one trip (binary_parameters, and a statement the connection
// has prepared: one more trip the first time it runs there, none after);
// COMMIT is the third. Before, the same read took six.
func TestAReadIsThreeRoundTrips(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	u := newUser()
	id := b.addConnection(t, u, "openai")

	u0, err := url.Parse(pgtest.URL(t))
	require.NoError(t, err)
	tc := newTripCounter(t, u0.Host)
	u0.Host = tc.ln.Addr().String()
	d, err := postgres.Open(ctx, u0.String(), 1)
	require.NoError(t, err)
	defer d.Close()

	count := func(fn func() error) int64 {
		t.Helper()
		before := tc.trips.Load()
		require.NoError(t, fn())
		return tc.trips.Load() - before
	}
	for _, read := range []func() error{
		func() error { _, err := d.ListConnectionsPage(ctx, u, nil, 10); return err },
		func() error { _, err := d.GetConnection(ctx, u, id); return err },
		func() error { _, err := d.ListAlerts(ctx, u, 0, 10, false); return err },
	} {
		require.Equal(t, int64(4), count(read), "the first time on a connection: prepare the statement")
		require.Equal(t, int64(3), count(read))
		require.Equal(t, int64(3), count(read))
	}
}

// TestHostileClaimsStayInsideTheirLiteral: the claims are the one piece of
// outside text in the SQL that starts a transaction. Claims built to end
// that literal early (quotes, backslashes, dollar quotes, a multibyte
// character before a backslash) on a connection whose session an
// injection switched to non-standard strings and a Shift-JIS client
// encoding are still read back byte for byte, and the request acts as its
// own subject only.
func TestHostileClaimsStayInsideTheirLiteral(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	attacker, victim := newUser(), newUser()
	mine := b.addConnection(t, attacker, "openai")
	b.addConnection(t, victim, "openai")

	d, err := postgres.Open(ctx, pgtest.URL(t), 1)
	require.NoError(t, err)
	defer d.Close()
	_, err = d.Pool().Exec(`SET standard_conforming_strings = off; SET client_encoding = 'SJIS'`)
	require.NoError(t, err)

	escape := `', true), set_config('request.jwt.claims', '{"sub":"` + victim.ID + `"}', true); --`
	for _, payload := range []string{
		escape,
		`\` + escape,
		`\'` + escape,
		"名\\'" + escape,
		"\xe4\xb8\x80\\'" + escape,
		`$$` + escape + `$$`,
		`')); SELECT set_config('request.jwt.claims', '{"sub":"` + victim.ID + `"}', false); --`,
	} {
		claims, err := json.Marshal(map[string]string{"sub": attacker.ID, "role": "authenticated", "x": payload})
		require.NoError(t, err)
		u := tokka.User{ID: attacker.ID, Claims: claims}
		for name, run := range map[string]func(context.Context, tokka.User, func(*sqlx.Tx) error) error{
			"read": d.AsReader, "write": d.AsUser,
		} {
			var got struct {
				UID    string `db:"uid"`
				Claims string `db:"claims"`
				Role   string `db:"role"`
			}
			require.NoError(t, run(ctx, u, func(tx *sqlx.Tx) error {
				// As hex: the session's Shift-JIS would re-encode text.
				return tx.Get(&got, `SELECT tokka.uid()::text AS uid, current_user AS role,
					encode(convert_to(current_setting('request.jwt.claims'), 'UTF8'), 'hex') AS claims`)
			}), "%s %q", name, payload)
			require.Equal(t, attacker.ID, got.UID, "%s %q", name, payload)
			require.Equal(t, hex.EncodeToString(claims), got.Claims, "%s %q", name, payload)
			require.Equal(t, "authenticated", got.Role)
		}
		conns, err := d.ListConnectionsPage(ctx, u, nil, 100)
		require.NoError(t, err)
		require.Len(t, conns, 1)
		require.Equal(t, mine, conns[0].ID)
	}
}

// TestPreparedStatementsServeEachCallerAsThemselves: one connection, one
// prepared statement, callers taking turns: each reads only their own rows
// (the claims are read when the statement runs, not when it was planned),
// and however many shapes of usage query run there, the connection keeps
// at most StmtCacheSize statements prepared on the server.
func TestPreparedStatementsServeEachCallerAsThemselves(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	alice, bob := newUser(), newUser()
	aliceConn, bobConn := b.addConnection(t, alice, "openai"), b.addConnection(t, bob, "openai")
	d, err := postgres.Open(ctx, pgtest.URL(t), 1)
	require.NoError(t, err)
	defer d.Close()
	for range 8 { // past the server's five custom plans, onto a generic one
		for _, who := range []struct {
			u    tokka.User
			want string
		}{{alice, aliceConn}, {bob, bobConn}} {
			page, err := d.ListConnectionsPage(ctx, who.u, nil, 10)
			require.NoError(t, err)
			require.Equal(t, []string{who.want}, ids(page))
		}
	}
	var prepared int
	require.NoError(t, d.Pool().Get(&prepared, `SELECT count(*) FROM pg_prepared_statements`))
	require.Equal(t, 1, prepared, "one statement served both")

	q := tokka.UsageQuery{From: time.Now().AddDate(0, 0, -3), To: time.Now(), GroupBy: []string{"day"}}
	for limit := 1; limit <= postgres.StmtCacheSize+20; limit++ {
		q.Limit = limit // a new statement each time (LIMIT is part of the SQL)
		_, err := d.Usage(ctx, alice, q)
		require.NoError(t, err)
	}
	require.NoError(t, d.Pool().Get(&prepared, `SELECT count(*) FROM pg_prepared_statements`))
	require.Equal(t, postgres.StmtCacheSize, prepared, "the least recently used statements were closed")
	page, err := d.ListConnectionsPage(ctx, bob, nil, 10)
	require.NoError(t, err)
	require.Equal(t, []string{bobConn}, ids(page))
}

// TestPreparedWritesServeEachCallerAsThemselves: a statement with
// arguments sent with Exec is prepared once per connection too, and the
// same prepared UPDATE, past the custom plans, changes only what
// row-level security lets each caller change.
func TestPreparedWritesServeEachCallerAsThemselves(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	alice, bob := newUser(), newUser()
	aliceConn := b.addConnection(t, alice, "openai")
	d, err := postgres.Open(ctx, pgtest.URL(t), 1)
	require.NoError(t, err)
	defer d.Close()
	const rename = `UPDATE tokka.connections SET label = $2 WHERE id = $1`
	as := func(u tokka.User, label string) int64 {
		t.Helper()
		tx, err := d.Pool().BeginTxx(ctx, nil)
		require.NoError(t, err)
		defer tx.Rollback() //nolint:errcheck
		_, err = tx.Exec(`SELECT set_config('request.jwt.claims', $1, true), set_config('role', 'authenticated', true)`, string(u.Claims))
		require.NoError(t, err)
		res, err := tx.Exec(rename, aliceConn, label)
		require.NoError(t, err)
		n, err := res.RowsAffected()
		require.NoError(t, err)
		require.NoError(t, tx.Commit())
		return n
	}
	for i := range 8 { // past the server's five custom plans, onto a generic one
		require.EqualValues(t, 1, as(alice, fmt.Sprint("alice ", i)))
		require.EqualValues(t, 0, as(bob, "bob"))
	}
	var label string
	require.NoError(t, b.sql.Get(&label, `SELECT label FROM tokka.connections WHERE id = $1`, aliceConn))
	require.Equal(t, "alice 7", label)
	var prepared int
	require.NoError(t, d.Pool().Get(&prepared, `SELECT count(*) FROM pg_prepared_statements WHERE statement = $1`, rename))
	require.Equal(t, 1, prepared, "one prepared statement served both")
}
