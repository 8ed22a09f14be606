package budget

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/shopspring/decimal"

	"github.com/tokka-dev/tokka/pkg/notify"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// Store is the storage the evaluator needs, all as role tokka_syncer;
// *postgres.DB implements it.
type Store interface {
	BudgetsToEvaluate(ctx context.Context, userID string) ([]tokka.Budget, error)
	SyncerSpend(ctx context.Context, userID string, from, to time.Time) ([]tokka.SpendRow, error)
	RaiseBudgetAlert(ctx context.Context, a tokka.Alert, budgetID string, channels []string) (bool, error)
	RaiseAlert(ctx context.Context, a tokka.Alert) (bool, error)
	ClaimDeliveries(ctx context.Context, userID, owner string, n int, leaseFor time.Duration) ([]tokka.PendingDelivery, error)
	FinishDelivery(ctx context.Context, r tokka.DeliveryResult) error
}

// WebhookSender posts a signed webhook, or a Slack message, through the
// SSRF guard with retries; *notify.Webhook implements it.
type WebhookSender interface {
	Send(ctx context.Context, m notify.WebhookMessage) (attempts, status int, err error)
	SendSlack(ctx context.Context, m notify.SlackMessage) (attempts, status int, err error)
}

// EmailSender sends one email; *notify.Mailer implements it.
type EmailSender interface {
	Send(ctx context.Context, e notify.Email) error
}

// Config tunes the evaluator; zero values take the documented defaults.
type Config struct {
	// Instance names this syncer in delivery claims.
	Instance string
	Anomaly  AnomalyConfig
	// MinForecastDays is how many complete days the forecast's rate must
	// average before a forecast alert may fire; default 3.
	MinForecastDays int
	// ClaimFor is how long a claimed delivery is this syncer's before
	// another may retry it (a crash mid-send); default 5m, well above the
	// webhook sender's worst case.
	ClaimFor time.Duration
	// EmailAttempts bounds tries per email; default 3, waiting EmailBackoff
	// (default 2s), then twice that.
	EmailAttempts int
	EmailBackoff  time.Duration
	// AppURL (PUBLIC_APP_URL) is where people open Tokka, without a
	// trailing slash; Slack messages link to AppURL/budgets/<id>. Empty:
	// no link.
	AppURL string
}

func (c *Config) defaults() {
	c.Anomaly.defaults()
	if c.MinForecastDays <= 0 {
		c.MinForecastDays = 3
	}
	if c.ClaimFor <= 0 {
		c.ClaimFor = 5 * time.Minute
	}
	if c.EmailAttempts <= 0 {
		c.EmailAttempts = 3
	}
	if c.EmailBackoff <= 0 {
		c.EmailBackoff = 2 * time.Second
	}
	if c.Instance == "" {
		c.Instance = "budget-evaluator"
	}
}

// Evaluator raises budget and anomaly alerts for one user after each sync
// and delivers the budget alerts' notifications.
type Evaluator struct {
	cfg      Config
	store    Store
	webhooks WebhookSender
	mail     EmailSender
	log      zerolog.Logger
}

// New returns an Evaluator. webhooks or mail may be nil: deliveries on that
// channel are then recorded as failed with a reason saying so.
func New(cfg Config, store Store, webhooks WebhookSender, mail EmailSender, log zerolog.Logger) *Evaluator {
	cfg.defaults()
	return &Evaluator{cfg: cfg, store: store, webhooks: webhooks, mail: mail, log: log}
}

