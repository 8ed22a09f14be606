package pgtest

import (
	"context"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tokka-dev/tokka/pkg/pgserver"
	"github.com/tokka-dev/tokka/pkg/postgres"
)

// Server is a PostgreSQL server that belongs to one test, so the test can
// stop, start and restart it (fault injection) without disturbing the
// shared server other tests use. It listens on a free loopback port that
// stays the same across restarts, trusts every local connection and holds
// one migrated database, "tokka". It is a pgserver.Server that fails the
// test instead of returning errors.
type Server struct {
	tb  testing.TB
	srv *pgserver.Server
	url string
}

// StartServer initialises and starts a private PostgreSQL server for tb in a
// temporary directory and migrates its "tokka" database as Main does; it is
// stopped and removed when the test ends. It fails the test, never skips it,
// when the server binaries are missing (saying how to install them) or the
// server does not start. As root it runs the server as the postgres user
// (initdb and postgres refuse to run as root).
func StartServer(tb testing.TB) *Server {
	tb.Helper()
	srv, err := pgserver.Start()
	if err != nil {
		tb.Fatalf("pgtest: fault tests start their own PostgreSQL server: %v", err)
	}
	tb.Cleanup(srv.Remove)
	s := &Server{tb: tb, srv: srv}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := sqlx.Open("postgres", srv.URL("postgres"))
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	defer admin.Close()
	if _, err := admin.ExecContext(ctx, `CREATE DATABASE tokka`); err != nil {
		tb.Fatalf("pgtest: create database: %v", err)
	}
	s.url = srv.URL("tokka")
	if err := postgres.Migrate(ctx, s.url); err != nil {
		tb.Fatalf("pgtest: migrate the private server: %v", err)
	}
	return s
}

// URL is the migrated database's URL, as the superuser that owns its tables
// (the api's and the syncer's storage switch roles per transaction).
func (s *Server) URL() string { return s.url }

// Stop shuts the server down the way an operator's restart does (fast:
// sessions are terminated with admin_shutdown), and returns once it is
// down. It fails the test if pg_ctl fails.
func (s *Server) Stop() {
	s.tb.Helper()
	if err := s.srv.Stop(); err != nil {
		s.tb.Fatalf("pgtest: %v", err)
	}
}

// Start starts the (stopped) server on its port and returns once it accepts
// connections. It fails the test if the server does not come up.
func (s *Server) Start() {
	s.tb.Helper()
	if err := s.srv.Start(); err != nil {
		s.tb.Fatalf("pgtest: %v", err)
	}
}

// Restart stops the server (fast) and starts it again.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Stop()
	s.Start()
}

// StartReplica makes a streaming replica of s (which must be running):
// pg_basebackup -R copies s into a temporary directory of its own, and the
// copy starts as a hot standby on another free loopback port, replaying
// what s writes. It is stopped and removed when the test ends; it fails the
// test if the copy or the start fails. The replica's URL names the same
// "tokka" database; WaitForReplay waits until it has caught up.
func (s *Server) StartReplica(tb testing.TB) *Server {
	tb.Helper()
	srv, err := s.srv.StartReplica()
	if err != nil {
		tb.Fatalf("pgtest: replica: %v", err)
	}
	tb.Cleanup(srv.Remove)
	return &Server{tb: tb, srv: srv, url: srv.URL("tokka")}
}

// WaitForReplay waits (up to a minute) until replica has replayed
// everything s had committed when it was called; it fails the test
// otherwise.
func (s *Server) WaitForReplay(tb testing.TB, replica *Server) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := pgserver.WaitForReplay(ctx, s.srv.URL("postgres"), replica.srv.URL("postgres")); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
}
