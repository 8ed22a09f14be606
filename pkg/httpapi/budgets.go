package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/mail"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/shopspring/decimal"

	"github.com/tokka-dev/tokka/pkg/egress"
	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// BudgetStore is the storage the budget handlers need: budgets, their
// deliveries and the spend their status is computed from.
type BudgetStore interface {
	CreateBudget(ctx context.Context, u tokka.User, nb tokka.NewBudget) (tokka.Budget, error)
	ListBudgetsPage(ctx context.Context, u tokka.User, after *tokka.CreatedKey, limit int) ([]tokka.Budget, error)
	GetBudget(ctx context.Context, u tokka.User, id string) (tokka.Budget, error)
	UpdateBudget(ctx context.Context, u tokka.User, id string, p tokka.BudgetPatch) (tokka.Budget, error)
	DeleteBudget(ctx context.Context, u tokka.User, id string) error
	BudgetDeliveriesPage(ctx context.Context, u tokka.User, budgetID string, before int64, limit int) ([]tokka.Delivery, error)
	Spend(ctx context.Context, u tokka.User, from, to time.Time) ([]tokka.SpendRow, error)
}

// Budget limits.
const (
	maxThresholds       = 10
	maxThresholdPercent = 1000
)

var defaultThresholds = []int64{50, 80, 100}
var defaultForecastThresholds = []int64{100}

type budgetChannels struct {
	WebhookURL *string `json:"webhook_url"`
	Email      bool    `json:"email"`
	SlackURL   *string `json:"slack_url"`
}

type createBudgetRequest struct {
	Name               *string         `json:"name"`
	AmountUSD          string          `json:"amount_usd"`
	Scope              *string         `json:"scope"`
	Provider           *string         `json:"provider"`
	ConnectionID       *string         `json:"connection_id"`
	Thresholds         *[]int64        `json:"thresholds"`
	ForecastThresholds *[]int64        `json:"forecast_thresholds"`
	Channels           *budgetChannels `json:"channels"`
}

type patchBudgetRequest struct {
	Name                *string         `json:"name"`
	AmountUSD           *string         `json:"amount_usd"`
	Thresholds          *[]int64        `json:"thresholds"`
	ForecastThresholds  *[]int64        `json:"forecast_thresholds"`
	Channels            *budgetChannels `json:"channels"`
	RotateWebhookSecret bool            `json:"rotate_webhook_secret"`
}

type budgetChannelsResponse struct {
	WebhookURL *string `json:"webhook_url"`
	Email      bool    `json:"email"`
	EmailTo    *string `json:"email_to"`
	// SlackURL is the stored URL's hint, never the URL: it is a credential.
	SlackURL *string `json:"slack_url"`
}

type budgetStatusResponse struct {
	Month        string `json:"month"`
	SpendUSD     string `json:"spend_usd"`
	PercentUsed  string `json:"percent_used"`
	ForecastUSD  string `json:"forecast_usd"`
	DailyRateUSD string `json:"daily_rate_usd"`
	RateDays     int    `json:"rate_days"`
}

