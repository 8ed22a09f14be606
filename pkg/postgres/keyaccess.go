package postgres

import (
	"context"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// FlagKeyAccessAnomalies raises key_access alerts (once each) for the owner
// of every key that was decrypted in the last day in a way no sync accounts
// for:
//
//   - a key.decrypted event older than settle with no outcome after it from
//     the same actor (sync.succeeded, sync.failed, key.rewrapped or a failed
//     decryption): something opened the key and never said what it did — a
//     crashed syncer, or a process using ENCRYPTION_KEY outside the syncer;
//   - when allowed is not empty, a decryption by an actor whose name does
//     not start with "syncer:" + one of allowed (an unknown syncer instance).
//
// Decryption failures are alerted where they happen (the syncer and rewrap).
// It returns how many new alerts it raised.
func (d *DB) FlagKeyAccessAnomalies(ctx context.Context, settle time.Duration, allowed []string) (int, error) {
	var n int
	err := d.asSyncer(ctx, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, `
			INSERT INTO tokka.alerts (team_id, kind, severity, connection_id, dedup_key, title, detail)
			SELECT e.team_id, 'key_access', 'warning', e.connection_id,
				'decrypt-without-outcome:' || e.id,
				'A key was decrypted and no sync outcome was recorded',
				jsonb_build_object('audit_event_id', e.id, 'actor', e.actor, 'decrypted_at', e.created_at)
			FROM tokka.audit_events e
			JOIN tokka.connections c ON c.id = e.connection_id
			WHERE e.action = 'key.decrypted' AND e.outcome = 'success'
			  AND e.created_at > now() - interval '1 day'
			  AND e.created_at < now() - make_interval(secs => $1)
			  AND NOT EXISTS (
				SELECT 1 FROM tokka.audit_events o
				WHERE o.team_id = e.team_id AND o.connection_id = e.connection_id AND o.id > e.id
				  AND o.actor = e.actor
				  AND (o.action IN ('sync.succeeded', 'sync.failed', 'key.rewrapped')
				       OR (o.action = 'key.decrypted' AND o.outcome = 'failure')))
			ON CONFLICT (team_id, dedup_key) DO NOTHING`, settle.Seconds())
		if err != nil {
			return domainError(err, "flag decryptions without outcome")
		}
		a, _ := res.RowsAffected()
		n += int(a)
		if len(allowed) == 0 {
			return nil
		}
		res, err = tx.ExecContext(ctx, `
			INSERT INTO tokka.alerts (team_id, kind, severity, connection_id, dedup_key, title, detail)
			SELECT DISTINCT ON (e.team_id, e.connection_id, e.actor) e.team_id, 'key_access', 'critical', e.connection_id,
				'decrypt-by-unknown:' || e.connection_id || ':' || e.actor,
				'A key was decrypted by a syncer instance that is not on the allow-list',
				jsonb_build_object('audit_event_id', e.id, 'actor', e.actor, 'decrypted_at', e.created_at)
			FROM tokka.audit_events e
			JOIN tokka.connections c ON c.id = e.connection_id
			WHERE e.action = 'key.decrypted'
			  AND e.created_at > now() - interval '1 day'
			  AND NOT EXISTS (SELECT 1 FROM unnest($1::text[]) p WHERE e.actor LIKE 'syncer:' || p || '%')
			ORDER BY e.team_id, e.connection_id, e.actor, e.id
			ON CONFLICT (team_id, dedup_key) DO NOTHING`, pq.Array(allowed))
		if err != nil {
			return domainError(err, "flag unknown syncers")
		}
		a, _ = res.RowsAffected()
		n += int(a)
		return nil
	})
	return n, err
}
