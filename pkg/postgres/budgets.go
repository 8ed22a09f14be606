package postgres

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/shopspring/decimal"

	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// Budget scopes.
const (
	ScopeAll        = "all"
	ScopeProvider   = "provider"
	ScopeConnection = "connection"
)

// Budget is a monthly budget as its owner sees it. It has no field for the
// webhook secret: role authenticated cannot even SELECT that column.
type Budget struct {
	ID                 string          `db:"id"`
	UserID             string          `db:"user_id"`
	Name               string          `db:"name"`
	AmountUSD          decimal.Decimal `db:"amount_usd"`
	Scope              string          `db:"scope"`
	Provider           *string         `db:"provider"`
	ConnectionID       *string         `db:"connection_id"`
	Thresholds         pq.Int64Array   `db:"thresholds"`
	ForecastThresholds pq.Int64Array   `db:"forecast_thresholds"`
	WebhookURL         *string         `db:"webhook_url"`
	EmailTo            *string         `db:"email_to"`
	CreatedAt          time.Time       `db:"created_at"`
	UpdatedAt          time.Time       `db:"updated_at"`
}

const budgetColumns = `id, user_id, name, amount_usd, scope, provider, connection_id, thresholds,
	forecast_thresholds, webhook_url, email_to, created_at, updated_at`

// NewBudget is what CreateBudget stores. The caller generates ID and
// WebhookSecret; the secret is written once and never read back by the api.
type NewBudget struct {
	ID                 string
	Name               string
	AmountUSD          decimal.Decimal
	Scope              string
	Provider           *string
	ConnectionID       *string
	Thresholds         []int64
	ForecastThresholds []int64
	WebhookURL         *string
	WebhookSecret      *secret.Key
	EmailTo            *string
}

// MaxBudgetsPerUser caps how many budgets one user may have (each is
// evaluated after every sync of theirs).
const MaxBudgetsPerUser = 100

// CreateBudget stores nb for u. A connection scope must name one of u's own
// connections, otherwise it is a CodeInvalid error on field connection_id
// (the same for a connection that does not exist and one that is not u's);
// a user who already has MaxBudgetsPerUser budgets gets CodeInvalid too.
func (d *DB) CreateBudget(ctx context.Context, u tokka.User, nb NewBudget) (Budget, error) {
	var b Budget
	err := d.asUser(ctx, u, func(tx *sqlx.Tx) error {
		var n int
		if err := tx.GetContext(ctx, &n, `SELECT count(*) FROM tokka.budgets WHERE user_id = $1`, u.ID); err != nil {
			return domainError(err, "budgets")
		}
		if n >= MaxBudgetsPerUser {
			return tokka.Errorf(tokka.CodeInvalid, "you already have %d budgets, the most allowed", MaxBudgetsPerUser)
		}
		if nb.ConnectionID != nil {
			if err := ownConnection(ctx, tx, *nb.ConnectionID); err != nil {
				return err
			}
		}
		return domainError(tx.GetContext(ctx, &b, `
			INSERT INTO tokka.budgets (id, user_id, name, amount_usd, scope, provider, connection_id,
				thresholds, forecast_thresholds, webhook_url, webhook_secret, email_to)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
			RETURNING `+budgetColumns,
			nb.ID, u.ID, nb.Name, nb.AmountUSD.String(), nb.Scope, nb.Provider, nb.ConnectionID,
			pq.Int64Array(nonNil(nb.Thresholds)), pq.Int64Array(nonNil(nb.ForecastThresholds)),
			nb.WebhookURL, string(nb.WebhookSecret.Bytes()), nb.EmailTo), "budget")
	})
	return b, err
}

func nonNil(s []int64) []int64 {
	if s == nil {
		return []int64{}
	}
	return s
}

// ownConnection checks, under the caller's row-level security, that id is
// one of their connections.
func ownConnection(ctx context.Context, tx *sqlx.Tx, id string) error {
	var one int
	err := tx.GetContext(ctx, &one, `SELECT 1 FROM tokka.connections WHERE id = $1`, id)
	if errors.Is(err, sql.ErrNoRows) {
		return &tokka.Error{Code: tokka.CodeInvalid, Field: "connection_id", Message: "connection_id is not one of your connections"}
	}
	return domainError(err, "connection")
}

// ListBudgets returns u's budgets, oldest first.
func (d *DB) ListBudgets(ctx context.Context, u tokka.User) ([]Budget, error) {
	bs := []Budget{}
	err := d.asReader(ctx, u, func(tx *sqlx.Tx) error {
		return domainError(tx.SelectContext(ctx, &bs, `
			SELECT `+budgetColumns+` FROM tokka.budgets
			WHERE user_id = $1 ORDER BY created_at, id`, u.ID), "budgets")
	})
	return bs, err
}

