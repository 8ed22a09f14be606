package postgres

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// AffectedConnections returns, as the syncer, every connection affected by
// an incident between from and to (inclusive), ordered by user and
// connection. It reads the connections table and the audit log (for
// connections deleted since). It fails only when the database does.
func (d *DB) AffectedConnections(ctx context.Context, from, to time.Time) ([]tokka.AffectedConnection, error) {
	out := []tokka.AffectedConnection{}
	err := d.asSyncer(ctx, func(tx *sqlx.Tx) error {
		return domainError(tx.SelectContext(ctx, &out, `
			WITH ev AS (
				SELECT connection_id, team_id, max(provider) AS provider,
					min(created_at) AS first_seen,
					max(created_at) FILTER (WHERE action = 'key.deleted' AND outcome = 'success') AS deleted_at,
					count(*) FILTER (WHERE action IN ('key.decrypted', 'key.rewrapped') AND outcome = 'success'
					                   AND created_at BETWEEN $1 AND $2) AS decryptions
				FROM tokka.audit_events
				WHERE connection_id IS NOT NULL
				GROUP BY connection_id, team_id
			)
			SELECT coalesce(c.id, ev.connection_id) AS connection_id,
				coalesce(c.team_id, ev.team_id) AS team_id,
				coalesce(c.provider, ev.provider) AS provider,
				c.id IS NOT NULL AS present, c.label, c.key_hint, c.status, c.key_set_at,
				coalesce(least(c.created_at, ev.first_seen), c.created_at, ev.first_seen) AS first_seen,
				CASE WHEN c.id IS NULL THEN ev.deleted_at END AS deleted_at,
				coalesce(ev.decryptions, 0)::int AS decryptions
			FROM tokka.connections c
			FULL JOIN ev ON ev.connection_id = c.id AND ev.team_id = c.team_id
			WHERE coalesce(ev.decryptions, 0) > 0
			   OR (c.id IS NOT NULL AND c.created_at <= $2)
			   OR (c.id IS NULL AND ev.first_seen <= $2 AND (ev.deleted_at IS NULL OR ev.deleted_at >= $1))
			ORDER BY 2, 1`, from, to), "affected connections")
	})
	return out, err
}

// QuarantineConnection handles one affected connection in one transaction,
// as the syncer, and says what it did. A connection whose current key was
// held during the window becomes compromised, with its lease (if a syncer
// holds one) cleared in the same statement, so no syncer uses the key
// again. Whatever the case, the owner gets q.Alert (a key_access alert, once
// per incident and connection) and one incident.quarantined audit event
// whose detail starts with "incident <ref>:". A connection this incident
// already recorded is left alone (QuarantineAlready), so a second run
// changes nothing. It fails only when the database does.
func (d *DB) QuarantineConnection(ctx context.Context, a tokka.AffectedConnection, q tokka.Quarantine) (string, error) {
	var outcome string
	err := d.asSyncer(ctx, func(tx *sqlx.Tx) error {
		prefix := incidentPrefix(q.Ref)
		var done bool
		if err := tx.GetContext(ctx, &done, `
			SELECT EXISTS (SELECT 1 FROM tokka.audit_events
				WHERE team_id = $1 AND connection_id = $2 AND action = $3 AND starts_with(detail, $4))`,
			a.TeamID, a.ConnectionID, tokka.ActionIncidentQuarantined, prefix); err != nil {
			return domainError(err, "incident events")
		}
		if done {
			outcome = tokka.QuarantineAlready
			return nil
		}
		var detail string
		res, err := tx.ExecContext(ctx, `
			UPDATE tokka.connections SET status = 'compromised', last_error = $3,
				lease_owner = NULL, lease_expires_at = NULL, sync_requested_at = NULL, updated_at = now()
			WHERE id = $1 AND team_id = $2 AND key_set_at <= $4`, a.ConnectionID, a.TeamID, q.Reason, q.To)
		if err != nil {
			return domainError(err, "quarantine")
		}
		var present bool
		if err := tx.GetContext(ctx, &present, `SELECT EXISTS (SELECT 1 FROM tokka.connections WHERE id = $1)`,
			a.ConnectionID); err != nil {
			return domainError(err, "quarantine")
		}
		switch n, _ := res.RowsAffected(); {
		case n == 1:
			outcome, detail = tokka.QuarantineDone, quarantineSetDetail+"; the stored key will not be used again"
		case present:
			outcome, detail = tokka.QuarantineKeyReplaced,
				"the key stored now was set after the incident window and stays in use; the earlier key must be revoked"
		default:
			outcome, detail = tokka.QuarantineDeleted, "the connection was deleted; its key must still be revoked at the provider"
		}
		al := q.Alert
		al.TeamID = a.TeamID
		if present {
			al.ConnectionID = &a.ConnectionID
		}
		var extra map[string]any
		if len(al.Detail) > 0 {
			if err := json.Unmarshal(al.Detail, &extra); err != nil {
				return err
			}
		}
		if extra == nil {
			extra = map[string]any{}
		}
		extra["connection_id"], extra["outcome"] = a.ConnectionID, outcome
		if al.Detail, err = json.Marshal(extra); err != nil {
			return err
		}
		if _, err := insertAlert(ctx, tx, al); err != nil {
			return err
		}
		return insertAudit(ctx, tx, tokka.AuditEvent{
			TeamID: a.TeamID, ConnectionID: &a.ConnectionID, Provider: string(a.Provider),
			Action: tokka.ActionIncidentQuarantined, Outcome: tokka.OutcomeSuccess,
			Purpose: "breach response", Actor: q.Actor, Detail: prefix + " " + detail,
		})
	})
	return outcome, err
}

