package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// SyncChannel is the Postgres NOTIFY channel on which the api tells syncers
// that a connection wants syncing now (payload: the connection id).
const SyncChannel = "tokka_sync"

// SyncRequestSpike is how many "sync now" requests by one user within an
// hour raise a key_access alert: far more than a person clicking, and the
// pattern of someone using the syncer to test whether keys still work.
const SyncRequestSpike = 20

// flagSyncRequestSpike raises one alert per user and hour once the user's
// sync requests in the last hour reach SyncRequestSpike. It is the one alert
// the api raises, and the only kind its role may insert (a key_access alert
// whose dedup key starts "sync-request-spike:", for its own user; migration
// 00011).
func flagSyncRequestSpike(ctx context.Context, tx *sqlx.Tx, userID string) error {
	var n int
	var hour string
	if err := tx.GetContext(ctx, &n, `
		SELECT count(*) FROM tokka.audit_events
		WHERE team_id = $1 AND action = 'sync.requested' AND created_at > now() - interval '1 hour'`, userID); err != nil {
		return domainError(err, "sync request spike")
	}
	if n < SyncRequestSpike {
		return nil
	}
	if err := tx.GetContext(ctx, &hour, `SELECT to_char(date_trunc('hour', now()), 'YYYY-MM-DD"T"HH24')`); err != nil {
		return domainError(err, "sync request spike")
	}
	_, err := insertAlert(ctx, tx, tokka.Alert{
		TeamID: userID, Kind: tokka.AlertKeyAccess, Severity: "warning",
		DedupKey: "sync-request-spike:" + hour,
		Title:    "Unusually many \"sync now\" requests in the last hour",
		Detail:   []byte(fmt.Sprintf(`{"requests_last_hour":%d,"threshold":%d}`, n, SyncRequestSpike)),
	})
	return err
}

// refusedSync is the CodeConflict for "sync now" on a connection whose status
// a sync cannot help, saying what the user can do instead.
func refusedSync(status tokka.ConnectionStatus) error {
	switch status {
	case tokka.StatusInvalid, tokka.StatusNeedsReconnect:
		return tokka.Errorf(tokka.CodeConflict, "this connection's key was rejected or cannot be opened; replace the key first")
	case tokka.StatusDuplicate:
		return tokka.Errorf(tokka.CodeConflict, "this connection's organisation is already covered by another of your connections (see its last_error); replace this connection's key with one of another organisation, or delete it")
	case tokka.StatusCompromised:
		return tokka.Errorf(tokka.CodeConflict, "this connection's key may have been exposed and is no longer used; revoke it at the provider and paste a new one")
	}
	return tokka.Errorf(tokka.CodeConflict, "this connection cannot be synced in its current state")
}

// RequestSync marks one of u's connections for a sync as soon as a syncer is
// free and wakes listening syncers. It allows one request per connection per
// minInterval (1s to a year): an earlier one returns a CodeRateLimited error
// and how long to wait. A connection whose key was rejected (invalid,
// needs_reconnect), quarantined (compromised) or found to duplicate another
// (duplicate) is a CodeConflict: asking again cannot help, and must not
// become a way to test whether a key has started working. ev
// (sync.requested) is recorded. The checks and the change are the database
// function tokka.request_sync (migration 00011): the api's role may not set
// the sync columns itself.
func (d *DB) RequestSync(ctx context.Context, u tokka.User, id string, minInterval time.Duration, ev tokka.AuditEvent) (tokka.Connection, time.Duration, error) {
	var c tokka.Connection
	var wait time.Duration
	err := d.asUser(ctx, u, func(tx *sqlx.Tx) error {
		var r struct {
			Outcome  string                  `db:"outcome"`
			Status   *tokka.ConnectionStatus `db:"status"`
			WaitSecs *float64                `db:"wait_seconds"`
		}
		if err := inTeam(ctx, tx, "connections", id, u.TeamID()); err != nil {
			return err
		}
		if err := tx.GetContext(ctx, &r, `SELECT outcome, status, wait_seconds FROM tokka.request_sync($1, $2)`,
			id, minInterval.Seconds()); err != nil {
			return domainError(err, "connection")
		}
		switch r.Outcome {
		case "requested":
		case "not_found":
			return tokka.ErrNotFound
		case "refused":
			var status tokka.ConnectionStatus
			if r.Status != nil {
				status = *r.Status
			}
			return refusedSync(status)
		case "too_soon":
			if r.WaitSecs != nil {
				wait = time.Duration(*r.WaitSecs * float64(time.Second))
			}
			return &tokka.Error{Code: tokka.CodeRateLimited, Message: "a sync of this connection was requested recently; try again later"}
		default:
			return fmt.Errorf("postgres: request sync: unexpected outcome %q", r.Outcome)
		}
		if err := tx.GetContext(ctx, &c, `SELECT `+connectionColumns+` FROM tokka.connections WHERE id = $1`, id); err != nil {
			return domainError(err, "connection")
		}
		if err := notifySyncers(ctx, tx, id); err != nil {
			return err
		}
		ev.TeamID, ev.ConnectionID, ev.Provider = u.TeamID(), &id, string(c.Provider)
		if err := insertAudit(ctx, tx, ev); err != nil {
			return err
		}
		return flagSyncRequestSpike(ctx, tx, u.TeamID())
	})
	return c, wait, err
}
