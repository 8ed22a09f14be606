// Package benchdb is the database set-up the benchmarks under bench/ share:
// the server TOKKA_BENCH_DATABASE_URL names (default: the local one
// scripts/test starts) and migrated databases on it.
package benchdb

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq" // the Postgres driver

	"github.com/tokka-dev/tokka/pkg/postgres"
)

// EnvURL names the variable that points the benchmarks at a Postgres
// server where they may CREATE DATABASE.
const EnvURL = "TOKKA_BENCH_DATABASE_URL"

const defaultURL = "postgres://postgres:postgres@127.0.0.1:5432/postgres?sslmode=disable"

// Server is the benchmark server, through a connection to its base
// database (used only to create and drop databases).
type Server struct {
	// Admin is connected to the base database.
	Admin *sqlx.DB
	base  *url.URL
}

// Connect connects to the benchmark server; it fails, saying how to start
// one, when the server cannot be reached.
func Connect(ctx context.Context) (*Server, error) {
	base := os.Getenv(EnvURL)
	if base == "" {
		base = defaultURL
	}
	return ConnectTo(ctx, base)
}

// ConnectTo is Connect for the server at base (a URL whose database is
// used only to create and drop databases), in place of the one EnvURL
// names.
func ConnectTo(ctx context.Context, base string) (*Server, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", EnvURL, err)
	}
	admin, err := sqlx.Open("postgres", base)
	if err != nil {
		return nil, err
	}
	if err := admin.PingContext(ctx); err != nil {
		_ = admin.Close()
		return nil, fmt.Errorf("cannot reach PostgreSQL (start it with scripts/test or scripts/dev): %w", err)
	}
	return &Server{Admin: admin, base: u}, nil
}

// Close closes the admin connection.
func (s *Server) Close() error { return s.Admin.Close() }

// URL is the server's URL pointed at database name.
func (s *Server) URL(name string) string {
	u := *s.base
	u.Path = "/" + name
	return u.String()
}

// Fresh drops what an earlier run left of database name, creates it,
// migrates it and returns its URL and a function that drops it. On error
// nothing is left behind.
func (s *Server) Fresh(ctx context.Context, name string) (string, func(), error) {
	if _, err := s.Admin.ExecContext(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil {
		return "", nil, fmt.Errorf("drop database %s: %w", name, err)
	}
	if _, err := s.Admin.ExecContext(ctx, `CREATE DATABASE `+name); err != nil {
		return "", nil, fmt.Errorf("create database %s: %w", name, err)
	}
	drop := func() { s.Drop(name) }
	dbURL := s.URL(name)
	if err := postgres.Migrate(ctx, dbURL); err != nil {
		drop()
		return "", nil, err
	}
	return dbURL, drop, nil
}

// Kept is Fresh for a database that is kept between runs: it creates name
// only when it is missing (existed says whether it was there) and brings it
// up to the current schema either way, applying migrations that landed
// below its version too (postgres.MigrateAllowingGaps).
func (s *Server) Kept(ctx context.Context, name string) (dbURL string, existed bool, err error) {
	if err := s.Admin.GetContext(ctx, &existed, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name); err != nil {
		return "", false, err
	}
	if !existed {
		if _, err := s.Admin.ExecContext(ctx, `CREATE DATABASE `+name); err != nil {
			return "", false, fmt.Errorf("create database %s: %w", name, err)
		}
	}
	dbURL = s.URL(name)
	if err := postgres.MigrateAllowingGaps(ctx, dbURL); err != nil {
		return "", existed, err
	}
	return dbURL, existed, nil
}

// Drop drops database name, closing its sessions; errors are ignored (it
// runs on the way out).
func (s *Server) Drop(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _ = s.Admin.ExecContext(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`)
}