// NotifiedUsers returns the ids of the users who already have a successful
// incident.notified event for the incident ref, as the syncer; `syncer
// incident notify` skips them, so running it again after a partial failure
// mails only those not reached yet. It fails only when the database does.
func (d *DB) NotifiedUsers(ctx context.Context, ref string) (map[string]bool, error) {
	var ids []string
	err := d.asSyncer(ctx, func(tx *sqlx.Tx) error {
		return domainError(tx.SelectContext(ctx, &ids, `
			SELECT DISTINCT team_id::text FROM tokka.audit_events
			WHERE action = $1 AND outcome = 'success' AND starts_with(detail, $2)`,
			tokka.ActionIncidentNotified, incidentPrefix(ref)), "incident events")
	})
	out := make(map[string]bool, len(ids))
	for _, id := range ids {
		out[id] = true
	}
	return out, err
}

// TeamContacts returns the people an incident about team's keys is told
// to: its owners and admins, as the syncer reads them. A personal team
// whose rows were never made (its founder has not used a team route) is
// its founder, whose id it has.
func (d *DB) TeamContacts(ctx context.Context, team string) ([]string, error) {
	var ids []string
	err := d.asSyncer(ctx, func(tx *sqlx.Tx) error {
		return domainError(tx.SelectContext(ctx, &ids, `
			SELECT user_id::text FROM tokka.team_members
			WHERE team_id = $1 AND role IN ('owner', 'admin') ORDER BY role DESC, user_id`, team), "team members")
	})
	if err == nil && len(ids) == 0 {
		ids = []string{team}
	}
	return ids, err
}

// RecordNotification writes, as the syncer and in one transaction, one
// incident.notified event per connection for the user: outcome success when
// the email went out, failure with reason otherwise. detail must not hold
// the address. It fails only when the database does.
func (d *DB) RecordNotification(ctx context.Context, ref, userID string, conns []tokka.AffectedConnection, ev tokka.AuditEvent) error {
	return d.asSyncer(ctx, func(tx *sqlx.Tx) error {
		for _, c := range conns {
			e := ev
			e.TeamID, e.ConnectionID, e.Provider = userID, &c.ConnectionID, string(c.Provider)
			e.Action = tokka.ActionIncidentNotified
			e.Detail = incidentPrefix(ref) + " " + ev.Detail
			if err := insertAudit(ctx, tx, e); err != nil {
				return err
			}
		}
		return nil
	})
}

// incidentPrefix starts every audit detail an incident writes, so its
// events can be found again by reference.
func incidentPrefix(ref string) string { return "incident " + ref + ":" }

// quarantineSetDetail starts the detail of an incident.quarantined event
// (after the incident prefix) that set its connection to compromised, as
// opposed to one that only recorded an affected connection. Release looks
// for it.
const quarantineSetDetail = "status set to compromised"

