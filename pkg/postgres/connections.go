package postgres

import (
	"context"
	"database/sql"
	"errors"
	"strings"

	"github.com/jmoiron/sqlx"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// connectionColumns is every column the api may read. sealed_key is not
// among them, and role authenticated has no SELECT grant on it anyway.
const connectionColumns = `id, provider, label, key_hint, key_set_at, status, last_error, directory_unavailable,
	last_synced_at, next_sync_at, created_at, updated_at`

// CreateConnection stores a new connection for u and its key.created audit
// event in one transaction. A key u has already connected (the same
// fingerprint) is a CodeConflict error whose ConnectionID is the connection
// that holds it, and nothing is stored; a duplicate id is a CodeConflict
// error too.
func (d *DB) CreateConnection(ctx context.Context, u tokka.User, nc tokka.NewConnection, ev tokka.AuditEvent) (tokka.Connection, error) {
	var c tokka.Connection
	err := d.asUser(ctx, u, func(tx *sqlx.Tx) error {
		// The unique index on (team_id, key_fingerprint) decides, so two
		// requests racing with one key cannot both get in.
		err := tx.GetContext(ctx, &c, `
			INSERT INTO tokka.connections (id, team_id, provider, label, key_hint, sealed_key, key_fingerprint)
			VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (team_id, key_fingerprint) DO NOTHING
			RETURNING `+connectionColumns,
			nc.ID, u.TeamID(), nc.Provider, nc.Label, nc.KeyHint, nc.SealedKey, nc.KeyFingerprint)
		if errors.Is(err, sql.ErrNoRows) {
			return keyHeldBy(ctx, tx, u.TeamID(), nc.KeyFingerprint, "")
		}
		if err != nil {
			return domainError(err, "connection")
		}
		ev.TeamID = u.TeamID()
		ev.ConnectionID = &c.ID
		if err := notifySyncers(ctx, tx, c.ID); err != nil {
			return err
		}
		return insertAudit(ctx, tx, ev)
	})
	return c, err
}

// keyHeldBy returns the CodeConflict error for a key the caller already
// has in another connection than except, naming that connection, or nil
// when none of their connections holds fingerprint.
func keyHeldBy(ctx context.Context, tx *sqlx.Tx, team string, fingerprint []byte, except string) error {
	if len(fingerprint) == 0 {
		return nil
	}
	var id string
	err := tx.GetContext(ctx, &id, `
		SELECT id FROM tokka.connections
		WHERE team_id = $3 AND key_fingerprint = $1 AND ($2 = '' OR id <> nullif($2, '')::uuid)`,
		fingerprint, except, team)
	if errors.Is(err, sql.ErrNoRows) {
		if except == "" {
			// It was deleted between the two statements: the caller may retry.
			return tokka.Errorf(tokka.CodeConflict, "this key was being connected by another request; try again")
		}
		return nil
	}
	if err != nil {
		return domainError(err, "connection")
	}
	return &tokka.Error{Code: tokka.CodeConflict, ConnectionID: id,
		Message: "this key is already connected as connection " + id + "; replace or delete that connection instead of adding it again"}
}

// inTeam returns tokka.ErrNotFound unless the row of table with id is
// team's (and visible to the caller), locking it for the transaction.
func inTeam(ctx context.Context, tx *sqlx.Tx, table, id, team string) error {
	var one int
	err := tx.GetContext(ctx, &one, `SELECT 1 FROM tokka.`+table+` WHERE id = $1 AND team_id = $2 FOR UPDATE`, id, team)
	return domainError(err, strings.TrimSuffix(table, "s"))
}

// notifySyncers wakes listening syncers (delivered at commit, so only for a
// change that landed) to sync connection id now.
func notifySyncers(ctx context.Context, tx *sqlx.Tx, id string) error {
	_, err := tx.ExecContext(ctx, `SELECT pg_notify($1, $2)`, SyncChannel, id)
	return domainError(err, "notify syncers")
}

// GetConnection returns one of u's connections, or tokka.ErrNotFound when it
// does not exist or belongs to someone else (indistinguishable on purpose).
func (d *DB) GetConnection(ctx context.Context, u tokka.User, id string) (tokka.Connection, error) {
	var c tokka.Connection
	err := d.asReader(ctx, u, func(tx *sqlx.Tx) error {
		return domainError(tx.GetContext(ctx, &c,
			`SELECT `+connectionColumns+` FROM tokka.connections WHERE id = $1 AND team_id = $2`, id, u.TeamID()), "connection")
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
			`DELETE FROM tokka.connections WHERE id = $1 AND team_id = $2 RETURNING provider`, id, u.TeamID())
		if err != nil {
			return domainError(err, "connection")
		}
		ev.TeamID = u.TeamID()
		ev.ConnectionID = &id
		ev.Provider = provider
		return insertAudit(ctx, tx, ev)
	})
}

