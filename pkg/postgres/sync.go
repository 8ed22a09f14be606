package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// LeaseDue leases up to n connections that are due: never synced, asked for
// by their user, or whose next_sync_at has passed, and not leased by a live
// syncer. FOR UPDATE SKIP LOCKED lets several syncers lease at once without
// ever taking the same connection.
func (d *DB) LeaseDue(ctx context.Context, owner string, n int, leaseFor time.Duration) ([]tokka.Lease, error) {
	leases := []tokka.Lease{}
	err := d.asSyncer(ctx, func(tx *sqlx.Tx) error {
		// Consecutive failures are counted from the audit log (sync.failed
		// since the last sync.succeeded, key.created or key.replaced), and
		// only for connections whose last sync failed (status error).
		return domainError(tx.SelectContext(ctx, &leases, `
			UPDATE tokka.connections c
			SET lease_owner = $1 || '/' || gen_random_uuid(), lease_expires_at = now() + make_interval(secs => $3)
			FROM (
				SELECT id, lease_owner IS NOT NULL AS takeover FROM tokka.connections
				WHERE status NOT IN ('invalid', 'needs_reconnect', 'compromised', 'duplicate')
				  AND (next_sync_at <= now() OR sync_requested_at IS NOT NULL)
				  AND (lease_expires_at IS NULL OR lease_expires_at < now())
				ORDER BY sync_requested_at NULLS LAST, next_sync_at
				LIMIT $2
				FOR UPDATE SKIP LOCKED
			) due
			WHERE c.id = due.id
			RETURNING c.id, c.team_id, c.provider, c.sealed_key, c.key_set_at, c.backfilled_at,
				c.sync_requested_at IS NOT NULL AS requested, c.lease_owner, c.lease_expires_at, due.takeover,
				coalesce(c.organization_checked_at >= c.key_set_at, false) AS organization_known,
				c.key_hint = '' AS key_unchecked,
				CASE WHEN c.status = 'error' THEN (
					SELECT count(*) FROM tokka.audit_events e
					WHERE e.team_id = c.team_id AND e.connection_id = c.id AND e.action = 'sync.failed'
					  AND e.id > coalesce((
						SELECT max(s.id) FROM tokka.audit_events s
						WHERE s.team_id = c.team_id AND s.connection_id = c.id
						  AND s.action IN ('sync.succeeded', 'key.created', 'key.replaced')), 0)
				) ELSE 0 END AS failures`,
			owner, n, leaseFor.Seconds()), "lease")
	})
	return leases, err
}

// RenewLease extends a held lease by leaseFor from now, so a sync that
// takes longer than one lease keeps it. A lease that ran out while its
// syncer was stalled is renewed too as long as nobody took the connection
// since: the owner token is made afresh for every lease, so while the row
// still names it no other syncer can be running this connection (a takeover
// or a release replaces it, under the same row lock this UPDATE takes). It
// returns ErrLeaseLost when l.Owner no longer holds the lease (the sync
// must stop).
func (d *DB) RenewLease(ctx context.Context, l tokka.Lease, leaseFor time.Duration) error {
	return d.asSyncer(ctx, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, `
			UPDATE tokka.connections SET lease_expires_at = now() + make_interval(secs => $3)
			WHERE id = $1 AND lease_owner = $2`,
			l.ConnectionID, l.Owner, leaseFor.Seconds())
		if err != nil {
			return domainError(err, "renew lease")
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return tokka.ErrLeaseLost
		}
		return nil
	})
}

// CountDue counts the connections that are due now (for the due gauge).
func (d *DB) CountDue(ctx context.Context) (int, error) {
	var n int
	err := d.asSyncer(ctx, func(tx *sqlx.Tx) error {
		return domainError(tx.GetContext(ctx, &n, `
			SELECT count(*) FROM tokka.connections
			WHERE status NOT IN ('invalid', 'needs_reconnect', 'compromised', 'duplicate')
			  AND (next_sync_at <= now() OR sync_requested_at IS NOT NULL)`), "count due")
	})
	return n, err
}

// holdLease locks the leased row for the rest of tx and fails with
// ErrLeaseLost unless l.Owner still holds an unexpired lease on it, with
// ErrKeyChanged when the user replaced the key since, and with ErrDuplicate
// when the connection was marked duplicate since. Only a replacement moves
// key_set_at; a rewrap re-seals the same key and leaves it alone, so a
// rewrap running beside a sync does not cost that sync its results.
func holdLease(ctx context.Context, tx *sqlx.Tx, l tokka.Lease) error {
	return lockLease(ctx, tx, l, true)
}

