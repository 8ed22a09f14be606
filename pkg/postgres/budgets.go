package postgres

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// budgetRow is a budgets row as scanned: the domain budget plus its
// threshold arrays in the driver's array type, which stays in this package.
type budgetRow struct {
	tokka.Budget
	Thresholds         pq.Int64Array `db:"thresholds"`
	ForecastThresholds pq.Int64Array `db:"forecast_thresholds"`
}

// budget returns the row as the domain's budget.
func (r budgetRow) budget() tokka.Budget {
	b := r.Budget
	b.Thresholds, b.ForecastThresholds = nonNil(r.Thresholds), nonNil(r.ForecastThresholds)
	return b
}

// budgets returns rows as domain budgets.
func budgets(rows []budgetRow) []tokka.Budget {
	bs := make([]tokka.Budget, len(rows))
	for i, r := range rows {
		bs[i] = r.budget()
	}
	return bs
}

const budgetColumns = `id, team_id, name, amount_usd, scope, provider, connection_id, thresholds,
	forecast_thresholds, webhook_url, email_to, slack_url_hint, created_at, updated_at`

// CreateBudget stores nb for u. A connection scope must name one of u's own
// connections, otherwise it is a CodeInvalid error on field connection_id
// (the same for a connection that does not exist and one that is not u's);
// a user who already has MaxBudgetsPerUser budgets gets CodeInvalid too.
func (d *DB) CreateBudget(ctx context.Context, u tokka.User, nb tokka.NewBudget) (tokka.Budget, error) {
	var b budgetRow
	err := d.asUser(ctx, u, func(tx *sqlx.Tx) error {
		var n int
		if err := tx.GetContext(ctx, &n, `SELECT count(*) FROM tokka.budgets WHERE team_id = $1`, u.TeamID()); err != nil {
			return domainError(err, "budgets")
		}
		if n >= tokka.MaxBudgetsPerUser {
			return tokka.Errorf(tokka.CodeInvalid, "you already have %d budgets, the most allowed", tokka.MaxBudgetsPerUser)
		}
		if nb.ConnectionID != nil {
			if err := ownConnection(ctx, tx, *nb.ConnectionID, u.TeamID()); err != nil {
				return err
			}
		}
		return domainError(tx.GetContext(ctx, &b, `
			INSERT INTO tokka.budgets (id, team_id, name, amount_usd, scope, provider, connection_id,
				thresholds, forecast_thresholds, webhook_url, webhook_secret, email_to, slack_url)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
			RETURNING `+budgetColumns,
			nb.ID, u.TeamID(), nb.Name, nb.AmountUSD.String(), nb.Scope, nb.Provider, nb.ConnectionID,
			pq.Int64Array(nonNil(nb.Thresholds)), pq.Int64Array(nonNil(nb.ForecastThresholds)),
			nb.WebhookURL, string(nb.WebhookSecret.Bytes()), nb.EmailTo, nb.SlackURL), "budget")
	})
	if err != nil {
		return tokka.Budget{}, err
	}
	return b.budget(), nil
}

func nonNil(s []int64) []int64 {
	if s == nil {
		return []int64{}
	}
	return s
}

// ownConnection checks, under the caller's row-level security, that id is
// one of team's connections.
func ownConnection(ctx context.Context, tx *sqlx.Tx, id, team string) error {
	var one int
	err := tx.GetContext(ctx, &one, `SELECT 1 FROM tokka.connections WHERE id = $1 AND team_id = $2`, id, team)
	if errors.Is(err, sql.ErrNoRows) {
		return &tokka.Error{Code: tokka.CodeInvalid, Field: "connection_id", Message: "connection_id is not one of your connections"}
	}
	return domainError(err, "connection")
}

// GetBudget returns one of u's budgets; it is tokka.ErrNotFound for a budget
// that does not exist or is not u's (indistinguishably).
func (d *DB) GetBudget(ctx context.Context, u tokka.User, id string) (tokka.Budget, error) {
	var b budgetRow
	err := d.asReader(ctx, u, func(tx *sqlx.Tx) error {
		return domainError(tx.GetContext(ctx, &b, `
			SELECT `+budgetColumns+` FROM tokka.budgets WHERE id = $1 AND team_id = $2`, id, u.TeamID()), "budget")
	})
	if err != nil {
		return tokka.Budget{}, err
	}
	return b.budget(), nil
}