// QuarantinedBy returns, as the syncer, the connections that the incident
// ref set to compromised (deleted ones included), ordered by user and
// connection. It fails only when the database does.
func (d *DB) QuarantinedBy(ctx context.Context, ref string) ([]tokka.Released, error) {
	out := []tokka.Released{}
	err := d.asSyncer(ctx, func(tx *sqlx.Tx) error {
		return domainError(tx.SelectContext(ctx, &out, `
			SELECT DISTINCT connection_id, team_id, provider FROM tokka.audit_events
			WHERE action = $1 AND connection_id IS NOT NULL AND starts_with(detail, $2)
			ORDER BY team_id, connection_id`,
			tokka.ActionIncidentQuarantined, incidentPrefix(ref)+" "+quarantineSetDetail), "incident events")
	})
	return out, err
}

// ReleaseConnection undoes incident ref's quarantine of one connection, as
// the syncer, in one transaction, and says what it did. Only a connection
// still compromised, and held by no other incident's quarantine that has
// not been released itself, goes back to pending: its error is cleared and
// it is due at once. An incident.released audit event (detail starting
// "incident <ref>:") records who released it, also when another incident
// still holds it (ReleaseStillHeld: releasing that one later frees it). The
// alerts the quarantine raised stay in the user's list. Running it again
// changes nothing (ReleaseAlready). It fails only when the database does.
func (d *DB) ReleaseConnection(ctx context.Context, r tokka.Released, ref, actor string) (string, error) {
	var outcome string
	err := d.asSyncer(ctx, func(tx *sqlx.Tx) error {
		prefix := incidentPrefix(ref)
		var status tokka.ConnectionStatus
		err := tx.GetContext(ctx, &status, `SELECT status FROM tokka.connections WHERE id = $1 AND team_id = $2 FOR UPDATE`,
			r.ConnectionID, r.TeamID)
		if errors.Is(err, sql.ErrNoRows) {
			outcome = tokka.ReleaseDeleted
			return nil
		}
		if err != nil {
			return domainError(err, "release")
		}
		// Every incident that set this connection to compromised, and
		// every one released since (a reference's prefix is "incident
		// <ref>:" and references hold no colon).
		var events []struct {
			Action string `db:"action"`
			Ref    string `db:"ref"`
		}
		if err := tx.SelectContext(ctx, &events, `
			SELECT DISTINCT action, split_part(substr(detail, length('incident ') + 1), ':', 1) AS ref
			FROM tokka.audit_events
			WHERE team_id = $1 AND connection_id = $2 AND starts_with(detail, 'incident ')
			  AND (action = $3 OR (action = $4 AND position($5 IN detail) > 0))`,
			r.TeamID, r.ConnectionID, tokka.ActionIncidentReleased, tokka.ActionIncidentQuarantined,
			": "+quarantineSetDetail); err != nil {
			return domainError(err, "incident events")
		}
		held := map[string]bool{}
		for _, e := range events {
			if e.Action == tokka.ActionIncidentQuarantined {
				held[e.Ref] = true
			}
		}
		for _, e := range events {
			if e.Action == tokka.ActionIncidentReleased {
				if e.Ref == ref {
					outcome = tokka.ReleaseAlready
					return nil
				}
				delete(held, e.Ref)
			}
		}
		delete(held, ref)
		if status != tokka.StatusCompromised {
			outcome = tokka.ReleaseNotCompromised
			return nil
		}
		ev := tokka.AuditEvent{
			TeamID: r.TeamID, ConnectionID: &r.ConnectionID, Provider: string(r.Provider),
			Action: tokka.ActionIncidentReleased, Outcome: tokka.OutcomeSuccess,
			Purpose: "breach response", Actor: actor,
			Detail: prefix + " quarantine released by the operator (it was a mistake); the stored key is used again",
		}
		if len(held) > 0 {
			// This incident's quarantine is withdrawn all the same, so
			// releasing the other one later frees the connection.
			outcome = tokka.ReleaseStillHeld
			refs := slices.Sorted(maps.Keys(held))
			ev.Detail = prefix + " quarantine released by the operator (it was a mistake); the connection stays compromised under incident " +
				strings.Join(refs, ", ")
			return insertAudit(ctx, tx, ev)
		}
		if _, err := tx.ExecContext(ctx, `
			UPDATE tokka.connections SET status = 'pending', last_error = NULL, next_sync_at = now(), updated_at = now()
			WHERE id = $1 AND team_id = $2`, r.ConnectionID, r.TeamID); err != nil {
			return domainError(err, "release")
		}
		outcome = tokka.ReleaseDone
		return insertAudit(ctx, tx, ev)
	})
	return outcome, err
}
