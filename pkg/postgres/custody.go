package postgres

import (
	"context"
	"errors"

	"github.com/jmoiron/sqlx"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// ListSealedKeys returns up to n connections with an id above after ("" for
// the start), in id order, as the syncer. Paging by id makes a rewrap pass
// resumable and lets it run while rows are added or deleted. Compromised
// connections are left out: their keys are never opened again, not even to
// re-seal them. It fails only when the database does.
func (d *DB) ListSealedKeys(ctx context.Context, after string, n int) ([]tokka.SealedKey, error) {
	out := []tokka.SealedKey{}
	err := d.asSyncer(ctx, func(tx *sqlx.Tx) error {
		return domainError(tx.SelectContext(ctx, &out, `
			SELECT id, team_id, provider, status, sealed_key FROM tokka.connections
			WHERE ($1 = '' OR id > nullif($1, '')::uuid) AND status <> 'compromised'
			ORDER BY id LIMIT $2`, after, n), "sealed keys")
	})
	return out, err
}

// RewrapKey replaces k's blob with the one reseal returns, as a
// compare-and-swap on the old blob, and records ev (key.rewrapped) in the
// same transaction. Order inside the transaction: lock the row and check the
// blob is still k.Blob (else ErrBlobChanged, and reseal is never called, so
// nothing is decrypted); write ev; only then call reseal (which opens the key
// in memory and seals it again); then swap. The row lock keeps a concurrent
// key replacement waiting for the few milliseconds this takes, and the UPDATE
// still compares the old value, so a replaced key is never overwritten with a
// re-sealed old one; a connection quarantined meanwhile (compromised) is
// ErrBlobChanged too, and its key is not opened. A connection that was
// needs_reconnect becomes pending and due again: its key opens after all.
// reseal's error is returned as is and rolls everything back.
func (d *DB) RewrapKey(ctx context.Context, k tokka.SealedKey, ev tokka.AuditEvent, reseal func() (string, error)) error {
	return d.asSyncer(ctx, func(tx *sqlx.Tx) error {
		var same bool
		err := tx.GetContext(ctx, &same, `
			SELECT sealed_key = $2 AND status <> 'compromised' FROM tokka.connections
			WHERE id = $1 FOR UPDATE`, k.ConnectionID, k.Blob)
		if errors.Is(domainError(err, "connection"), tokka.ErrNotFound) || (err == nil && !same) {
			return tokka.ErrBlobChanged
		}
		if err != nil {
			return domainError(err, "connection")
		}
		ev.TeamID, ev.ConnectionID, ev.Provider = k.TeamID, &k.ConnectionID, string(k.Provider)
		if err := insertAudit(ctx, tx, ev); err != nil {
			return err
		}
		blob, err := reseal()
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `
			UPDATE tokka.connections SET
				sealed_key = $3,
				status = CASE WHEN status = 'needs_reconnect' THEN 'pending' ELSE status END,
				last_error = CASE WHEN status = 'needs_reconnect' THEN NULL ELSE last_error END,
				next_sync_at = CASE WHEN status = 'needs_reconnect' THEN now() ELSE next_sync_at END,
				updated_at = now()
			WHERE id = $1 AND sealed_key = $2`, k.ConnectionID, k.Blob, blob)
		if err != nil {
			return domainError(err, "rewrap")
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return tokka.ErrBlobChanged
		}
		return nil
	})
}

// MarkUnopenable puts k's connection in needs_reconnect with a user-facing
// reason and records ev, in one transaction, unless its blob changed
// meanwhile (ErrBlobChanged: the new blob deserves its own chance).
func (d *DB) MarkUnopenable(ctx context.Context, k tokka.SealedKey, reason string, ev tokka.AuditEvent) error {
	return d.asSyncer(ctx, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, `
			UPDATE tokka.connections SET status = 'needs_reconnect', last_error = $3, updated_at = now()
			WHERE id = $1 AND sealed_key = $2 AND status <> 'compromised'`, k.ConnectionID, k.Blob, reason)
		if err != nil {
			return domainError(err, "mark unopenable")
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return tokka.ErrBlobChanged
		}
		ev.TeamID, ev.ConnectionID, ev.Provider = k.TeamID, &k.ConnectionID, string(k.Provider)
		return insertAudit(ctx, tx, ev)
	})
}

// RemindKeyRotations raises, as the syncer, one key_rotation alert for every
// connection whose key was set more than days ago, and returns how many were
// new. The dedup key holds the connection id and key_set_at, so a key is
// reminded about once, and a replaced key (new key_set_at) starts afresh. It
// fails only when the database does.
func (d *DB) RemindKeyRotations(ctx context.Context, days int) (int, error) {
	var n int64
	err := d.asSyncer(ctx, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, `
			INSERT INTO tokka.alerts (team_id, kind, severity, connection_id, dedup_key, title, detail)
			SELECT team_id, 'key_rotation', 'info', id,
				'key_rotation:' || id || ':' || to_char(key_set_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
				'The key of "' || label || '" is more than ' || $1::int || ' days old: rotate it',
				jsonb_build_object(
					'key_hint', key_hint,
					'key_set_at', to_char(key_set_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
					'age_days', floor(extract(epoch FROM now() - key_set_at) / 86400)::int,
					'reminder_days', $1::int)
			FROM tokka.connections
			WHERE key_set_at < now() - make_interval(days => $1::int)
			ON CONFLICT (team_id, dedup_key) DO NOTHING`, days)
		if err != nil {
			return domainError(err, "key rotation reminders")
		}
		n, _ = res.RowsAffected()
		return nil
	})
	return int(n), err
}
