package tokka

import (
	"encoding/json"
	"time"

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
	TeamID             string          `db:"team_id"`
	Name               string          `db:"name"`
	AmountUSD          decimal.Decimal `db:"amount_usd"`
	Scope              string          `db:"scope"`
	Provider           *Provider       `db:"provider"`
	ConnectionID       *string         `db:"connection_id"`
	Thresholds         []int64         `db:"-"` // percentages of AmountUSD, ascending
	ForecastThresholds []int64         `db:"-"` // percentages the forecast is checked against
	WebhookURL         *string         `db:"webhook_url"`
	EmailTo            *string         `db:"email_to"`
	// SlackURLHint stands for the Slack webhook URL, which is a credential
	// the api can write but not read: https://hooks.slack.com/services/…
	// and its last four characters. Nil when the budget has no Slack channel.
	SlackURLHint *string   `db:"slack_url_hint"`
	CreatedAt    time.Time `db:"created_at"`
	UpdatedAt    time.Time `db:"updated_at"`
}

// NewBudget is what CreateBudget stores. The caller generates ID and
// WebhookSecret; the secret is written once and never read back by the api.
type NewBudget struct {
	ID                 string
	Name               string
	AmountUSD          decimal.Decimal
	Scope              string
	Provider           *Provider
	ConnectionID       *string
	Thresholds         []int64
	ForecastThresholds []int64
	WebhookURL         *string
	WebhookSecret      *secret.Key
	EmailTo            *string
	SlackURL           *string // a checked Slack incoming-webhook URL, or nil
}

// Notification channels, as budget_deliveries.channel names them.
const (
	ChannelWebhook = "webhook"
	ChannelEmail   = "email"
	ChannelSlack   = "slack"
)

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
	// SetChannels replaces WebhookURL, EmailTo and SlackURL together (nil =
	// off), except that a SlackHint keeps the Slack URL as it is.
	SetChannels   bool
	WebhookURL    *string
	EmailTo       *string
	SlackURL      *string
	WebhookSecret *secret.Key // a rotated secret, or nil to keep the old one
	// SlackHint, with SetChannels, keeps the stored Slack URL; it must be
	// the budget's current SlackURLHint (what a GET showed), otherwise the
	// update is a CodeInvalid error on field channels.slack_url.
	SlackHint *string
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
	Provider     Provider        `db:"provider"`
	ConnectionID string          `db:"connection_id"`
	Model        string          `db:"model"`
	USD          decimal.Decimal `db:"usd"`
}

// PendingDelivery is a claimed delivery with what is needed to send it: the
// destination, the signing secret and the alert it announces.
type PendingDelivery struct {
	ID         int64   `db:"id"`
	Channel    string  `db:"channel"`
	Attempts   int     `db:"attempts"`
	BudgetID   string  `db:"budget_id"`
	BudgetName string  `db:"budget_name"`
	WebhookURL *string `db:"webhook_url"`
	EmailTo    *string `db:"email_to"`
	// SlackURL is the Slack webhook URL (a credential); it redacts itself
	// when printed and the caller wipes it after use. Nil: no Slack channel.
	SlackURL      *secret.Key     `db:"-"`
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

// BudgetStatus is where a budget stands in the month containing now.
type BudgetStatus struct {
	Month        string          // YYYY-MM, UTC
	SpendUSD     decimal.Decimal // month to date, exact
	ForecastUSD  decimal.Decimal // projected month-end spend, rounded to cents
	PercentUsed  decimal.Decimal // SpendUSD / amount × 100, rounded to 2 places
	DailyRateUSD decimal.Decimal // the daily rate the forecast uses, rounded to 6 places
	RateDays     int             // complete days that rate averages (0 to ForecastRateDays)
}

// Matches reports whether a spend row falls inside b's scope.
func (b Budget) Matches(r SpendRow) bool {
	switch b.Scope {
	case ScopeAll:
		return true
	case ScopeProvider:
		return b.Provider != nil && *b.Provider == r.Provider
	case ScopeConnection:
		return b.ConnectionID != nil && *b.ConnectionID == r.ConnectionID
	}
	return false
}

func monthStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// BudgetStatusRange is the span of days Budget.Status needs rows for.
func BudgetStatusRange(now time.Time) (from, to time.Time) {
	today := startOfDay(now)
	from = monthStart(now)
	if w := today.AddDate(0, 0, -ForecastRateDays); w.Before(from) {
		from = w
	}
	return from, today
}

// Status computes b's status at now from the user's spend rows, which must
// cover BudgetStatusRange(now) (rows outside b's scope are ignored).
func (b Budget) Status(rows []SpendRow, now time.Time) BudgetStatus {
	today := startOfDay(now)
	start := monthStart(now)
	windowStart := today.AddDate(0, 0, -ForecastRateDays)
	var beforeToday, spend, window decimal.Decimal
	var first *time.Time
	for _, r := range rows {
		if !b.Matches(r) {
			continue
		}
		d, err := time.Parse(time.DateOnly, r.Day)
		if err != nil {
			continue
		}
		if first == nil || d.Before(*first) {
			first = &d
		}
		if !d.Before(start) && !d.After(today) {
			spend = spend.Add(r.USD)
			if d.Before(today) {
				beforeToday = beforeToday.Add(r.USD)
			}
		}
		if !d.Before(windowStart) && d.Before(today) {
			window = window.Add(r.USD)
		}
	}
	f := ForecastMonthEnd(now, beforeToday, spend, window, RateDays(today, first))
	s := BudgetStatus{Month: start.Format("2006-01"), SpendUSD: spend, ForecastUSD: f.MonthEndUSD,
		DailyRateUSD: f.DailyRateUSD, RateDays: f.RateDays}
	if b.AmountUSD.IsPositive() {
		s.PercentUsed = s.SpendUSD.Mul(hundred).Div(b.AmountUSD).Round(2)
	}
	return s
}

var hundred = decimal.NewFromInt(100)