type deliveryResponse struct {
	ID             int64      `json:"id"`
	AlertID        int64      `json:"alert_id"`
	Channel        string     `json:"channel"`
	Status         string     `json:"status"`
	Attempts       int        `json:"attempts"`
	ResponseStatus *int       `json:"response_status"`
	LastError      *string    `json:"last_error"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
	DeliveredAt    *time.Time `json:"delivered_at"`
}

type budgetResponse struct {
	ID                 string                 `json:"id"`
	Name               string                 `json:"name"`
	AmountUSD          string                 `json:"amount_usd"`
	Scope              string                 `json:"scope"`
	Provider           *tokka.Provider        `json:"provider"`
	ConnectionID       *string                `json:"connection_id"`
	Thresholds         []int64                `json:"thresholds"`
	ForecastThresholds []int64                `json:"forecast_thresholds"`
	Channels           budgetChannelsResponse `json:"channels"`
	// WebhookSecret is set only in the response that created or rotated it.
	WebhookSecret string               `json:"webhook_secret,omitempty"`
	Status        budgetStatusResponse `json:"status"`
	CreatedAt     time.Time            `json:"created_at"`
	UpdatedAt     time.Time            `json:"updated_at"`
}

func toBudgetResponse(b tokka.Budget, st tokka.BudgetStatus) budgetResponse {
	return budgetResponse{
		ID: b.ID, Name: b.Name, AmountUSD: b.AmountUSD.String(), Scope: b.Scope,
		Provider: b.Provider, ConnectionID: b.ConnectionID,
		Thresholds: nonNilInts(b.Thresholds), ForecastThresholds: nonNilInts(b.ForecastThresholds),
		Channels: budgetChannelsResponse{WebhookURL: b.WebhookURL, Email: b.EmailTo != nil, EmailTo: b.EmailTo,
			SlackURL: b.SlackURLHint},
		Status: budgetStatusResponse{
			Month: st.Month, SpendUSD: st.SpendUSD.String(), PercentUsed: st.PercentUsed.String(),
			ForecastUSD: st.ForecastUSD.StringFixed(2), DailyRateUSD: st.DailyRateUSD.String(), RateDays: st.RateDays,
		},
		CreatedAt: b.CreatedAt, UpdatedAt: b.UpdatedAt,
	}
}

func nonNilInts(v []int64) []int64 {
	if v == nil {
		return []int64{}
	}
	return v
}

// budgetID parses the path id; a malformed one is a 404 like any other id
// the caller cannot see.
func budgetID(c echo.Context) (string, error) {
	return parseUUID(c.Param("id"))
}

// amountPattern is an exact, positive dollar amount: up to 12 integer digits
// and 6 decimal places, as a JSON string (never a float).
var amountPattern = regexp.MustCompile(`^[0-9]{1,12}(\.[0-9]{1,6})?$`)

func parseAmount(s string) (decimal.Decimal, error) {
	bad := &tokka.Error{Code: tokka.CodeInvalid, Field: "amount_usd",
		Message: `amount_usd must be a positive decimal string of dollars, like "500" or "1250.50"`}
	if !amountPattern.MatchString(s) {
		return decimal.Decimal{}, bad
	}
	d, err := decimal.NewFromString(s)
	if err != nil || !d.IsPositive() {
		return decimal.Decimal{}, bad
	}
	return d, nil
}

// validatePercents checks a threshold list and returns it sorted.
func validatePercents(field string, v []int64) ([]int64, error) {
	if len(v) > maxThresholds {
		return nil, &tokka.Error{Code: tokka.CodeInvalid, Field: field, Message: field + " may list at most 10 percentages"}
	}
	out := append([]int64{}, v...)
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	for i, p := range out {
		if p < 1 || p > maxThresholdPercent {
			return nil, &tokka.Error{Code: tokka.CodeInvalid, Field: field, Message: field + " must be whole percentages from 1 to 1000"}
		}
		if i > 0 && out[i-1] == p {
			return nil, &tokka.Error{Code: tokka.CodeInvalid, Field: field, Message: field + " must not repeat a percentage"}
		}
	}
	return out, nil
}

// checkedChannels are a request's channels once checked.
type checkedChannels struct {
	webhook, emailTo, slack *string
	// slackHint is set when the request sent back the hint of the stored
	// Slack URL (as a GET shows it), meaning "keep it".
	slackHint *string
}

// slackHintPrefix starts every Slack URL hint (see migration 00018).
const slackHintPrefix = "https://hooks.slack.com/services/…"

// channels validates the notification channels: the webhook URL against the
// SSRF guard (resolving its host now; the syncer checks again when it
// sends), the Slack URL as a Slack incoming webhook (and its host against
// the guard), and the email channel against the caller's confirmed address,
// which becomes the recipient (see notificationAddress). A Slack hint is
// accepted only where keep says a stored URL may be kept (PATCH).
func (s *Server) channels(c echo.Context, ch *budgetChannels, keep bool) (checkedChannels, error) {
	var out checkedChannels
	if ch == nil {
		return out, nil
	}
	// null, "" and white space alike mean no webhook.
	if ch.WebhookURL != nil && strings.TrimSpace(*ch.WebhookURL) != "" {
		u, err := s.webhookGuard().CheckURL(c.Request().Context(), *ch.WebhookURL)
		if err != nil {
			return out, &tokka.Error{Code: tokka.CodeInvalid, Field: "channels.webhook_url",
				Message: "channels.webhook_url is not allowed: " + egress.Reason(err)}
		}
		v := u.String()
		out.webhook = &v
	}
	// The same for Slack; the messages never quote the URL.
	if ch.SlackURL != nil && strings.TrimSpace(*ch.SlackURL) != "" {
		raw := strings.TrimSpace(*ch.SlackURL)
		switch {
		case strings.HasPrefix(raw, slackHintPrefix) && keep:
			out.slackHint = &raw
		case strings.HasPrefix(raw, slackHintPrefix):
			return out, &tokka.Error{Code: tokka.CodeInvalid, Field: "channels.slack_url",
				Message: "channels.slack_url is a masked URL; paste the full Slack webhook URL"}
		default:
			v, err := s.webhookGuard().CheckSlackURL(c.Request().Context(), raw)
			if err != nil {
				return out, &tokka.Error{Code: tokka.CodeInvalid, Field: "channels.slack_url",
					Message: "channels.slack_url is not allowed: " + egress.Reason(err)}
			}
			out.slack = &v
		}
	}
	if ch.Email {
		addr, err := s.notificationAddress(c)
		if err != nil {
			return out, err
		}
		out.emailTo = &addr
	}
	return out, nil
}

// notificationAddress returns where the caller's budget emails may go: with
// an Auth server, the address it reports and only if it reports it
// confirmed (email_confirmed_at; the answer of the live-session check that
// every budget save already made); without one, the token's email only if
// the token's user_metadata.email_verified is true. Otherwise the email
// channel is refused (400), so Tokka never mails spend figures to an
// address nobody proved they own.
func (s *Server) notificationAddress(c echo.Context) (string, error) {
	u := userOf(c)
	email, confirmed := u.Email, u.EmailVerified
	if s.cfg.Sessions != nil {
		live, err := s.liveSession(c)
		if err != nil {
			return "", err
		}
		email, confirmed = live.Email, live.EmailConfirmed
	}
	a, err := mail.ParseAddress(email)
	if err != nil || a.Address != email {
		return "", &tokka.Error{Code: tokka.CodeInvalid, Field: "channels.email",
			Message: "your account has no usable email address for notifications"}
	}
	if !confirmed {
		return "", &tokka.Error{Code: tokka.CodeInvalid, Field: "channels.email",
			Message: "your email address is not confirmed; confirm it through the link your sign-in provider sent, then turn email notifications on"}
	}
	return a.Address, nil
}

func (s *Server) webhookGuard() *egress.Guard {
	if s.cfg.WebhookGuard != nil {
		return s.cfg.WebhookGuard
	}
	return &egress.Guard{}
}

// newWebhookSecret returns a fresh signing secret, whsec_ + 64 hex digits
// (256 bits from the CSPRNG).
func newWebhookSecret() *secret.Key {
	var raw [32]byte
	_, _ = rand.Read(raw[:])
	buf := make([]byte, 0, 6+64)
	buf = append(buf, "whsec_"...)
	buf = hex.AppendEncode(buf, raw[:])
	clear(raw[:])
	k := secret.New(buf)
	clear(buf)
	return k
}

// statusesFor computes each budget's status from the caller's current spend.
func (s *Server) statusesFor(c echo.Context, bs []tokka.Budget) ([]tokka.BudgetStatus, error) {
	now := s.cfg.Now()
	from, to := tokka.BudgetStatusRange(now)
	rows, err := s.budgets.Spend(c.Request().Context(), userOf(c), from, to)
	if err != nil {
		return nil, err
	}
	out := make([]tokka.BudgetStatus, len(bs))
	for i, b := range bs {
		out[i] = b.Status(rows, now)
	}
	return out, nil
}

func (s *Server) budgetResponse(c echo.Context, b tokka.Budget) (budgetResponse, error) {
	st, err := s.statusesFor(c, []tokka.Budget{b})
	if err != nil {
		return budgetResponse{}, err
	}
	return toBudgetResponse(b, st[0]), nil
}

func (s *Server) listBudgets(c echo.Context) error {
	limit, after, err := createdPage(c, "budgets")
	if err != nil {
		return err
	}
	bs, err := s.budgets.ListBudgetsPage(c.Request().Context(), userOf(c), after, limit+1)
	if err != nil {
		return err
	}
	p := pageOf(bs, limit, "budgets", func(b tokka.Budget) []string { return createdKey(b.CreatedAt, b.ID) })
	sts, err := s.statusesFor(c, p.Data)
	if err != nil {
		return err
	}
	out := page[budgetResponse]{Data: make([]budgetResponse, len(p.Data)), HasMore: p.HasMore, NextCursor: p.NextCursor}
	for i, b := range p.Data {
		out.Data[i] = toBudgetResponse(b, sts[i])
	}
	return c.JSON(http.StatusOK, out)
}

// newBudget is a checked POST /v1/budgets; its channels are checked after
// the request is counted, since that looks things up (DNS, the Auth server).
type newBudget struct {
	budget   tokka.NewBudget
	channels *budgetChannels
}

func parseNewBudget(c echo.Context) (newBudget, error) {
	var req createBudgetRequest
	if err := decodeStrict(c, &req); err != nil {
		return newBudget{}, err
	}
	nb := tokka.NewBudget{ID: uuid.NewString()}
	var err error
	nb.Name = "Monthly budget" // the default, when name is left out
	if req.Name != nil {
		if nb.Name, err = cleanName("name", *req.Name); err != nil {
			return newBudget{}, err
		}
	}
	if nb.AmountUSD, err = parseAmount(req.AmountUSD); err != nil {
		return newBudget{}, err
	}
	nb.Scope = tokka.ScopeAll // the default, when scope is left out
	if req.Scope != nil {
		nb.Scope = *req.Scope
	}
	switch nb.Scope {
	case tokka.ScopeAll:
		if req.Provider != nil || req.ConnectionID != nil {
			return newBudget{}, &tokka.Error{Code: tokka.CodeInvalid, Field: "scope",
				Message: `scope "all" takes neither provider nor connection_id`}
		}
	case tokka.ScopeProvider:
		if req.Provider == nil || !tokka.Provider(*req.Provider).Valid() {
			return newBudget{}, &tokka.Error{Code: tokka.CodeInvalid, Field: "provider",
				Message: `scope "provider" needs provider "openai" or "anthropic"`}
		}
		if req.ConnectionID != nil {
			return newBudget{}, &tokka.Error{Code: tokka.CodeInvalid, Field: "connection_id",
				Message: `scope "provider" takes no connection_id`}
		}
		nb.Provider = (*tokka.Provider)(req.Provider)
	case tokka.ScopeConnection:
		if req.ConnectionID == nil {
			return newBudget{}, &tokka.Error{Code: tokka.CodeInvalid, Field: "connection_id",
				Message: `scope "connection" needs connection_id`}
		}
		id, err := parseUUID(*req.ConnectionID)
		if err != nil {
			return newBudget{}, &tokka.Error{Code: tokka.CodeInvalid, Field: "connection_id", Message: "connection_id is not one of your connections"}
		}
		if req.Provider != nil {
			return newBudget{}, &tokka.Error{Code: tokka.CodeInvalid, Field: "provider", Message: `scope "connection" takes no provider`}
		}
		nb.ConnectionID = &id
	default:
		return newBudget{}, &tokka.Error{Code: tokka.CodeInvalid, Field: "scope", Message: `scope must be "all", "provider" or "connection"`}
	}
	nb.Thresholds, nb.ForecastThresholds = defaultThresholds, defaultForecastThresholds
	if req.Thresholds != nil {
		if nb.Thresholds, err = validatePercents("thresholds", *req.Thresholds); err != nil {
			return newBudget{}, err
		}
	}
	if req.ForecastThresholds != nil {
		if nb.ForecastThresholds, err = validatePercents("forecast_thresholds", *req.ForecastThresholds); err != nil {
			return newBudget{}, err
		}
	}
	return newBudget{budget: nb, channels: req.Channels}, nil
}

func (s *Server) createBudget(c echo.Context) error {
	req := prepared[newBudget](c)
	nb := req.budget
	ch, err := s.channels(c, req.channels, false)
	if err != nil {
		return err
	}
	nb.WebhookURL, nb.EmailTo, nb.SlackURL = ch.webhook, ch.emailTo, ch.slack
	nb.WebhookSecret = newWebhookSecret()
	defer nb.WebhookSecret.Wipe()
	b, err := s.budgets.CreateBudget(c.Request().Context(), userOf(c), nb)
	if err != nil {
		return err
	}
	resp, err := s.budgetResponse(c, b)
	if err != nil {
		return err
	}
	// The only time the secret is shown: the api cannot read it back (and
	// a replay of this response for an Idempotency-Key leaves it out).
	resp.WebhookSecret = string(nb.WebhookSecret.Bytes())
	c.Response().Header().Set(echo.HeaderLocation, "/v1/budgets/"+b.ID)
	return c.JSON(http.StatusCreated, resp)
}

func (s *Server) getBudget(c echo.Context) error {
	id, err := budgetID(c)
	if err != nil {
		return err
	}
	b, err := s.budgets.GetBudget(c.Request().Context(), userOf(c), id)
	if err != nil {
		return err
	}
	resp, err := s.budgetResponse(c, b)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, resp)
}

// listBudgetDeliveries lists one budget's notification deliveries, newest
// first; a budget that is not the caller's is a 404.
func (s *Server) listBudgetDeliveries(c echo.Context) error {
	id, err := budgetID(c)
	if err != nil {
		return err
	}
	list := "deliveries:" + id // a cursor of one budget's deliveries is not another's
	limit, before, err := idPage(c, list)
	if err != nil {
		return err
	}
	ds, err := s.budgets.BudgetDeliveriesPage(c.Request().Context(), userOf(c), id, before, limit+1)
	if err != nil {
		return err
	}
	p := pageOf(ds, limit, list, func(d tokka.Delivery) []string { return idKey(d.ID) })
	out := page[deliveryResponse]{Data: make([]deliveryResponse, len(p.Data)), HasMore: p.HasMore, NextCursor: p.NextCursor}
	for i, d := range p.Data {
		out.Data[i] = deliveryResponse{
			ID: d.ID, AlertID: d.AlertID, Channel: d.Channel, Status: d.Status, Attempts: d.Attempts,
			ResponseStatus: d.ResponseStatus, LastError: d.LastError,
			CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt, DeliveredAt: d.DeliveredAt,
		}
	}
	return c.JSON(http.StatusOK, out)
}

// budgetUpdate is a checked PATCH /v1/budgets/{id}; its channels are
// checked after the request is counted (see newBudget).
type budgetUpdate struct {
	id       string
	patch    tokka.BudgetPatch
	channels *budgetChannels
	rotate   bool
}

func parseBudgetUpdate(c echo.Context) (budgetUpdate, error) {
	id, err := budgetID(c)
	if err != nil {
		return budgetUpdate{}, err
	}
	var req patchBudgetRequest
	if err := decodeStrict(c, &req); err != nil {
		return budgetUpdate{}, err
	}
	up := budgetUpdate{id: id, channels: req.Channels, rotate: req.RotateWebhookSecret}
	p := &up.patch
	if req.Name != nil {
		name, err := cleanName("name", *req.Name)
		if err != nil {
			return budgetUpdate{}, err
		}
		p.Name = &name
	}
	if req.AmountUSD != nil {
		a, err := parseAmount(*req.AmountUSD)
		if err != nil {
			return budgetUpdate{}, err
		}
		p.AmountUSD = &a
	}
	if req.Thresholds != nil {
		v, err := validatePercents("thresholds", *req.Thresholds)
		if err != nil {
			return budgetUpdate{}, err
		}
		p.Thresholds = &v
	}
	if req.ForecastThresholds != nil {
		v, err := validatePercents("forecast_thresholds", *req.ForecastThresholds)
		if err != nil {
			return budgetUpdate{}, err
		}
		p.ForecastThresholds = &v
	}
	if *p == (tokka.BudgetPatch{}) && up.channels == nil && !up.rotate {
		return budgetUpdate{}, tokka.Errorf(tokka.CodeInvalid,
			"nothing to change: send name, amount_usd, thresholds, forecast_thresholds, channels or rotate_webhook_secret: true")
	}
	return up, nil
}

func (s *Server) updateBudget(c echo.Context) error {
	req := prepared[budgetUpdate](c)
	p := req.patch
	if req.channels != nil {
		ch, err := s.channels(c, req.channels, true)
		if err != nil {
			return err
		}
		p.SetChannels = true
		p.WebhookURL, p.EmailTo, p.SlackURL, p.SlackHint = ch.webhook, ch.emailTo, ch.slack, ch.slackHint
	}
	if req.rotate {
		p.WebhookSecret = newWebhookSecret()
		defer p.WebhookSecret.Wipe()
	}
	b, err := s.budgets.UpdateBudget(c.Request().Context(), userOf(c), req.id, p)
	if err != nil {
		return err
	}
	resp, err := s.budgetResponse(c, b)
	if err != nil {
		return err
	}
	if p.WebhookSecret != nil {
		resp.WebhookSecret = string(p.WebhookSecret.Bytes())
	}
	return c.JSON(http.StatusOK, resp)
}

func (s *Server) deleteBudget(c echo.Context) error {
	if err := s.budgets.DeleteBudget(c.Request().Context(), userOf(c), *prepared[string](c)); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
