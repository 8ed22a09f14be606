package postgres

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/jmoiron/sqlx"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

const auditColumns = `id, team_id, connection_id, provider, action, outcome, purpose, actor,
	client_ip, user_agent, detail, created_at, actor_user_id, prev_hash, hash`

// insertAudit appends ev to its user's hash chain. The database does the
// chaining (migration 00011, trigger audit_events_chain): it takes the
// per-user lock, links the event to the user's newest one, dates it and
// hashes it, so this is a plain INSERT of what the event says; it also
// refuses an action or actor that is not the inserting role's own.
func insertAudit(ctx context.Context, tx *sqlx.Tx, ev tokka.AuditEvent) error {
	_, err := tx.ExecContext(ctx, `
		INSERT INTO tokka.audit_events
			(team_id, connection_id, provider, action, outcome, purpose, actor, client_ip, user_agent, detail)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		ev.TeamID, ev.ConnectionID, ev.Provider, ev.Action, ev.Outcome, ev.Purpose, ev.Actor,
		ev.ClientIP, ev.UserAgent, ev.Detail)
	return domainError(err, "audit event")
}

// The labels that start an event's hashed content (domain separation):
// v2 for an event with an acting user, v1 for the rest (migration 00022).
const (
	auditHashLabel   = "tokka/audit/v1"
	auditHashLabelV2 = "tokka/audit/v2"
)

// AuditEventHash returns the chain hash of ev given its predecessor's hash
// prev (nil for a team's first event): SHA-256 over the label
// "tokka/audit/v1" and each field as a 4-byte big-endian length and its bytes,
// in the order prev, team id, connection id ("" when none), provider, action,
// outcome, purpose, actor, client IP, user agent, detail, and created_at as
// UTC microseconds (8 bytes, big-endian); for an event with an ActorUserID,
// the label is "tokka/audit/v2" and the actor's id is one more field at the
// end. It is the Go twin of the SQL functions tokka.audit_event_hash and
// tokka.audit_event_hash_v2 that compute the stored value (in the
// audit_events_chain trigger); verification
// uses this one, so the two implementations check each other. It never fails.
func AuditEventHash(prev []byte, ev tokka.AuditEvent) []byte {
	h := sha256.New()
	if ev.ActorUserID != nil {
		h.Write([]byte(auditHashLabelV2))
	} else {
		h.Write([]byte(auditHashLabel))
	}
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
	for _, s := range []string{ev.TeamID, conn, ev.Provider, ev.Action, ev.Outcome, ev.Purpose, ev.Actor,
		ev.ClientIP, ev.UserAgent, ev.Detail} {
		field([]byte(s))
	}
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], uint64(ev.CreatedAt.UnixMicro()))
	field(ts[:])
	if ev.ActorUserID != nil {
		field([]byte(*ev.ActorUserID))
	}
	return h.Sum(nil)
}

// ListAuditEvents returns up to limit of u's audit events with an id below
// before (0 = from the newest), newest first.
func (d *DB) ListAuditEvents(ctx context.Context, u tokka.User, before int64, limit int) ([]tokka.AuditEvent, error) {
	evs := []tokka.AuditEvent{}
	err := d.asReader(ctx, u, func(tx *sqlx.Tx) error {
		return domainError(tx.SelectContext(ctx, &evs, `
			SELECT `+auditColumns+` FROM tokka.audit_events
			WHERE team_id = $1 AND ($2::bigint = 0 OR id < $2::bigint)
			ORDER BY id DESC LIMIT $3`, u.TeamID(), before, limit), "audit events")
	})
	return evs, err
}

// Problems VerifyAuditChain reports, in words safe to show to the user.
const (
	chainContentMismatch = "the event's content does not match its hash: it was edited after it was written"
	chainLinkBroken      = "the event does not follow the one before it: an event was removed, inserted or edited before this one"
	chainTimeBackwards   = "the event is dated earlier than the event before it: its time was changed after it was written"
	chainCheckpointGone  = "the event the last verification ended at was removed or changed since"
)

// markBroken records the first failing event of a verification.
func markBroken(v *tokka.AuditVerification, id int64, problem string) {
	v.FirstBrokenID, v.Problem = &id, &problem
}

// verifyChunk is how many events one statement of VerifyAuditChain reads.
const verifyChunk = 5000

// checkpoint is where a user's last verification ended (migration 00011).
type checkpoint struct {
	EventID int64  `db:"event_id"`
	Hash    []byte `db:"hash"`
	Events  int64  `db:"events"`
}

// VerifyAuditChain checks u's audit hash chain, oldest first: each event's
// hash must match its content (recomputed with AuditEventHash), its
// prev_hash must be the previous event's hash (NULL for the first), and its
// time must not be earlier than the previous event's. It reports the first
// event that fails.
//
// It is incremental: u's checkpoint (the newest event an earlier call found
// intact) is confirmed unchanged and only the events after it are read; with
// full it reads from the first event, and also reports the checkpoint's event
// if its hash is no longer the one recorded. Events are read in chunks of
// verifyChunk, each in its own short transaction (so every statement is
// bounded by the statement timeout), and the checkpoint moves forward over
// every event found intact. At most a quarter of the pool's connections (at
// least one) read and check chunks at any moment, whoever asks, so
// verifications cannot crowd out other requests; a call waits for a turn
// between chunks. A database error (a timeout is CodeUnavailable) is returned
// as an error, never as a broken chain; the checkpoint keeps what was
// verified before it.
func (d *DB) VerifyAuditChain(ctx context.Context, u tokka.User, full bool) (tokka.AuditVerification, error) {
	c := chainCheck{u: u}
	err := d.asUserKeeping(ctx, u, func(tx *sqlx.Tx) error {
		err := tx.GetContext(ctx, &c.cp, `SELECT event_id, hash, events FROM tokka.audit_checkpoints WHERE team_id = $1`, u.TeamID())
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return domainError(err, "audit checkpoint")
		}
		if full || c.cp.EventID == 0 {
			return nil
		}
		var ev tokka.AuditEvent
		err = tx.GetContext(ctx, &ev, `SELECT `+auditColumns+` FROM tokka.audit_events WHERE id = $1 AND team_id = $2`,
			c.cp.EventID, u.TeamID())
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return domainError(err, "audit events")
		}
		switch {
		case err != nil || !bytes.Equal(ev.Hash, c.cp.Hash):
			markBroken(&c.v, c.cp.EventID, chainCheckpointGone)
		case !bytes.Equal(ev.Hash, AuditEventHash(ev.PrevHash, ev)):
			markBroken(&c.v, c.cp.EventID, chainContentMismatch)
		default:
			c.prev = &ev
		}
		c.v.Events = c.cp.Events
		c.after = c.cp.EventID
		return nil
	})
	if err != nil {
		return c.v, err
	}
	c.advanced = c.cp.EventID
	for more := true; more; {
		if more, err = d.checkChunk(ctx, &c); err != nil {
			return c.v, err
		}
	}
	if full && c.v.Events < c.cp.Events && c.v.FirstBrokenID == nil {
		// Fewer events than the checkpoint counted, and none of them broken:
		// the newest ones were removed, checkpoint included (which a full
		// read that reaches it would have reported).
		markBroken(&c.v, c.cp.EventID, chainCheckpointGone)
	}
	if c.prev != nil && c.prev.ID > c.advanced {
		if err := d.asUserKeeping(ctx, u, func(tx *sqlx.Tx) error {
			_, err := tx.ExecContext(ctx, `SELECT tokka.advance_audit_checkpoint($1, $2)`, c.prev.ID, []byte(c.prev.Hash))
			return domainError(err, "audit checkpoint")
		}); err != nil {
			return c.v, err
		}
	}
	c.v.Intact = c.v.FirstBrokenID == nil
	if c.v.Intact && c.prev != nil {
		c.v.HeadHash = c.prev.Hash
	}
	return c.v, nil
}

// chainCheck is one VerifyAuditChain call in progress.
type chainCheck struct {
	u        tokka.User
	v        tokka.AuditVerification
	cp       checkpoint
	prev     *tokka.AuditEvent // the last event found intact
	after    int64             // the id the next chunk starts after
	advanced int64             // the checkpoint as far as this call knows
}

// checkChunk takes a verification turn, moves the checkpoint over what the
// previous chunk found intact, reads the next chunk and checks it. It
// reports whether there may be more.
func (d *DB) checkChunk(ctx context.Context, c *chainCheck) (bool, error) {
	select {
	case d.verifyTurns <- struct{}{}:
	case <-ctx.Done():
		return false, fmt.Errorf("postgres: audit verification: %w", ctx.Err())
	}
	defer func() { <-d.verifyTurns }()
	if d.chunkChecked != nil {
		defer d.chunkChecked()
	}
	evs := make([]tokka.AuditEvent, 0, verifyChunk) // a new one each time: c.prev may point into the last
	err := d.asUserKeeping(ctx, c.u, func(tx *sqlx.Tx) error {
		if c.prev != nil && c.prev.ID > c.advanced {
			if _, err := tx.ExecContext(ctx, `SELECT tokka.advance_audit_checkpoint($1, $2)`,
				c.prev.ID, []byte(c.prev.Hash)); err != nil {
				return domainError(err, "audit checkpoint")
			}
			c.advanced = c.prev.ID
		}
		// Read in id order from the (team_id, id) index, stopping after the
		// chunk. A user far heavier than the table's statistics suggest
		// would otherwise get a bitmap scan of all their events, sorted, for
		// every chunk.
		if _, err := tx.ExecContext(ctx, `SELECT set_config('enable_bitmapscan', 'off', true)`); err != nil {
			return domainError(err, "audit events")
		}
		return domainError(tx.SelectContext(ctx, &evs, `
			SELECT `+auditColumns+` FROM tokka.audit_events
			WHERE team_id = $1 AND id > $2 ORDER BY id LIMIT $3`, c.u.TeamID(), c.after, verifyChunk), "audit events")
	})
	if err != nil {
		return false, err
	}
	for i := range evs {
		ev := &evs[i]
		c.v.Events++
		c.v.Checked++
		if c.v.FirstBrokenID != nil {
			continue
		}
		switch prev := c.prev; {
		case !bytes.Equal(ev.Hash, AuditEventHash(ev.PrevHash, *ev)):
			markBroken(&c.v, ev.ID, chainContentMismatch)
		case prev == nil && ev.PrevHash != nil, prev != nil && !bytes.Equal(ev.PrevHash, prev.Hash):
			markBroken(&c.v, ev.ID, chainLinkBroken)
		case prev != nil && ev.CreatedAt.Before(prev.CreatedAt):
			markBroken(&c.v, ev.ID, chainTimeBackwards)
		case ev.ID == c.cp.EventID && !bytes.Equal(ev.Hash, c.cp.Hash):
			markBroken(&c.v, ev.ID, chainCheckpointGone)
		default:
			c.prev = ev
		}
	}
	if len(evs) > 0 {
		c.after = evs[len(evs)-1].ID
	}
	return len(evs) == verifyChunk, nil
}
