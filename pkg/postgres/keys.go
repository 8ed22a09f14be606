package postgres

import (
	"context"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// ConnectionKeys returns up to limit keys of connection id's organisation,
// ordered by key id after the id after ("" for the first page), as u reads
// them under row-level security: the provider's redacted value only, the
// project or workspace with its name, and the cost the provider's cost
// report attributed to each key on the 30 days up to today (nil when none
// was). It returns tokka.ErrNotFound when u has no such connection.
func (d *DB) ConnectionKeys(ctx context.Context, u tokka.User, id, after string, limit int, today time.Time) ([]tokka.OrgKey, error) {
	out := []tokka.OrgKey{}
	err := d.asReader(ctx, u, func(tx *sqlx.Tx) error {
		var one int
		if err := tx.GetContext(ctx, &one, `SELECT 1 FROM tokka.connections WHERE id = $1 AND team_id = $2`, id, u.TeamID()); err != nil {
			return domainError(err, "connection")
		}
		return domainError(tx.SelectContext(ctx, &out, `
			SELECT k.id, CASE WHEN k.admin THEN 'admin' ELSE 'api' END AS kind, k.name, k.redacted_hint, k.status,
				k.created_at, k.last_used_at, NULLIF(k.project_id, '') AS project_id,
				CASE WHEN p.kind = 'project' THEN p.name END AS project_name,
				CASE WHEN p.kind = 'workspace' THEN p.name END AS workspace_name,
				(SELECT sum(c.amount_usd) FROM tokka.cost_daily c
					WHERE c.connection_id = k.connection_id AND c.api_key_id = k.id
						AND c.day BETWEEN $3::date - 29 AND $3::date) AS spend_30d_usd
			FROM tokka.directory_keys k
			LEFT JOIN tokka.directory_projects p ON p.connection_id = k.connection_id AND p.id = k.project_id
			WHERE k.connection_id = $1 AND k.id > $2
			ORDER BY k.id
			LIMIT $4`, id, after, today.UTC().Format(time.DateOnly), limit), "connection keys")
	})
	return out, err
}
