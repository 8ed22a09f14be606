package postgres

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"

	"github.com/jmoiron/sqlx"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

const auditColumns = `id, user_id, connection_id, provider, action, outcome, purpose, actor,
	client_ip, user_agent, detail, created_at, prev_hash, hash`

// auditLockClass namespaces the per-user advisory locks that serialise audit
// inserts (the first key of the two-key form; the second is the user id's hash).
const auditLockClass = 0x70c4a

// insertAudit appends ev to its user's hash chain (see migration 00005 for the
// encoding). Appends for one user must not interleave, or two events would
// claim the same predecessor: a transaction-scoped advisory lock on the user
// id serialises them. (SELECT … FOR UPDATE on the last event is not an option:
// it needs UPDATE privilege, which no role has on audit_events, on purpose.)
// The lock is taken by its own statement before the INSERT, so the event's id
// is drawn after the lock and ids follow chain order. Every caller runs in a
// READ COMMITTED transaction, so the INSERT's snapshot, taken after the lock,
// sees the previous holder's committed event. The hash is computed by
// tokka.audit_event_hash in the same statement, from the values as stored.
func insertAudit(ctx context.Context, tx *sqlx.Tx, ev tokka.AuditEvent) error {
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`,
		auditLockClass, ev.UserID); err != nil {
		return domainError(err, "audit lock")
	}
	_, err := tx.ExecContext(ctx, `
		WITH prev AS (
			SELECT hash FROM tokka.audit_events WHERE user_id = $1 ORDER BY id DESC LIMIT 1
		), ev AS (
			SELECT $1::uuid AS user_id, $2::uuid AS connection_id, $3::text AS provider, $4::text AS action,
				$5::text AS outcome, $6::text AS purpose, $7::text AS actor, $8::text AS client_ip,
				$9::text AS user_agent, $10::text AS detail, clock_timestamp() AS created_at,
				(SELECT hash FROM prev) AS prev_hash
		)
		INSERT INTO tokka.audit_events
			(user_id, connection_id, provider, action, outcome, purpose, actor, client_ip, user_agent, detail,
			 created_at, prev_hash, hash)
		SELECT user_id, connection_id, provider, action, outcome, purpose, actor, client_ip, user_agent, detail,
			created_at, prev_hash,
			tokka.audit_event_hash(prev_hash, user_id, connection_id, provider, action, outcome, purpose, actor,
				client_ip, user_agent, detail, created_at)
		FROM ev`,
		ev.UserID, ev.ConnectionID, ev.Provider, ev.Action, ev.Outcome, ev.Purpose, ev.Actor,
		ev.ClientIP, ev.UserAgent, ev.Detail)
	return domainError(err, "audit event")
}

// auditHashLabel starts every event's hashed content (domain separation).
const auditHashLabel = "tokka/audit/v1"

// AuditEventHash returns the chain hash of ev given its predecessor's hash
// prev (nil for a user's first event): SHA-256 over the label
// "tokka/audit/v1" and each field as a 4-byte big-endian length and its bytes,
// in the order prev, user id, connection id ("" when none), provider, action,
// outcome, purpose, actor, client IP, user agent, detail, and created_at as
// UTC microseconds (8 bytes, big-endian). It is the Go twin of the SQL
// function tokka.audit_event_hash that computes the stored value; verification
// uses this one, so the two implementations check each other. It never fails.
func AuditEventHash(prev []byte, ev tokka.AuditEvent) []byte {
	h := sha256.New()
	h.Write([]byte(auditHashLabel))
	field := func(b []byte) {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	conn := ""
	if ev.ConnectionID != nil {
		conn = *ev.ConnectionID
	}
	field(prev)
	for _, s := range []string{ev.UserID, conn, ev.Provider, ev.Action, ev.Outcome, ev.Purpose, ev.Actor,
		ev.ClientIP, ev.UserAgent, ev.Detail} {
		field([]byte(s))
	}
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], uint64(ev.CreatedAt.UnixMicro()))
	field(ts[:])
	return h.Sum(nil)
}

// ListAuditEvents returns up to limit of u's audit events with an id below
// before (0 = from the newest), newest first.
func (d *DB) ListAuditEvents(ctx context.Context, u tokka.User, before int64, limit int) ([]tokka.AuditEvent, error) {
	evs := []tokka.AuditEvent{}
	err := d.asUser(ctx, u, func(tx *sqlx.Tx) error {
		return domainError(tx.SelectContext(ctx, &evs, `
			SELECT `+auditColumns+` FROM tokka.audit_events
			WHERE user_id = $1 AND ($2::bigint = 0 OR id < $2::bigint)
			ORDER BY id DESC LIMIT $3`, u.ID, before, limit), "audit events")
	})
	return evs, err
}

// Problems VerifyAuditChain reports, in words safe to show to the user.
const (
	chainContentMismatch = "the event's content does not match its hash: it was edited after it was written"
	chainLinkBroken      = "the event does not follow the one before it: an event was removed, inserted or edited before this one"
)

// VerifyAuditChain reads all of u's audit events, oldest first, and checks
// that each one's hash matches its content (recomputed with AuditEventHash)
// and that its prev_hash is the previous event's hash (NULL for the first).
// It reports the first event that fails; a database error is returned as an
// error, never as a broken chain.
func (d *DB) VerifyAuditChain(ctx context.Context, u tokka.User) (tokka.AuditVerification, error) {
	var v tokka.AuditVerification
	err := d.asUser(ctx, u, func(tx *sqlx.Tx) error {
		rows, err := tx.QueryxContext(ctx, `
			SELECT `+auditColumns+` FROM tokka.audit_events WHERE user_id = $1 ORDER BY id`, u.ID)
		if err != nil {
			return domainError(err, "audit events")
		}
		defer rows.Close()
		var prev []byte
		for rows.Next() {
			var ev tokka.AuditEvent
			if err := rows.StructScan(&ev); err != nil {
				return domainError(err, "audit events")
			}
			v.Events++
			if v.FirstBrokenID != nil {
				continue
			}
			problem := ""
			switch {
			case !bytes.Equal(ev.Hash, AuditEventHash(ev.PrevHash, ev)):
				problem = chainContentMismatch
			case !bytes.Equal(ev.PrevHash, prev):
				problem = chainLinkBroken
			}
			if problem != "" {
				id := ev.ID
				v.FirstBrokenID, v.Problem = &id, &problem
				continue
			}
			prev = ev.Hash
		}
		if err := rows.Err(); err != nil {
			return domainError(err, "audit events")
		}
		v.Intact = v.FirstBrokenID == nil
		if v.Intact {
			v.HeadHash = prev
		}
		return nil
	})
	return v, err
}
