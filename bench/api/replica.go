package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tokka-dev/tokka/bench/benchdb"
	"github.com/tokka-dev/tokka/pkg/pgserver"
)

// servers are the PostgreSQL servers of a run.
type servers struct {
	// bench is where the bench database is made: TOKKA_BENCH_DATABASE_URL's
	// server, or with -replica a private primary.
	bench *benchdb.Server
	// replicaURL, with -replica or -replica-url, is a streaming replica of
	// bench's server, as a user who may read its statistics, on a database
	// other than the bench's.
	replicaURL string
	// where says which replica it is, for the report.
	where string
	// private are the servers the run started, replica first.
	private []*pgserver.Server
}

// openServers connects to the bench server. With -replica it first starts
// a private primary and a streaming replica of it, and the primary is the
// bench server: the bench database is created after the replica started,
// so the replica receives it, its migration and its seeding by streaming.
// A replica of TOKKA_BENCH_DATABASE_URL's server itself would need
// replication allowed in its pg_hba.conf, and pg_basebackup would copy
// every database on it (bench/usage keeps one of gigabytes).
func openServers(ctx context.Context, cfg config) (*servers, error) {
	if !cfg.replica {
		pg, err := benchdb.Connect(ctx)
		if err != nil {
			return nil, err
		}
		s := &servers{bench: pg, replicaURL: cfg.replicaURL}
		if cfg.replicaURL != "" {
			u, _ := url.Parse(cfg.replicaURL)
			s.where = "-replica-url: the replica at " + u.Host
		}
		return s, nil
	}
	fmt.Fprintln(os.Stderr, "starting a private primary and a streaming replica of it…")
	s := &servers{}
	primary, err := pgserver.Start()
	if err != nil {
		return nil, fmt.Errorf("-replica: %w", err)
	}
	s.private = append(s.private, primary)
	replica, err := primary.StartReplica()
	if err != nil {
		s.close()
		return nil, fmt.Errorf("-replica: %w", err)
	}
	s.private = append([]*pgserver.Server{replica}, s.private...)
	if s.bench, err = benchdb.ConnectTo(ctx, primary.URL("postgres")); err != nil {
		s.close()
		return nil, err
	}
	s.replicaURL = replica.URL("postgres")
	s.where = fmt.Sprintf("-replica: a private primary on %s, and its replica on %s made by pg_basebackup", primary.Addr(), replica.Addr())
	return s, nil
}

// close disconnects from the bench server and removes the private servers.
func (s *servers) close() {
	if s.bench != nil {
		_ = s.bench.Close()
	}
	for _, p := range s.private {
		p.Remove()
	}
}

// compareReplica waits until the replica has replayed the seeded bench
// database, restarts the api with DATABASE_READ_URL on it, loads each
// endpoint that reads the database again, and prints them beside the same
// endpoints on the primary alone (results).
func (h *harness) compareReplica(ctx context.Context, out io.Writer, srv *servers, results []result, failed *failures) error {
	onReplica := withDatabase(srv.replicaURL, database)
	fmt.Fprintln(os.Stderr, "waiting for the replica to replay the bench database…")
	wait, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := pgserver.WaitForReplay(wait, h.dbURL, onReplica); err != nil {
		return fmt.Errorf("replica: %w", err)
	}
	stat, err := openStatistics(ctx, srv)
	if err != nil {
		return err
	}
	defer stat.close()
	before, err := stat.read(ctx)
	if err != nil {
		return err
	}
	api, addr, err := h.startAPI(ctx, h.dbURL, "DATABASE_READ_URL="+withUser(onReplica, "tokka_api"))
	if err != nil {
		return err
	}
	var rows []replicaRow
	for _, r := range results {
		if r.ep.script == nil {
			continue // it runs no SQL
		}
		fmt.Fprintf(os.Stderr, "measuring %s with the replica…\n", r.ep.name)
		rows = append(rows, replicaRow{ep: r.ep, primary: r.api, replica: h.loadEndpoint(ctx, addr, r.ep)})
		if ctx.Err() != nil {
			break
		}
	}
	api.stop()
	if err := ctx.Err(); err != nil {
		return err
	}
	after, err := stat.read(ctx)
	if err != nil {
		return err
	}
	reportReplica(out, rows, after.minus(before), srv.where, h.cfg, failed)
	return nil
}

// transactions is how many transactions the bench database has committed
// or rolled back on each server.
type transactions struct{ primary, replica int64 }

func (t transactions) minus(u transactions) transactions {
	return transactions{primary: t.primary - u.primary, replica: t.replica - u.replica}
}

// statistics reads pg_stat_database on both servers, from databases other
// than the bench's, so that reading counts no transaction there.
type statistics struct {
	primary, replica *sqlx.DB
}

func openStatistics(ctx context.Context, srv *servers) (*statistics, error) {
	replica, err := sqlx.Open("postgres", srv.replicaURL)
	if err != nil {
		return nil, err
	}
	if err := replica.PingContext(ctx); err != nil {
		_ = replica.Close()
		return nil, fmt.Errorf("replica: %w", err)
	}
	return &statistics{primary: srv.bench.Admin, replica: replica}, nil
}

func (s *statistics) close() { _ = s.replica.Close() }

// read returns the transactions so far, once the api's sessions on the
// bench database have ended (up to 30 seconds): a session reports its
// statistics when it ends, at the latest.
func (s *statistics) read(ctx context.Context) (transactions, error) {
	var t transactions
	for _, side := range []struct {
		db *sqlx.DB
		n  *int64
	}{{s.primary, &t.primary}, {s.replica, &t.replica}} {
		if err := waitForSessions(ctx, side.db); err != nil {
			return t, err
		}
		if err := side.db.GetContext(ctx, side.n, `SELECT coalesce(sum(xact_commit + xact_rollback), 0)
			FROM pg_stat_database WHERE datname = $1`, database); err != nil {
			return t, fmt.Errorf("pg_stat_database: %w", err)
		}
	}
	return t, nil
}

// waitForSessions waits until db's server has no session of tokka_api on
// the bench database.
func waitForSessions(ctx context.Context, db *sqlx.DB) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		if err := db.GetContext(ctx, &n, `SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND usename = 'tokka_api'`,
			database); err != nil {
			return fmt.Errorf("pg_stat_activity: %w", err)
		}
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("the api's sessions did not end within 30s")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