// AfterSync evaluates every budget of userID and the user's recent spend
// for anomalies at now, raises the alerts that are due (each at most once:
// the alert's dedup key), and delivers pending notifications. Calling it
// again changes nothing. It returns an error when storage failed; delivery
// failures are recorded on the deliveries, logged, and not returned.
func (e *Evaluator) AfterSync(ctx context.Context, userID string, now time.Time) error {
	now = now.UTC()
	sFrom, to := tokka.BudgetStatusRange(now)
	aFrom, _ := AnomalyRange(now, e.cfg.Anomaly)
	from := sFrom
	if aFrom.Before(from) {
		from = aFrom
	}
	rows, err := e.store.SyncerSpend(ctx, userID, from, to)
	if err != nil {
		return fmt.Errorf("budget: read spend: %w", err)
	}
	budgets, err := e.store.BudgetsToEvaluate(ctx, userID)
	if err != nil {
		return fmt.Errorf("budget: read budgets: %w", err)
	}
	var errs []error
	for _, b := range budgets {
		if err := e.evaluateBudget(ctx, b, rows, now); err != nil {
			errs = append(errs, err)
		}
	}
	if err := e.raiseAnomalies(ctx, userID, rows, now); err != nil {
		errs = append(errs, err)
	}
	if err := e.Deliver(ctx, userID); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// DedupKey returns the alert dedup key of a budget threshold (kind
// "threshold" or "forecast"). It includes the month, so thresholds re-arm
// every month, and the budget amount, so a budget raised (or lowered)
// mid-month re-arms its thresholds for the new amount: at $100 the 80% alert
// fired at $80; raised to $200 it fires again at $160. Returning to an
// amount already used that month does not repeat its alerts.
func DedupKey(b tokka.Budget, month, kind string, pct int64) string {
	return fmt.Sprintf("budget:%s:%s:%s:%d:amount:%s", b.ID, month, kind, pct, b.AmountUSD.String())
}

// budgetDetail is an alert's detail for a budget: figures only, never a
// secret or a destination.
type budgetDetail struct {
	BudgetID         string          `json:"budget_id"`
	BudgetName       string          `json:"budget_name"`
	Scope            string          `json:"scope"`
	Provider         *tokka.Provider `json:"provider"`
	ConnectionID     *string         `json:"connection_id"`
	Month            string          `json:"month"`
	ThresholdPercent int64           `json:"threshold_percent"`
	AmountUSD        decimal.Decimal `json:"amount_usd"`
	SpendUSD         decimal.Decimal `json:"spend_usd"`
	PercentUsed      decimal.Decimal `json:"percent_used"`
	ForecastUSD      decimal.Decimal `json:"forecast_usd"`
	DailyRateUSD     decimal.Decimal `json:"daily_rate_usd"`
	RateDays         int             `json:"rate_days"`
}

func (e *Evaluator) evaluateBudget(ctx context.Context, b tokka.Budget, rows []tokka.SpendRow, now time.Time) error {
	st := b.Status(rows, now)
	var channels []string
	if b.WebhookURL != nil {
		channels = append(channels, tokka.ChannelWebhook)
	}
	if b.EmailTo != nil {
		channels = append(channels, tokka.ChannelEmail)
	}
	if b.SlackURLHint != nil {
		channels = append(channels, tokka.ChannelSlack)
	}
	detail := budgetDetail{
		BudgetID: b.ID, BudgetName: b.Name, Scope: b.Scope, Provider: b.Provider, ConnectionID: b.ConnectionID,
		Month: st.Month, AmountUSD: b.AmountUSD, SpendUSD: st.SpendUSD, PercentUsed: st.PercentUsed,
		ForecastUSD: st.ForecastUSD, DailyRateUSD: st.DailyRateUSD, RateDays: st.RateDays,
	}

	// Thresholds, highest first. Every crossed threshold gets its alert, but
	// only the highest one crossed gets notifications, and only when it is
	// new: a budget created (or lowered) past 50% and 80% at once sends one
	// message, for 80%, not two.
	var actual []int64
	for _, p := range descending(b.Thresholds) {
		if crossed(st.SpendUSD, b.AmountUSD, p) {
			actual = append(actual, p)
		}
	}
	send := true
	for _, p := range actual {
		d := detail
		d.ThresholdPercent = p
		sev := "warning"
		if p >= 100 {
			sev = "critical"
		}
		title := fmt.Sprintf("Budget “%s” reached %d%% of $%s for %s ($%s spent)",
			b.Name, p, b.AmountUSD.StringFixed(2), st.Month, st.SpendUSD.StringFixed(2))
		if err := e.raise(ctx, b, tokka.AlertBudgetThreshold, sev, DedupKey(b, st.Month, "threshold", p), title, d, channels, send); err != nil {
			return err
		}
		send = false
	}

	// Forecast thresholds: the projection reaches pct while spend has not.
	if st.RateDays < e.cfg.MinForecastDays {
		return nil
	}
	send = true
	for _, p := range descending(b.ForecastThresholds) {
		if !crossed(st.ForecastUSD, b.AmountUSD, p) || crossed(st.SpendUSD, b.AmountUSD, p) {
			continue
		}
		d := detail
		d.ThresholdPercent = p
		title := fmt.Sprintf("Budget “%s” is projected to reach %d%% of $%s by the end of %s ($%s forecast)",
			b.Name, p, b.AmountUSD.StringFixed(2), st.Month, st.ForecastUSD.StringFixed(2))
		if err := e.raise(ctx, b, tokka.AlertBudgetForecast, "warning", DedupKey(b, st.Month, "forecast", p), title, d, channels, send); err != nil {
			return err
		}
		send = false
	}
	return nil
}

// raise stores one budget alert; with send, a new alert also queues a
// delivery per channel.
func (e *Evaluator) raise(ctx context.Context, b tokka.Budget, kind, severity, key, title string, d budgetDetail, channels []string, send bool) error {
	detail, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("budget: alert detail: %w", err)
	}
	if !send {
		channels = nil
	}
	created, err := e.store.RaiseBudgetAlert(ctx, tokka.Alert{
		TeamID: b.TeamID, Kind: kind, Severity: severity, ConnectionID: b.ConnectionID,
		DedupKey: key, Title: title, Detail: detail,
	}, b.ID, channels)
	if err != nil {
		return fmt.Errorf("budget: raise alert for budget %s: %w", b.ID, err)
	}
	if created {
		e.log.Info().Str("team_id", b.TeamID).Str("budget_id", b.ID).Str("kind", kind).
			Int("channels", len(channels)).Msg("budget alert raised")
	}
	return nil
}