// lockLease is holdLease; unless live, a lease that has expired still
// counts as long as nobody has taken the connection since (lease_owner
// still names this very lease).
func lockLease(ctx context.Context, tx *sqlx.Tx, l tokka.Lease, live bool) error {
	var row struct {
		SameKey bool                   `db:"same_key"`
		Status  tokka.ConnectionStatus `db:"status"`
	}
	err := tx.GetContext(ctx, &row, `
		SELECT key_set_at = $3 AS same_key, status FROM tokka.connections
		WHERE id = $1 AND lease_owner = $2 AND (lease_expires_at > now() OR NOT $4)
		FOR UPDATE`, l.ConnectionID, l.Owner, l.KeySetAt, live)
	if err != nil {
		if errors.Is(domainError(err, "lease"), tokka.ErrNotFound) {
			return tokka.ErrLeaseLost
		}
		return domainError(err, "lease")
	}
	switch {
	case !row.SameKey:
		return tokka.ErrKeyChanged
	case row.Status == tokka.StatusDuplicate:
		return tokka.ErrDuplicate
	}
	return nil
}

// RecordKeyUse writes ev (key.decrypted) only while l is still held. The
// syncer calls it before it opens the blob: if this write fails, the key is
// not used (fail closed), and a deleted connection is never decrypted again.
func (d *DB) RecordKeyUse(ctx context.Context, l tokka.Lease, ev tokka.AuditEvent) error {
	return d.asSyncer(ctx, func(tx *sqlx.Tx) error {
		if err := holdLease(ctx, tx, l); err != nil {
			return err
		}
		ev.TeamID, ev.ConnectionID, ev.Provider = l.TeamID, &l.ConnectionID, string(l.Provider)
		return insertAudit(ctx, tx, ev)
	})
}

// CompleteSync replaces the window's usage and cost rows for the leased
// connection, stores the organisation's directory (r.Directory, when read),
// raises r.Alerts (and a key_access alert for each new admin key), marks it
// active, releases the lease and records the outcome,
// all in one transaction, so a crash leaves either the old rows or the new
// ones and re-syncs never double. It fails with ErrLeaseLost (writing
// nothing) when the lease is no longer held.
func (d *DB) CompleteSync(ctx context.Context, l tokka.Lease, r tokka.SyncResult) error {
	if err := withinWindow(r); err != nil {
		return err
	}
	return d.asSyncer(ctx, func(tx *sqlx.Tx) error {
		if err := holdLease(ctx, tx, l); err != nil {
			return err
		}
		months := touchedMonths(r.Window)
		if err := replaceWindow(ctx, tx, l, r, months); err != nil {
			return err
		}
		if err := refreshRollups(ctx, tx, l.ConnectionID, r.Window, months); err != nil {
			return err
		}
		if err := writeDirectory(ctx, tx, l, r.Directory); err != nil {
			return err
		}
		for _, a := range r.Alerts {
			a.TeamID, a.ConnectionID = l.TeamID, &l.ConnectionID
			if _, err := insertAlert(ctx, tx, a); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `
			UPDATE tokka.connections SET
				status = 'active', last_error = NULL, last_synced_at = now(),
				backfilled_at = CASE WHEN $2 THEN now() ELSE backfilled_at END,
				next_sync_at = $3, sync_requested_at = NULL,
				lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
			WHERE id = $1`, l.ConnectionID, r.Backfill, r.Next); err != nil {
			return domainError(err, "complete sync")
		}
		ev := r.Event
		ev.TeamID, ev.ConnectionID, ev.Provider = l.TeamID, &l.ConnectionID, string(l.Provider)
		return insertAudit(ctx, tx, ev)
	})
}

// withinWindow refuses results with a row dated outside their window: the
// replace deletes the window's days only, so such a row would be counted
// again by the next sync, and the daily spend totals are rebuilt for the
// window's days only. (The provider client already refuses such buckets.)
func withinWindow(r tokka.SyncResult) error {
	for i := range r.Usage {
		if !r.Window.Contains(r.Usage[i].Day) {
			return fmt.Errorf("postgres: a usage row of %s is outside the sync window", day(r.Usage[i].Day))
		}
	}
	for i := range r.Costs {
		if !r.Window.Contains(r.Costs[i].Day) {
			return fmt.Errorf("postgres: a cost row of %s is outside the sync window", day(r.Costs[i].Day))
		}
	}
	return nil
}

