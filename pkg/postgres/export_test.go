package postgres

import "github.com/jmoiron/sqlx"

// Pool exposes d's connection pool to tests that must act on the very
// connections the storage methods use (session poisoning).
func (d *DB) Pool() *sqlx.DB { return d.db }
