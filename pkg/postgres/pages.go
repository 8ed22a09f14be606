package postgres

import (
	"context"

	"github.com/jmoiron/sqlx"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// keysetArgs returns after as the two placeholders of a keyset condition;
// a nil key (the first page) gives NULLs.
func keysetArgs(k *tokka.CreatedKey) (any, any) {
	if k == nil {
		return nil, nil
	}
	return k.CreatedAt, k.ID
}

// ListConnectionsPage returns up to limit of u's connections that come after
// after (nil: from the first), oldest first.
func (d *DB) ListConnectionsPage(ctx context.Context, u tokka.User, after *tokka.CreatedKey, limit int) ([]tokka.Connection, error) {
	cs := []tokka.Connection{}
	at, id := keysetArgs(after)
	err := d.asReader(ctx, u, func(tx *sqlx.Tx) error {
		return domainError(tx.SelectContext(ctx, &cs, `
			SELECT `+connectionColumns+` FROM tokka.connections
			WHERE team_id = $4 AND ($1::timestamptz IS NULL OR (created_at, id) > ($1::timestamptz, $2::uuid))
			ORDER BY created_at, id LIMIT $3`, at, id, limit, u.TeamID()), "connections")
	})
	return cs, err
}

// ListBudgetsPage returns up to limit of u's budgets that come after after
// (nil: from the first), oldest first.
func (d *DB) ListBudgetsPage(ctx context.Context, u tokka.User, after *tokka.CreatedKey, limit int) ([]tokka.Budget, error) {
	var bs []budgetRow
	at, id := keysetArgs(after)
	err := d.asReader(ctx, u, func(tx *sqlx.Tx) error {
		return domainError(tx.SelectContext(ctx, &bs, `
			SELECT `+budgetColumns+` FROM tokka.budgets
			WHERE team_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) > ($2::timestamptz, $3::uuid))
			ORDER BY created_at, id LIMIT $4`, u.TeamID(), at, id, limit), "budgets")
	})
	return budgets(bs), err
}

// BudgetDeliveriesPage returns up to limit of the deliveries of one of u's
// budgets with an id below before (0: from the newest), newest first. A
// budget that does not exist or is not u's is tokka.ErrNotFound.
func (d *DB) BudgetDeliveriesPage(ctx context.Context, u tokka.User, budgetID string, before int64, limit int) ([]tokka.Delivery, error) {
	ds := []tokka.Delivery{}
	err := d.asReader(ctx, u, func(tx *sqlx.Tx) error {
		var one int
		if err := tx.GetContext(ctx, &one, `SELECT 1 FROM tokka.budgets WHERE id = $1 AND team_id = $2`, budgetID, u.TeamID()); err != nil {
			return domainError(err, "budget")
		}
		return domainError(tx.SelectContext(ctx, &ds, `
			SELECT id, budget_id, alert_id, channel, status, attempts, response_status, last_error,
				created_at, updated_at, delivered_at
			FROM tokka.budget_deliveries
			WHERE budget_id = $1 AND ($2::bigint = 0 OR id < $2::bigint)
			ORDER BY id DESC LIMIT $3`, budgetID, before, limit), "deliveries")
	})
	return ds, err
}
