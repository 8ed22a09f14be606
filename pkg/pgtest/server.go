package pgtest

import (
	"context"
	"fmt"
	"sync"
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

// StartServer starts a private PostgreSQL server for tb in a temporary
// directory, with a "tokka" database migrated as Main migrates; it is
// stopped and removed when the test ends. The first server of a test binary
// is initialised and migrated, stopped and kept as a template (see
// clusterTemplate); every server is a copy of it, so initdb and the
// migrations run once per binary, not once per server. It fails the test,
// never skips it, when the server binaries are missing (saying how to
// install them) or the server does not start. As root it runs the server as
// the postgres user (initdb and postgres refuse to run as root).
func StartServer(tb testing.TB) *Server {
	tb.Helper()
	dir, err := clusterTemplate()
	if err != nil {
		tb.Fatalf("pgtest: fault tests start their own PostgreSQL server: %v", err)
	}
	srv, err := pgserver.StartCopy(dir)
	if err != nil {
		tb.Fatalf("pgtest: private server: %v", err)
	}
	tb.Cleanup(srv.Remove)
	return &Server{tb: tb, srv: srv, url: srv.URL("tokka")}
}

// cluster is the stopped server every private server of this test binary
// is copied from: initialised, its "tokka" database migrated, and cleanly
// shut down.
var cluster struct {
	once sync.Once
	srv  *pgserver.Server
	err  error
}

// clusterTemplate returns the template's data directory, building it on
// the first call: a new server, CREATE DATABASE tokka, the migrations and a
// clean stop, so a copy starts without recovery.
func clusterTemplate() (string, error) {
	cluster.once.Do(func() {
		cluster.srv, cluster.err = buildCluster()
	})
	if cluster.err != nil {
		return "", cluster.err
	}
	return cluster.srv.DataDir(), nil
}

func buildCluster() (*pgserver.Server, error) {
	srv, err := pgserver.Start()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = func() error {
		admin, err := sqlx.Open("postgres", srv.URL("postgres"))
		if err != nil {
			return err
		}
		defer admin.Close()
		if _, err := admin.ExecContext(ctx, `CREATE DATABASE tokka`); err != nil {
			return fmt.Errorf("create database: %w", err)
		}
		if err := postgres.Migrate(ctx, srv.URL("tokka")); err != nil {
			return fmt.Errorf("migrate the private server: %w", err)
		}
		return nil
	}()
	if err == nil {
		err = srv.Stop()
	}
	if err != nil {
		srv.Remove()
		return nil, err
	}
	return srv, nil
}

// removeClusterTemplate removes the template, if one was built; Main calls
// it when the package's tests are done.
func removeClusterTemplate() {
	if cluster.srv != nil {
		cluster.srv.Remove()
	}
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
