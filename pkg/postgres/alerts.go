package postgres

import (
	"context"

	"github.com/jmoiron/sqlx"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

const alertColumns = `id, team_id, kind, severity, connection_id, dedup_key, title, detail, created_at, acknowledged_at`

func insertAlert(ctx context.Context, tx *sqlx.Tx, a tokka.Alert) (bool, error) {
	if a.Severity == "" {
		a.Severity = "warning"
	}
	if len(a.Detail) == 0 {
		a.Detail = []byte(`{}`)
	}
	res, err := tx.ExecContext(ctx, `
		INSERT INTO tokka.alerts (team_id, kind, severity, connection_id, dedup_key, title, detail)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (team_id, dedup_key) DO NOTHING`,
		a.TeamID, a.Kind, a.Severity, a.ConnectionID, a.DedupKey, a.Title, string(a.Detail))
	if err != nil {
		return false, domainError(err, "alert")
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// RaiseAlert stores a (as the syncer) unless the same user already has an
// alert with its DedupKey. It reports whether a new alert was stored.
func (d *DB) RaiseAlert(ctx context.Context, a tokka.Alert) (bool, error) {
	var created bool
	err := d.asSyncer(ctx, func(tx *sqlx.Tx) (err error) {
		created, err = insertAlert(ctx, tx, a)
		return err
	})
	return created, err
}

// ListAlerts returns up to limit of u's alerts with an id below before
// (0 = from the newest), newest first; unacknowledged only when open is set.
func (d *DB) ListAlerts(ctx context.Context, u tokka.User, before int64, limit int, open bool) ([]tokka.Alert, error) {
	as := []tokka.Alert{}
	err := d.asReader(ctx, u, func(tx *sqlx.Tx) error {
		return domainError(tx.SelectContext(ctx, &as, `
			SELECT `+alertColumns+` FROM tokka.alerts
			WHERE team_id = $1 AND ($2::bigint = 0 OR id < $2::bigint) AND (NOT $4 OR acknowledged_at IS NULL)
			ORDER BY id DESC LIMIT $3`, u.TeamID(), before, limit, open), "alerts")
	})
	return as, err
}

// AcknowledgeAlert marks one of u's alerts as seen and returns it; it is
// tokka.ErrNotFound for an alert that is not u's. Acknowledging twice keeps
// the first time.
func (d *DB) AcknowledgeAlert(ctx context.Context, u tokka.User, id int64) (tokka.Alert, error) {
	var a tokka.Alert
	err := d.asUser(ctx, u, func(tx *sqlx.Tx) error {
		return domainError(tx.GetContext(ctx, &a, `
			UPDATE tokka.alerts SET acknowledged_at = coalesce(acknowledged_at, now())
			WHERE id = $1 AND team_id = $2 RETURNING `+alertColumns, id, u.TeamID()), "alert")
	})
	return a, err
}
