package postgres

import (
	"context"

	"github.com/jmoiron/sqlx"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// connectionColumns is every column the api may read. sealed_key is not
// among them, and role authenticated has no SELECT grant on it anyway.
const connectionColumns = `id, provider, label, key_hint, key_set_at, status, last_error,
	last_synced_at, next_sync_at, created_at, updated_at`

// NewConnection is what the api stores when a user pastes a key: the blob is
// already sealed to the syncer's public key and bound to ID, UserID and Provider.
type NewConnection struct {
	ID        string
	Provider  string
	Label     string
	KeyHint   string
	SealedKey string
}

// CreateConnection stores a new connection for u and its key.created audit
// event in one transaction. A duplicate id is a CodeConflict error.
func (d *DB) CreateConnection(ctx context.Context, u tokka.User, nc NewConnection, ev tokka.AuditEvent) (tokka.Connection, error) {
	var c tokka.Connection
	err := d.asUser(ctx, u, func(tx *sqlx.Tx) error {
		err := tx.GetContext(ctx, &c, `
			INSERT INTO tokka.connections (id, user_id, provider, label, key_hint, sealed_key)
			VALUES ($1, $2, $3, $4, $5, $6)
			RETURNING `+connectionColumns,
			nc.ID, u.ID, nc.Provider, nc.Label, nc.KeyHint, nc.SealedKey)
		if err != nil {
			return domainError(err, "connection")
		}
		ev.UserID = u.ID
		ev.ConnectionID = &c.ID
		return insertAudit(ctx, tx, ev)
	})
	return c, err
}

// ListConnections returns u's connections, oldest first.
func (d *DB) ListConnections(ctx context.Context, u tokka.User) ([]tokka.Connection, error) {
	cs := []tokka.Connection{}
	err := d.asUser(ctx, u, func(tx *sqlx.Tx) error {
		return domainError(tx.SelectContext(ctx, &cs,
			`SELECT `+connectionColumns+` FROM tokka.connections ORDER BY created_at, id`), "connections")
	})
	return cs, err
}

// GetConnection returns one of u's connections, or tokka.ErrNotFound when it
// does not exist or belongs to someone else (indistinguishable on purpose).
func (d *DB) GetConnection(ctx context.Context, u tokka.User, id string) (tokka.Connection, error) {
	var c tokka.Connection
	err := d.asUser(ctx, u, func(tx *sqlx.Tx) error {
		return domainError(tx.GetContext(ctx, &c,
			`SELECT `+connectionColumns+` FROM tokka.connections WHERE id = $1`, id), "connection")
	})
	return c, err
}

// DeleteConnection destroys one of u's connections with its sealed key and
// its usage rows, and records ev (key.deleted) in the same transaction. It
// returns tokka.ErrNotFound when there is no such connection for u.
func (d *DB) DeleteConnection(ctx context.Context, u tokka.User, id string, ev tokka.AuditEvent) error {
	return d.asUser(ctx, u, func(tx *sqlx.Tx) error {
		var provider string
		err := tx.GetContext(ctx, &provider,
			`DELETE FROM tokka.connections WHERE id = $1 RETURNING provider`, id)
		if err != nil {
			return domainError(err, "connection")
		}
		ev.UserID = u.ID
		ev.ConnectionID = &id
		ev.Provider = provider
		return insertAudit(ctx, tx, ev)
	})
}