// GetBudget returns one of u's budgets; it is tokka.ErrNotFound for a budget
// that does not exist or is not u's (indistinguishably).
func (d *DB) GetBudget(ctx context.Context, u tokka.User, id string) (Budget, error) {
	var b Budget
	err := d.asReader(ctx, u, func(tx *sqlx.Tx) error {
		return domainError(tx.GetContext(ctx, &b, `
			SELECT `+budgetColumns+` FROM tokka.budgets WHERE id = $1`, id), "budget")
	})
	return b, err
}

// BudgetPatch is a partial update; nil fields are left as they are. The
// scope is immutable: what "fired" means depends on it.
type BudgetPatch struct {
	Name               *string
	AmountUSD          *decimal.Decimal
	Thresholds         *[]int64
	ForecastThresholds *[]int64
	// SetChannels replaces WebhookURL and EmailTo together (nil = off).
	SetChannels   bool
	WebhookURL    *string
	EmailTo       *string
	WebhookSecret *secret.Key // a rotated secret, or nil to keep the old one
}

// UpdateBudget applies p to one of u's budgets and returns the result; it is
// tokka.ErrNotFound for a budget that is not u's.
func (d *DB) UpdateBudget(ctx context.Context, u tokka.User, id string, p BudgetPatch) (Budget, error) {
	var b Budget
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
		// The secret is set by a statement of its own: role authenticated
		// may write that column but not read it, and coalesce() would read.
		if newSecret != nil {
			if _, err := tx.ExecContext(ctx, `UPDATE tokka.budgets SET webhook_secret = $2 WHERE id = $1`,
				id, newSecret); err != nil {
				return domainError(err, "budget")
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
	return b, err
}

// DeleteBudget deletes one of u's budgets and its delivery records (the
// alerts it raised stay in the alert list); it is tokka.ErrNotFound for a
// budget that is not u's.
func (d *DB) DeleteBudget(ctx context.Context, u tokka.User, id string) error {
	return d.asUser(ctx, u, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM tokka.budgets WHERE id = $1`, id)
		if err != nil {
			return domainError(err, "budget")
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return tokka.ErrNotFound
		}
		return nil
	})
}

// Delivery is one notification of a budget alert on one channel.
type Delivery struct {
	ID             int64      `db:"id"`
	BudgetID       string     `db:"budget_id"`
	AlertID        int64      `db:"alert_id"`
	Channel        string     `db:"channel"`
	Status         string     `db:"status"`
	Attempts       int        `db:"attempts"`
	ResponseStatus *int       `db:"response_status"`
	LastError      *string    `db:"last_error"`
	CreatedAt      time.Time  `db:"created_at"`
	UpdatedAt      time.Time  `db:"updated_at"`
	DeliveredAt    *time.Time `db:"delivered_at"`
}

// ListBudgetDeliveries returns up to limit of the newest deliveries of one of
// u's budgets (empty for a budget that is not u's).
func (d *DB) ListBudgetDeliveries(ctx context.Context, u tokka.User, budgetID string, limit int) ([]Delivery, error) {
	ds := []Delivery{}
	err := d.asReader(ctx, u, func(tx *sqlx.Tx) error {
		return domainError(tx.SelectContext(ctx, &ds, `
			SELECT id, budget_id, alert_id, channel, status, attempts, response_status, last_error,
				created_at, updated_at, delivered_at
			FROM tokka.budget_deliveries WHERE budget_id = $1
			ORDER BY id DESC LIMIT $2`, budgetID, limit), "deliveries")
	})
	return ds, err
}

// SpendRow is one day's cost for one (provider, connection, model), summed
// over the providers' cost lines. Model is "" for lines that have none.
type SpendRow struct {
	Day          string          `db:"day"` // YYYY-MM-DD, UTC
	Provider     string          `db:"provider"`
	ConnectionID string          `db:"connection_id"`
	Model        string          `db:"model"`
	USD          decimal.Decimal `db:"usd"`
}

const spendQuery = `
	SELECT to_char(day, 'YYYY-MM-DD') AS day, provider, connection_id::text AS connection_id, model,
		sum(amount_usd) AS usd
	FROM tokka.cost_daily
	WHERE user_id = $1 AND day >= $2 AND day <= $3
	GROUP BY day, provider, connection_id, model
	ORDER BY day, provider, connection_id, model`

// Spend returns u's daily spend rows for the days from..to (inclusive, UTC),
// under u's row-level security.
func (d *DB) Spend(ctx context.Context, u tokka.User, from, to time.Time) ([]SpendRow, error) {
	rows := []SpendRow{}
	err := d.asReader(ctx, u, func(tx *sqlx.Tx) error {
		return domainError(tx.SelectContext(ctx, &rows, spendQuery,
			u.ID, from.Format(time.DateOnly), to.Format(time.DateOnly)), "spend")
	})
	return rows, err
}

// SyncerSpend is Spend for the syncer: the user's daily spend rows for the
// days from..to, read as tokka_syncer.
func (d *DB) SyncerSpend(ctx context.Context, userID string, from, to time.Time) ([]SpendRow, error) {
	rows := []SpendRow{}
	err := d.asSyncer(ctx, func(tx *sqlx.Tx) error {
		return domainError(tx.SelectContext(ctx, &rows, spendQuery,
			userID, from.Format(time.DateOnly), to.Format(time.DateOnly)), "spend")
	})
	return rows, err
}

// BudgetsToEvaluate returns every budget of the user, read as tokka_syncer.
func (d *DB) BudgetsToEvaluate(ctx context.Context, userID string) ([]Budget, error) {
	bs := []Budget{}
	err := d.asSyncer(ctx, func(tx *sqlx.Tx) error {
		return domainError(tx.SelectContext(ctx, &bs, `
			SELECT `+budgetColumns+` FROM tokka.budgets
			WHERE user_id = $1 ORDER BY created_at, id`, userID), "budgets")
	})
	return bs, err
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
			INSERT INTO tokka.alerts (user_id, kind, severity, connection_id, dedup_key, title, detail)
			VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (user_id, dedup_key) DO NOTHING
			RETURNING id`,
			a.UserID, a.Kind, a.Severity, a.ConnectionID, a.DedupKey, a.Title, string(a.Detail))
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
			INSERT INTO tokka.budget_deliveries (user_id, budget_id, alert_id, channel)
			SELECT b.user_id, b.id, $2, ch FROM tokka.budgets b, unnest($3::text[]) AS ch
			WHERE b.id = $1 AND b.user_id = $4`,
			budgetID, id, pq.Array(channels), a.UserID)
		return domainError(err, "deliveries")
	})
	return created, err
}

// PendingDelivery is a claimed delivery with what is needed to send it: the
// destination, the signing secret and the alert it announces.
type PendingDelivery struct {
	ID            int64           `db:"id"`
	Channel       string          `db:"channel"`
	Attempts      int             `db:"attempts"`
	BudgetID      string          `db:"budget_id"`
	BudgetName    string          `db:"budget_name"`
	WebhookURL    *string         `db:"webhook_url"`
	EmailTo       *string         `db:"email_to"`
	AlertID       int64           `db:"alert_id"`
	AlertKind     string          `db:"alert_kind"`
	AlertSeverity string          `db:"alert_severity"`
	AlertTitle    string          `db:"alert_title"`
	AlertDetail   json.RawMessage `db:"alert_detail"`
	AlertCreated  time.Time       `db:"alert_created_at"`
	// WebhookSecret signs the webhook body; it redacts itself when printed
	// and the caller wipes it after use.
	WebhookSecret *secret.Key `db:"-"`
}

// ClaimDeliveries claims up to n of the user's deliveries that are pending,
// or were claimed by a syncer whose claim expired, for owner until leaseFor
// from now. FOR UPDATE SKIP LOCKED lets several syncers claim at once without
// ever sending the same delivery twice.
func (d *DB) ClaimDeliveries(ctx context.Context, userID, owner string, n int, leaseFor time.Duration) ([]PendingDelivery, error) {
	var rows []struct {
		PendingDelivery
		Secret string `db:"webhook_secret"`
	}
	err := d.asSyncer(ctx, func(tx *sqlx.Tx) error {
		return domainError(tx.SelectContext(ctx, &rows, `
			WITH claimed AS (
				UPDATE tokka.budget_deliveries bd
				SET status = 'sending', claimed_by = $2,
					claim_expires_at = now() + make_interval(secs => $4), updated_at = now()
				FROM (
					SELECT id FROM tokka.budget_deliveries
					WHERE user_id = $1
					  AND (status = 'pending' OR (status = 'sending' AND claim_expires_at < now()))
					ORDER BY id
					LIMIT $3
					FOR UPDATE SKIP LOCKED
				) due
				WHERE bd.id = due.id
				RETURNING bd.id, bd.channel, bd.attempts, bd.budget_id, bd.alert_id
			)
			SELECT c.id, c.channel, c.attempts, c.budget_id, b.name AS budget_name, b.webhook_url,
				b.email_to, b.webhook_secret, a.id AS alert_id, a.kind AS alert_kind,
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
	out := make([]PendingDelivery, len(rows))
	for i, r := range rows {
		out[i] = r.PendingDelivery
		out[i].WebhookSecret = secret.FromString(r.Secret)
	}
	return out, nil
}

// Delivery outcomes.
const (
	DeliveryPending   = "pending"
	DeliverySending   = "sending"
	DeliveryDelivered = "delivered"
	DeliveryFailed    = "failed"
)

// DeliveryResult is how one claimed delivery went.
type DeliveryResult struct {
	ID             int64
	Owner          string
	Status         string // DeliveryDelivered or DeliveryFailed
	Attempts       int    // made in this claim
	ResponseStatus int    // 0 when there was no HTTP response
	Reason         string // caller-safe; empty on success
}

// FinishDelivery records r, only while r.Owner still holds the claim; a
// delivery reclaimed by another syncer is left alone.
func (d *DB) FinishDelivery(ctx context.Context, r DeliveryResult) error {
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