func descending(v []int64) []int64 {
	out := append([]int64(nil), v...)
	sort.Slice(out, func(i, j int) bool { return out[i] > out[j] })
	return out
}

// anomalyDetail is a spend anomaly alert's detail.
type anomalyDetail struct {
	Anomaly
	Rule string `json:"rule"`
}

func (e *Evaluator) raiseAnomalies(ctx context.Context, userID string, rows []tokka.SpendRow, now time.Time) error {
	c := e.cfg.Anomaly
	rule := fmt.Sprintf("spend > median + %s×MAD of the previous %d days (and of the same weekdays), ≥ %s× the median, and ≥ $%s above it",
		c.K.String(), c.BaselineDays, c.MinRatio.String(), c.MinUSD.String())
	for _, a := range DetectAnomalies(rows, now, c) {
		detail, err := json.Marshal(anomalyDetail{Anomaly: a, Rule: rule})
		if err != nil {
			return fmt.Errorf("budget: anomaly detail: %w", err)
		}
		what := "Spend"
		switch a.Kind {
		case AnomalyProvider:
			what = "Spend on " + a.Provider
		case AnomalyModel:
			what = "Spend on " + a.Provider + " " + a.Model
		}
		title := fmt.Sprintf("%s on %s ($%s) is far above normal ($%s a day)",
			what, a.Day, a.SpendUSD.StringFixed(2), a.MedianUSD.StringFixed(2))
		created, err := e.store.RaiseAlert(ctx, tokka.Alert{
			TeamID: userID, Kind: tokka.AlertSpendAnomaly, Severity: "warning",
			DedupKey: "anomaly:" + a.key() + ":" + a.Day, Title: title, Detail: detail,
		})
		if err != nil {
			return fmt.Errorf("budget: raise anomaly alert: %w", err)
		}
		if created {
			e.log.Info().Str("team_id", userID).Str("day", a.Day).Str("scope", a.Kind).Msg("spend anomaly raised")
		}
	}
	return nil
}

// payload is the webhook body: the alert, nothing else (no secret, no
// destination, no key material).
type payload struct {
	ID        string       `json:"id"`
	Type      string       `json:"type"`
	CreatedAt time.Time    `json:"created_at"`
	Alert     payloadAlert `json:"alert"`
}

type payloadAlert struct {
	ID       int64           `json:"id"`
	Kind     string          `json:"kind"`
	Severity string          `json:"severity"`
	Title    string          `json:"title"`
	Detail   json.RawMessage `json:"detail"`
}

func eventType(kind string) string {
	return "budget." + strings.TrimPrefix(kind, "budget_")
}

// Deliver sends userID's pending notifications (including ones a crashed
// syncer left claimed past their claim) and records each outcome. It
// returns an error only when storage failed.
func (e *Evaluator) Deliver(ctx context.Context, userID string) error {
	for round := 0; round < 10; round++ {
		ds, err := e.store.ClaimDeliveries(ctx, userID, e.cfg.Instance, 20, e.cfg.ClaimFor)
		if err != nil {
			return fmt.Errorf("budget: claim deliveries: %w", err)
		}
		if len(ds) == 0 {
			return nil
		}
		for _, d := range ds {
			res := e.deliver(ctx, d)
			d.WebhookSecret.Wipe()
			d.SlackURL.Wipe()
			if err := e.store.FinishDelivery(context.WithoutCancel(ctx), res); err != nil {
				return fmt.Errorf("budget: record delivery: %w", err)
			}
		}
	}
	return nil
}

