package postgres

import (
	"context"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// SyncChannel is the Postgres NOTIFY channel on which the api tells syncers
// that a connection wants syncing now (payload: the connection id).
const SyncChannel = "tokka_sync"

// RequestSync marks one of u's connections for a sync as soon as a syncer is
// free and wakes listening syncers. It allows one request per connection per
// minInterval: an earlier one returns a CodeRateLimited error and how long to
// wait. A connection whose key was rejected (invalid, needs_reconnect) or
// quarantined (compromised) is a CodeConflict: asking again cannot help, and must not become a way to test
// whether a key has started working. ev (sync.requested) is recorded.
func (d *DB) RequestSync(ctx context.Context, u tokka.User, id string, minInterval time.Duration, ev tokka.AuditEvent) (tokka.Connection, time.Duration, error) {
	var c tokka.Connection
	var wait time.Duration
	err := d.asUser(ctx, u, func(tx *sqlx.Tx) error {
		var row struct {
			Status   string   `db:"status"`
			Provider string   `db:"provider"`
			WaitSecs *float64 `db:"wait"`
		}
		err := tx.GetContext(ctx, &row, `
			SELECT status, provider,
				extract(epoch FROM (last_sync_request_at + make_interval(secs => $2)) - now()) AS wait
			FROM tokka.connections WHERE id = $1 FOR UPDATE`, id, minInterval.Seconds())
		if err != nil {
			return domainError(err, "connection")
		}
		if row.Status == tokka.StatusInvalid || row.Status == tokka.StatusNeedsReconnect {
			return tokka.Errorf(tokka.CodeConflict, "this connection's key was rejected or cannot be opened; replace the key first")
		}
		if row.Status == tokka.StatusCompromised {
			return tokka.Errorf(tokka.CodeConflict, "this connection's key may have been exposed and is no longer used; revoke it at the provider and paste a new one")
		}
		if row.WaitSecs != nil && *row.WaitSecs > 0 {
			wait = time.Duration(*row.WaitSecs * float64(time.Second))
			return &tokka.Error{Code: tokka.CodeRateLimited, Message: "a sync of this connection was requested recently; try again later"}
		}
		if err := tx.GetContext(ctx, &c, `
			UPDATE tokka.connections
			SET sync_requested_at = coalesce(sync_requested_at, now()), last_sync_request_at = now()
			WHERE id = $1 RETURNING `+connectionColumns, id); err != nil {
			return domainError(err, "connection")
		}
		if err := notifySyncers(ctx, tx, id); err != nil {
			return err
		}
		ev.UserID, ev.ConnectionID, ev.Provider = u.ID, &id, row.Provider
		return insertAudit(ctx, tx, ev)
	})
	return c, wait, err
}