// UpdateConnection renames one of u's connections and/or replaces its key,
// and records ev in the same transaction (its provider is filled in here).
// Replacing the key also resets what the old key decided: key_set_at becomes
// now, status goes back to pending with no error, the connection is due at
// once (backfilled_at is kept, so the next sync re-reads the trailing window
// rather than the whole history), and u's open key_rotation alerts for it are
// acknowledged, since they were about the old key. The api's role may not
// set those columns itself: the replacement is the database function
// tokka.replace_connection_key (migration 00011). A syncer that leased the
// connection before the change sees key_set_at move and never opens the old
// blob again (see holdLease); a connection that was duplicate becomes
// pending, and the syncer learns the new key's organisation afresh. A new
// key that another of u's connections holds is a CodeConflict error whose
// ConnectionID is that connection, and nothing changes. It returns
// tokka.ErrNotFound when there is no such connection for u.
func (d *DB) UpdateConnection(ctx context.Context, u tokka.User, id string, up tokka.ConnectionUpdate, ev tokka.AuditEvent) (tokka.Connection, error) {
	var c tokka.Connection
	err := d.asUser(ctx, u, func(tx *sqlx.Tx) error {
		if up.SealedKey != "" {
			// The new blob is bound to the request's team, so the
			// connection must be that team's.
			if err := inTeam(ctx, tx, "connections", id, u.TeamID()); err != nil {
				return err
			}
			if err := keyHeldBy(ctx, tx, u.TeamID(), up.KeyFingerprint, id); err != nil {
				return err
			}
			var found bool
			if err := tx.GetContext(ctx, &found, `SELECT tokka.replace_connection_key($1, $2, $3, $4)`,
				id, up.Label, up.KeyHint, up.SealedKey); err != nil {
				return domainError(err, "connection")
			}
			if !found {
				return tokka.ErrNotFound
			}
			_, err := tx.ExecContext(ctx, `UPDATE tokka.connections SET key_fingerprint = $2 WHERE id = $1`,
				id, up.KeyFingerprint)
			if isUniqueViolation(err) {
				// Another request gave the same key to another connection
				// between the check and the update.
				return tokka.Errorf(tokka.CodeConflict, "another of your connections holds this key")
			}
			if err != nil {
				return domainError(err, "connection")
			}
			if _, err := tx.ExecContext(ctx, `
				UPDATE tokka.alerts SET acknowledged_at = now()
				WHERE connection_id = $1 AND kind = 'key_rotation' AND acknowledged_at IS NULL`, id); err != nil {
				return domainError(err, "alerts")
			}
			if err := notifySyncers(ctx, tx, id); err != nil {
				return err
			}
			if err := tx.GetContext(ctx, &c, `SELECT `+connectionColumns+` FROM tokka.connections WHERE id = $1`, id); err != nil {
				return domainError(err, "connection")
			}
		} else if err := tx.GetContext(ctx, &c, `
			UPDATE tokka.connections SET label = coalesce($2, label), updated_at = now()
			WHERE id = $1 AND team_id = $3 RETURNING `+connectionColumns, id, up.Label, u.TeamID()); err != nil {
			return domainError(err, "connection")
		}
		ev.TeamID = u.TeamID()
		ev.ConnectionID = &c.ID
		ev.Provider = string(c.Provider)
		return insertAudit(ctx, tx, ev)
	})
	return c, err
}