// UpdateBudget applies p to one of u's budgets and returns the result; it is
// tokka.ErrNotFound for a budget that is not u's, and CodeInvalid for a
// SlackHint that is not the budget's.
func (d *DB) UpdateBudget(ctx context.Context, u tokka.User, id string, p tokka.BudgetPatch) (tokka.Budget, error) {
	var b budgetRow
	var amount, newSecret any
	if p.AmountUSD != nil {
		amount = p.AmountUSD.String()
	}
	if p.WebhookSecret != nil {
		newSecret = string(p.WebhookSecret.Bytes())
	}
	var thresholds, forecast pq.Int64Array
	if p.Thresholds != nil {
		thresholds = nonNil(*p.Thresholds)
	}
	if p.ForecastThresholds != nil {
		forecast = nonNil(*p.ForecastThresholds)
	}
	err := d.asUser(ctx, u, func(tx *sqlx.Tx) error {
		if err := inTeam(ctx, tx, "budgets", id, u.TeamID()); err != nil {
			return err
		}
		// The secret is set by a statement of its own: role authenticated
		// may write that column but not read it, and coalesce() would read.
		if newSecret != nil {
			if _, err := tx.ExecContext(ctx, `UPDATE tokka.budgets SET webhook_secret = $2 WHERE id = $1`,
				id, newSecret); err != nil {
				return domainError(err, "budget")
			}
		}
		if p.SetChannels {
			if err := setSlackURL(ctx, tx, id, p); err != nil {
				return err
			}
		}
		return domainError(tx.GetContext(ctx, &b, `
			UPDATE tokka.budgets SET
				name = coalesce($2, name),
				amount_usd = coalesce($3::numeric, amount_usd),
				thresholds = coalesce($4::integer[], thresholds),
				forecast_thresholds = coalesce($5::integer[], forecast_thresholds),
				webhook_url = CASE WHEN $6 THEN $7 ELSE webhook_url END,
				email_to = CASE WHEN $6 THEN $8 ELSE email_to END,
				updated_at = now()
			WHERE id = $1
			RETURNING `+budgetColumns,
			id, p.Name, amount, thresholds, forecast, p.SetChannels, p.WebhookURL, p.EmailTo), "budget")
	})
	if err != nil {
		return tokka.Budget{}, err
	}
	return b.budget(), nil
}

// setSlackURL applies a channel update's Slack part. Like the secret, the
// URL is written by a statement of its own, which never reads it: role
// authenticated may not. Keeping it compares the hint instead.
func setSlackURL(ctx context.Context, tx *sqlx.Tx, id string, p tokka.BudgetPatch) error {
	if p.SlackHint == nil {
		_, err := tx.ExecContext(ctx, `UPDATE tokka.budgets SET slack_url = $2 WHERE id = $1`, id, p.SlackURL)
		return domainError(err, "budget")
	}
	var hint *string
	if err := tx.GetContext(ctx, &hint, `SELECT slack_url_hint FROM tokka.budgets WHERE id = $1`, id); err != nil {
		return domainError(err, "budget")
	}
	if hint == nil || *hint != *p.SlackHint {
		return &tokka.Error{Code: tokka.CodeInvalid, Field: "channels.slack_url",
			Message: "channels.slack_url is a masked URL that is not this budget's; paste the full Slack webhook URL"}
	}
	return nil
}

