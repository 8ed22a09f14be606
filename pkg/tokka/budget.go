package tokka

import (
	"encoding/json"
	"time"

	"github.com/lib/pq"
	"github.com/shopspring/decimal"
	"github.com/tokka-dev/tokka/pkg/secret"
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

// SpendRow is one day's cost for one (provider, connection, model), summed
// over the providers' cost lines. Model is "" for lines that have none.
type SpendRow struct {
	Day          string          `db:"day"` // YYYY-MM-DD, UTC
	Provider     string          `db:"provider"`
	ConnectionID string          `db:"connection_id"`
	Model        string          `db:"model"`
	USD          decimal.Decimal `db:"usd"`
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