func (e *Evaluator) deliver(ctx context.Context, d tokka.PendingDelivery) tokka.DeliveryResult {
	res := tokka.DeliveryResult{ID: d.ID, Owner: e.cfg.Instance, Status: tokka.DeliveryFailed}
	log := e.log.With().Int64("delivery_id", d.ID).Str("budget_id", d.BudgetID).Str("channel", d.Channel).Logger()
	fail := func(reason string) tokka.DeliveryResult {
		res.Reason = reason
		log.Warn().Str("reason", reason).Int("attempts", res.Attempts).Msg("budget notification not delivered")
		return res
	}
	switch d.Channel {
	case "webhook":
		if d.WebhookURL == nil {
			return fail("the budget no longer has a webhook")
		}
		if e.webhooks == nil {
			return fail("webhooks are not configured on this Tokka server")
		}
		body, err := json.Marshal(payload{
			ID: strconv.FormatInt(d.ID, 10), Type: eventType(d.AlertKind), CreatedAt: d.AlertCreated.UTC(),
			Alert: payloadAlert{ID: d.AlertID, Kind: d.AlertKind, Severity: d.AlertSeverity, Title: d.AlertTitle, Detail: d.AlertDetail},
		})
		if err != nil {
			return fail("the notification could not be encoded")
		}
		attempts, status, err := e.webhooks.Send(ctx, notify.WebhookMessage{
			URL: *d.WebhookURL, Secret: d.WebhookSecret, Event: eventType(d.AlertKind),
			DeliveryID: strconv.FormatInt(d.ID, 10), Body: body,
		})
		res.Attempts, res.ResponseStatus = attempts, status
		if err != nil {
			return fail(notify.Reason(err))
		}
	case "email":
		if d.EmailTo == nil {
			return fail("email notifications were turned off for this budget")
		}
		if e.mail == nil {
			return fail("email is not configured on this Tokka server")
		}
		msg := notify.Email{To: *d.EmailTo, Subject: "[Tokka] " + d.AlertTitle, Body: emailBody(d)}
		wait := e.cfg.EmailBackoff
		for {
			res.Attempts++
			err := e.mail.Send(ctx, msg)
			if err == nil {
				break
			}
			var se *notify.SendError
			if !errors.As(err, &se) || !se.Retryable || res.Attempts >= e.cfg.EmailAttempts {
				return fail(notify.Reason(err))
			}
			select {
			case <-ctx.Done():
				return fail("delivery interrupted")
			case <-time.After(wait):
			}
			wait *= 2
		}
	case tokka.ChannelSlack:
		if d.SlackURL == nil {
			return fail("Slack notifications were turned off for this budget")
		}
		if e.webhooks == nil {
			return fail("webhooks are not configured on this Tokka server")
		}
		attempts, status, err := e.webhooks.SendSlack(ctx, notify.SlackMessage{
			URL: string(d.SlackURL.Bytes()), Payload: slackPayload(d, e.cfg.AppURL),
		})
		res.Attempts, res.ResponseStatus = attempts, status
		if err != nil {
			return fail(notify.Reason(err))
		}
	default:
		return fail("unknown channel")
	}
	res.Status = tokka.DeliveryDelivered
	log.Info().Int("attempts", res.Attempts).Msg("budget notification delivered")
	return res
}

// emailBody is the plain-text message: the alert's title and figures.
func emailBody(d tokka.PendingDelivery) string {
	var det budgetDetail
	_ = json.Unmarshal(d.AlertDetail, &det)
	var b strings.Builder
	b.WriteString(d.AlertTitle + "\n\n")
	fmt.Fprintf(&b, "Budget:            %s\n", d.BudgetName)
	fmt.Fprintf(&b, "Month:             %s (UTC)\n", det.Month)
	fmt.Fprintf(&b, "Budget amount:     $%s\n", det.AmountUSD.StringFixed(2))
	fmt.Fprintf(&b, "Spent so far:      $%s (%s%%)\n", det.SpendUSD.StringFixed(2), det.PercentUsed.String())
	fmt.Fprintf(&b, "Month-end forecast: $%s\n", det.ForecastUSD.StringFixed(2))
	fmt.Fprintf(&b, "Threshold:         %d%%\n\n", det.ThresholdPercent)
	b.WriteString("Tokka reads your providers' billing data; it cannot stop spend. To act, limit or revoke\n")
	b.WriteString("the API keys that are spending in your provider's console.\n\n")
	b.WriteString("You receive this because email notifications are on for this budget in Tokka.\n")
	return b.String()
}
