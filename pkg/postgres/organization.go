package postgres

import (
	"context"
	"encoding/json"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// orgLockClass namespaces the advisory locks that serialise organisation
// checks per user and provider (the first key of the two-key form).
const orgLockClass = 0x70c4b

// spendTables are every table that holds a connection's usage or spend,
// rollups included: removing a connection's rows from all of them keeps
// every total exact.
var spendTables = []string{"tokka.usage_daily", "tokka.cost_daily", "tokka.usage_monthly", "tokka.cost_monthly",
	"tokka.spend_daily"}

// RecordOrganization records org, the provider organisation l's key belongs
// to, and settles duplicates among l's user's connections of l's provider,
// in one transaction while l is held. Two connections are of one
// organisation when their organisation ids are equal or their project ids
// share one; only connections whose organisation is known for their current
// key, and that are not duplicates themselves, count. The older connection
// (created first) is kept:
//
//   - when an older connection covers org, l's connection becomes duplicate
//     and RecordOrganization returns that connection's id; the caller must
//     stop and store nothing;
//   - otherwise org is recorded and every newer connection that covers it
//     becomes duplicate; it returns "".
//
// A connection that becomes duplicate loses its usage and spend rows
// (rollups included), gets a reason in last_error, a duplicate_connection
// alert for its owner naming the connection that covers its organisation,
// and a sync.failed audit event made from ev (actor, purpose) saying so;
// l's own lease is released, while a newer connection's lease, if a syncer
// holds one, stays with it to give back (see ErrDuplicate, AbandonSync).
// Checks for one user and provider are serialised, so two first syncs racing
// cannot both count. It fails with ErrLeaseLost (or ErrKeyChanged,
// ErrDuplicate) when l is no longer held, writing nothing.
func (d *DB) RecordOrganization(ctx context.Context, l tokka.Lease, org tokka.Organization, ev tokka.AuditEvent) (string, error) {
	var existing string
	err := d.asSyncer(ctx, func(tx *sqlx.Tx) error {
		// The lock comes before the row lock of holdLease: a transaction
		// holding it may then mark other connections (row locks) without
		// waiting for one that holds such a row and wants the lock.
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`,
			orgLockClass, l.TeamID+":"+string(l.Provider)); err != nil {
			return domainError(err, "organisation lock")
		}
		if err := holdLease(ctx, tx, l); err != nil {
			return err
		}
		var orgID *string
		if org.ID != "" {
			orgID = &org.ID
		}
		projects := org.ProjectIDs
		if projects == nil {
			projects = []string{}
		}
		var matches []struct {
			ID    string `db:"id"`
			Label string `db:"label"`
			Older bool   `db:"older"`
		}
		if err := tx.SelectContext(ctx, &matches, `
			SELECT c.id, c.label, (c.created_at, c.id) < (me.created_at, me.id) AS older
			FROM tokka.connections c JOIN tokka.connections me
			  ON me.id = $1 AND c.team_id = me.team_id AND c.provider = me.provider AND c.id <> me.id
			WHERE c.status <> 'duplicate'
			  AND c.organization_checked_at >= c.key_set_at
			  AND (c.organization_id = $2 OR c.project_ids && $3::text[])
			ORDER BY c.created_at, c.id`, l.ConnectionID, orgID, pq.Array(projects)); err != nil {
			return domainError(err, "organisation matches")
		}
		var label string
		if err := tx.GetContext(ctx, &label, `
			UPDATE tokka.connections SET organization_id = $2, project_ids = $3, organization_checked_at = now()
			WHERE id = $1 RETURNING label`, l.ConnectionID, orgID, pq.Array(projects)); err != nil {
			return domainError(err, "record organisation")
		}
		if len(matches) > 0 && matches[0].Older {
			existing = matches[0].ID
			return markDuplicate(ctx, tx, l.TeamID, string(l.Provider), l.ConnectionID, matches[0].ID, matches[0].Label, ev, true, sameOrganization)
		}
		for _, m := range matches {
			if err := markDuplicate(ctx, tx, l.TeamID, string(l.Provider), m.ID, l.ConnectionID, label, ev, false, sameOrganization); err != nil {
				return err
			}
		}
		return nil
	})
	return existing, err
}

// duplicateKind is what makes a connection a duplicate: what the older
// connection already has.
type duplicateKind int

const (
	sameOrganization duplicateKind = iota // its key's provider organisation
	sameKey                               // the very key (a client-sealed key, found by the syncer)
)

// markDuplicate makes connection id a duplicate of existing (whose label is
// existingLabel): status, reason, rows, alert and audit event, as
// RecordOrganization describes. release also gives back its lease.
func markDuplicate(ctx context.Context, tx *sqlx.Tx, userID, prov, id, existing, existingLabel string, ev tokka.AuditEvent, release bool, kind duplicateKind) error {
	reason := `Another of your connections, "` + existingLabel + `" (` + existing + `), already covers this ` +
		`provider organisation, so this one is not counted. Delete this connection, or replace its key with one of another organisation.`
	title := `A connection duplicates "` + existingLabel + `", which already covers the same organisation; it is not counted`
	evDetail := "duplicate: connection " + existing + " already covers this provider organisation; this one is not counted"
	if kind == sameKey {
		reason = `This key is already connected as "` + existingLabel + `" (` + existing + `), so this connection is not counted. ` +
			`Delete this connection, or replace its key with another one.`
		title = `A connection has the same key as "` + existingLabel + `"; it is not counted`
		evDetail = "duplicate: connection " + existing + " already holds this key; this one is not counted"
	}
	var keySetAt time.Time
	if err := tx.GetContext(ctx, &keySetAt, `
		UPDATE tokka.connections SET status = 'duplicate', last_error = $2, sync_requested_at = NULL,
			lease_owner = CASE WHEN $3 THEN NULL ELSE lease_owner END,
			lease_expires_at = CASE WHEN $3 THEN NULL ELSE lease_expires_at END,
			updated_at = now()
		WHERE id = $1 RETURNING key_set_at`, id, reason, release); err != nil {
		return domainError(err, "mark duplicate")
	}
	for _, table := range spendTables {
		if _, err := tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE connection_id = $1`, id); err != nil {
			return domainError(err, "remove duplicate rows")
		}
	}
	detail, err := json.Marshal(map[string]string{"existing_connection_id": existing, "existing_label": existingLabel,
		"provider": prov})
	if err != nil {
		return err
	}
	if _, err := insertAlert(ctx, tx, tokka.Alert{
		TeamID: userID, Kind: tokka.AlertDuplicateConnection, Severity: "warning", ConnectionID: &id,
		// One alert per connection and key: a replaced key that is again a
		// duplicate is told again.
		DedupKey: "duplicate:" + id + ":" + keySetAt.UTC().Format(time.RFC3339Nano),
		Title:    title,
		Detail:   detail,
	}); err != nil {
		return err
	}
	ev.TeamID, ev.ConnectionID, ev.Provider = userID, &id, prov
	ev.Action, ev.Outcome = tokka.ActionSyncFailed, tokka.OutcomeFailure
	ev.Detail = evDetail
	return insertAudit(ctx, tx, ev)
}

// AbandonSync gives back l's lease on a connection that was marked duplicate
// while l was held (ErrDuplicate), recording ev (sync.failed) as the outcome
// of the key use it ends. A lease l no longer holds is left alone and nothing
// is recorded.
func (d *DB) AbandonSync(ctx context.Context, l tokka.Lease, ev tokka.AuditEvent) error {
	return d.asSyncer(ctx, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, `
			UPDATE tokka.connections SET lease_owner = NULL, lease_expires_at = NULL
			WHERE id = $1 AND lease_owner = $2`, l.ConnectionID, l.Owner)
		if err != nil {
			return domainError(err, "abandon sync")
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		ev.TeamID, ev.ConnectionID, ev.Provider = l.TeamID, &l.ConnectionID, string(l.Provider)
		return insertAudit(ctx, tx, ev)
	})
}
