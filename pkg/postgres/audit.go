package postgres

import (
	"context"

	"github.com/jmoiron/sqlx"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

const auditColumns = `id, user_id, connection_id, provider, action, outcome, purpose, actor,
	client_ip, user_agent, detail, created_at`

func insertAudit(ctx context.Context, tx *sqlx.Tx, ev tokka.AuditEvent) error {
	_, err := tx.ExecContext(ctx, `
		INSERT INTO tokka.audit_events
			(user_id, connection_id, provider, action, outcome, purpose, actor, client_ip, user_agent, detail)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		ev.UserID, ev.ConnectionID, ev.Provider, ev.Action, ev.Outcome, ev.Purpose, ev.Actor,
		ev.ClientIP, ev.UserAgent, ev.Detail)
	return domainError(err, "audit event")
}

// ListAuditEvents returns up to limit of u's audit events with an id below
// before (0 = from the newest), newest first.
func (d *DB) ListAuditEvents(ctx context.Context, u tokka.User, before int64, limit int) ([]tokka.AuditEvent, error) {
	evs := []tokka.AuditEvent{}
	err := d.asUser(ctx, u, func(tx *sqlx.Tx) error {
		return domainError(tx.SelectContext(ctx, &evs, `
			SELECT `+auditColumns+` FROM tokka.audit_events
			WHERE user_id = $1 AND ($2 = 0 OR id < $2)
			ORDER BY id DESC LIMIT $3`, u.ID, before, limit), "audit events")
	})
	return evs, err
}