// DeleteBudget deletes one of u's budgets and its delivery records (the
// alerts it raised stay in the alert list); it is tokka.ErrNotFound for a
// budget that is not u's.
func (d *DB) DeleteBudget(ctx context.Context, u tokka.User, id string) error {
	return d.asUser(ctx, u, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM tokka.budgets WHERE id = $1 AND team_id = $2`, id, u.TeamID())
		if err != nil {
			return domainError(err, "budget")
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return tokka.ErrNotFound
		}
		return nil
	})
}

const spendQuery = `
	SELECT to_char(day, 'YYYY-MM-DD') AS day, provider, connection_id::text AS connection_id, model,
		sum(amount_usd) AS usd
	FROM tokka.cost_daily
	WHERE team_id = $1 AND day >= $2 AND day <= $3
	GROUP BY day, provider, connection_id, model
	ORDER BY day, provider, connection_id, model`

// Spend returns u's daily spend rows for the days from..to (inclusive, UTC),
// under u's row-level security.
func (d *DB) Spend(ctx context.Context, u tokka.User, from, to time.Time) ([]tokka.SpendRow, error) {
	rows := []tokka.SpendRow{}
	err := d.asReader(ctx, u, func(tx *sqlx.Tx) error {
		return domainError(tx.SelectContext(ctx, &rows, spendQuery,
			u.TeamID(), from.Format(time.DateOnly), to.Format(time.DateOnly)), "spend")
	})
	return rows, err
}

// SyncerSpend is Spend for the syncer: the user's daily spend rows for the
// days from..to, read as tokka_syncer.
func (d *DB) SyncerSpend(ctx context.Context, userID string, from, to time.Time) ([]tokka.SpendRow, error) {
	rows := []tokka.SpendRow{}
	err := d.asSyncer(ctx, func(tx *sqlx.Tx) error {
		return domainError(tx.SelectContext(ctx, &rows, spendQuery,
			userID, from.Format(time.DateOnly), to.Format(time.DateOnly)), "spend")
	})
	return rows, err
}

// BudgetsToEvaluate returns every budget of the user, read as tokka_syncer.
func (d *DB) BudgetsToEvaluate(ctx context.Context, userID string) ([]tokka.Budget, error) {
	var bs []budgetRow
	err := d.asSyncer(ctx, func(tx *sqlx.Tx) error {
		return domainError(tx.SelectContext(ctx, &bs, `
			SELECT `+budgetColumns+` FROM tokka.budgets
			WHERE team_id = $1 ORDER BY created_at, id`, userID), "budgets")
	})
	return budgets(bs), err
}

// RaiseBudgetAlert stores a (as the syncer) for budget budgetID unless the
// user already has an alert with its DedupKey, and, only when it is new,
// queues one pending delivery per channel in the same transaction. It
// reports whether the alert is new. A budget deleted meanwhile gets its alert
// but no deliveries.
func (d *DB) RaiseBudgetAlert(ctx context.Context, a tokka.Alert, budgetID string, channels []string) (bool, error) {
	if a.Severity == "" {
		a.Severity = "warning"
	}
	if len(a.Detail) == 0 {
		a.Detail = json.RawMessage(`{}`)
	}
	var created bool
	err := d.asSyncer(ctx, func(tx *sqlx.Tx) error {
		var id int64
		err := tx.GetContext(ctx, &id, `
			INSERT INTO tokka.alerts (team_id, kind, severity, connection_id, dedup_key, title, detail)
			VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (team_id, dedup_key) DO NOTHING
			RETURNING id`,
			a.TeamID, a.Kind, a.Severity, a.ConnectionID, a.DedupKey, a.Title, string(a.Detail))
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return domainError(err, "alert")
		}
		created = true
		if len(channels) == 0 {
			return nil
		}
		_, err = tx.ExecContext(ctx, `
			INSERT INTO tokka.budget_deliveries (team_id, budget_id, alert_id, channel)
			SELECT b.team_id, b.id, $2, ch FROM tokka.budgets b, unnest($3::text[]) AS ch
			WHERE b.id = $1 AND b.team_id = $4`,
			budgetID, id, pq.Array(channels), a.TeamID)
		return domainError(err, "deliveries")
	})
	return created, err
}

// ClaimDeliveries claims up to n of the user's deliveries that are pending,
// or were claimed by a syncer whose claim expired, for owner until leaseFor
// from now. FOR UPDATE SKIP LOCKED lets several syncers claim at once without
// ever sending the same delivery twice.
func (d *DB) ClaimDeliveries(ctx context.Context, userID, owner string, n int, leaseFor time.Duration) ([]tokka.PendingDelivery, error) {
	var rows []struct {
		tokka.PendingDelivery
		Secret string  `db:"webhook_secret"`
		Slack  *string `db:"slack_url"`
	}
	err := d.asSyncer(ctx, func(tx *sqlx.Tx) error {
		return domainError(tx.SelectContext(ctx, &rows, `
			WITH claimed AS (
				UPDATE tokka.budget_deliveries bd
				SET status = 'sending', claimed_by = $2,
					claim_expires_at = now() + make_interval(secs => $4), updated_at = now()
				FROM (
					SELECT id FROM tokka.budget_deliveries
					WHERE team_id = $1
					  AND (status = 'pending' OR (status = 'sending' AND claim_expires_at < now()))
					ORDER BY id
					LIMIT $3
					FOR UPDATE SKIP LOCKED
				) due
				WHERE bd.id = due.id
				RETURNING bd.id, bd.channel, bd.attempts, bd.budget_id, bd.alert_id
			)
			SELECT c.id, c.channel, c.attempts, c.budget_id, b.name AS budget_name, b.webhook_url,
				b.email_to, b.webhook_secret, b.slack_url, a.id AS alert_id, a.kind AS alert_kind,
				a.severity AS alert_severity, a.title AS alert_title, a.detail AS alert_detail,
				a.created_at AS alert_created_at
			FROM claimed c
			JOIN tokka.budgets b ON b.id = c.budget_id
			JOIN tokka.alerts a ON a.id = c.alert_id
			ORDER BY c.id`, userID, owner, n, leaseFor.Seconds()), "claim deliveries")
	})
	if err != nil {
		return nil, err
	}
	out := make([]tokka.PendingDelivery, len(rows))
	for i, r := range rows {
		out[i] = r.PendingDelivery
		out[i].WebhookSecret = secret.FromString(r.Secret)
		if r.Slack != nil {
			out[i].SlackURL = secret.FromString(*r.Slack)
		}
	}
	return out, nil
}

// FinishDelivery records r, only while r.Owner still holds the claim; a
// delivery reclaimed by another syncer is left alone.
func (d *DB) FinishDelivery(ctx context.Context, r tokka.DeliveryResult) error {
	var status, reason any
	if r.ResponseStatus != 0 {
		status = r.ResponseStatus
	}
	if r.Reason != "" {
		reason = truncate(r.Reason, 300)
	}
	return d.asSyncer(ctx, func(tx *sqlx.Tx) error {
		_, err := tx.ExecContext(ctx, `
			UPDATE tokka.budget_deliveries SET
				status = $3, attempts = attempts + $4, response_status = $5, last_error = $6,
				delivered_at = CASE WHEN $3 = 'delivered' THEN now() END,
				claimed_by = NULL, claim_expires_at = NULL, updated_at = now()
			WHERE id = $1 AND claimed_by = $2 AND status = 'sending'`,
			r.ID, r.Owner, r.Status, r.Attempts, status, reason)
		return domainError(err, "finish delivery")
	})
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n])
}