// FailSync records a failed sync: the connection gets status and a
// user-facing reason, the lease is released, and ev (sync.failed) is written.
// It works on a lease that expired meanwhile (the database was away) as long
// as nobody has leased the connection since; otherwise it is ErrLeaseLost and
// changes nothing (ErrKeyChanged when the user replaced the key).
func (d *DB) FailSync(ctx context.Context, l tokka.Lease, status tokka.ConnectionStatus, reason string, next time.Time, ev tokka.AuditEvent) error {
	return d.asSyncer(ctx, func(tx *sqlx.Tx) error {
		if err := lockLease(ctx, tx, l, false); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `
			UPDATE tokka.connections SET
				status = $2, last_error = $3, next_sync_at = $4, sync_requested_at = NULL,
				lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
			WHERE id = $1`, l.ConnectionID, status, reason, next); err != nil {
			return domainError(err, "fail sync")
		}
		ev.TeamID, ev.ConnectionID, ev.Provider = l.TeamID, &l.ConnectionID, string(l.Provider)
		return insertAudit(ctx, tx, ev)
	})
}

// rollupInserts returns the statements that rebuild the monthly rollups
// from the daily rows that match where.
func rollupInserts(where string) []string {
	return []string{
		`INSERT INTO tokka.usage_monthly
			SELECT connection_id, team_id, provider, date_trunc('month', day)::date, max(day), model, project_id,
				api_key_id, service_tier, sum(input_uncached_tokens), sum(cache_read_tokens),
				sum(cache_write_5m_tokens), sum(cache_write_1h_tokens), sum(output_tokens), sum(requests)
			FROM tokka.usage_daily WHERE ` + where + `
			GROUP BY connection_id, team_id, provider, date_trunc('month', day), model, project_id, api_key_id, service_tier`,
		`INSERT INTO tokka.cost_monthly
			SELECT connection_id, team_id, provider, date_trunc('month', day)::date, max(day), model, project_id,
				api_key_id, sum(amount_usd)
			FROM tokka.cost_daily WHERE ` + where + `
			GROUP BY connection_id, team_id, provider, date_trunc('month', day), model, project_id, api_key_id`,
		`INSERT INTO tokka.spend_daily
			SELECT connection_id, team_id, provider, day, sum(amount_usd)
			FROM tokka.cost_daily WHERE ` + where + `
			GROUP BY connection_id, team_id, provider, day`,
	}
}

// touchedMonths is the range of whole months the window touches, as the
// first day of its first month and the first day after its last month.
func touchedMonths(w tokka.Window) [2]string {
	first := time.Date(w.From.Year(), w.From.Month(), 1, 0, 0, 0, 0, time.UTC)
	last := w.To.AddDate(0, 0, -1)
	end := time.Date(last.Year(), last.Month(), 1, 0, 0, 0, 0, time.UTC).AddDate(0, 1, 0)
	return [2]string{day(first), day(end)}
}

// refreshRollups rebuilds the monthly rollups of the months the window
// touches and the daily spend totals of the window's own days (a day's
// total depends on that day's rows alone) from the daily rows, once per
// sync and in one statement, after replaceWindow has deleted the old ones
// (so nothing here can collide with them) in the caller's transaction.
func refreshRollups(ctx context.Context, tx *sqlx.Tx, connID string, w tokka.Window, months [2]string) error {
	_, err := tx.ExecContext(ctx, refreshSQL, connID, months[0], months[1], day(w.From), day(w.To))
	return domainError(err, "refresh rollups")
}

// refreshSQL is refreshRollups' statement: the months from $2 to $3, the
// days from $4 to $5.
var refreshSQL = func() string {
	months := rollupInserts(`connection_id = $1 AND day >= $2 AND day < $3`)
	days := rollupInserts(`connection_id = $1 AND day >= $4 AND day < $5`)
	return `WITH usage_months AS (` + months[0] + `), cost_months AS (` + months[1] + `) ` + days[2]
}()

// RebuildRollups recomputes every monthly rollup from the daily tables, for
// rows written by other means than a sync (an import, a benchmark's
// generator). It must run as the tables' owner.
func (d *DB) RebuildRollups(ctx context.Context) error {
	return d.inTx(ctx, d.db, false, func(tx *sqlx.Tx) error {
		for _, q := range append([]string{`DELETE FROM tokka.usage_monthly`, `DELETE FROM tokka.cost_monthly`,
			`DELETE FROM tokka.spend_daily`},
			rollupInserts("true")...) {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return domainError(err, "rebuild rollups")
			}
		}
		return nil
	})
}

// ReleaseLease gives a lease back without recording a result (shutdown).
func (d *DB) ReleaseLease(ctx context.Context, l tokka.Lease) error {
	return d.asSyncer(ctx, func(tx *sqlx.Tx) error {
		_, err := tx.ExecContext(ctx, `
			UPDATE tokka.connections SET lease_owner = NULL, lease_expires_at = NULL
			WHERE id = $1 AND lease_owner = $2`, l.ConnectionID, l.Owner)
		return domainError(err, "release lease")
	})
}
