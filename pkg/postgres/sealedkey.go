package postgres

import (
	"context"

	"github.com/jmoiron/sqlx"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// RecordSealedKey records what the syncer learnt on first opening the
// client-sealed key of l: its hint and its keyed fingerprint (nil when the
// syncer has no fingerprint secret; the organisation check still catches the
// same key then). When another of l's user's connections already holds the
// fingerprint, l's connection becomes duplicate of it (rows, alert and a
// sync.failed event made from ev, as for an organisation) with the hint set
// and no fingerprint, its lease is released, and RecordSealedKey returns
// that connection's id; otherwise "". It fails with ErrLeaseLost (or
// ErrKeyChanged, ErrDuplicate) when l is no longer held, writing nothing.
func (d *DB) RecordSealedKey(ctx context.Context, l tokka.Lease, hint string, fingerprint []byte, ev tokka.AuditEvent) (string, error) {
	var existing string
	err := d.asSyncer(ctx, func(tx *sqlx.Tx) error {
		// The organisation check's lock: the same key pasted at the api
		// meanwhile is caught by the unique index instead (an error here,
		// and the next sync finds it).
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`,
			orgLockClass, l.TeamID+":"+string(l.Provider)); err != nil {
			return domainError(err, "organisation lock")
		}
		if err := holdLease(ctx, tx, l); err != nil {
			return err
		}
		var holders []struct {
			ID    string `db:"id"`
			Label string `db:"label"`
		}
		if len(fingerprint) > 0 {
			if err := tx.SelectContext(ctx, &holders, `
				SELECT id, label FROM tokka.connections
				WHERE team_id = $1 AND key_fingerprint = $2 AND id <> $3`,
				l.TeamID, fingerprint, l.ConnectionID); err != nil {
				return domainError(err, "key holders")
			}
		}
		if len(holders) > 0 {
			fingerprint = nil
		}
		// The syncer's role may not write these columns itself; the
		// function writes them only while the hint is empty (migration 00020).
		var found bool
		if err := tx.GetContext(ctx, &found, `SELECT tokka.record_sealed_key($1, $2, $3, $4)`,
			l.ConnectionID, l.Owner, hint, fingerprint); err != nil {
			return domainError(err, "record sealed key")
		}
		if !found {
			return tokka.ErrLeaseLost
		}
		if len(holders) == 0 {
			return nil
		}
		existing = holders[0].ID
		return markDuplicate(ctx, tx, l.TeamID, string(l.Provider), l.ConnectionID, existing, holders[0].Label, ev, true, sameKey)
	})
	return existing, err
}
