package budget_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"mime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/budget"
	"github.com/tokka-dev/tokka/pkg/egress"
	"github.com/tokka-dev/tokka/pkg/logtest"
	"github.com/tokka-dev/tokka/pkg/notify"
	"github.com/tokka-dev/tokka/pkg/notify/notifytest"
	"github.com/tokka-dev/tokka/pkg/pgtest"
	"github.com/tokka-dev/tokka/pkg/postgres"
	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/tokka"
	"github.com/tokka-dev/tokka/pkg/tokka/tokkatest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// now is the evaluations' clock: late in November 2026 (UTC).
var now = time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)

type testBundle struct {
	db    *postgres.DB
	sql   *sqlx.DB
	recv  *notifytest.Receiver
	slack *notifytest.Receiver // a fake of Slack's incoming webhooks
	smtp  *notifytest.SMTPServer
	res   *notifytest.Resolver
	logs  *logtest.Buffer
	ev    *budget.Evaluator
}

type setupOpts struct {
	statuses []int  // the webhook receiver's answers
	fresh    bool   // a database of its own (evaluations across users)
	instance string // the evaluator's claim owner
	slack    []notifytest.SlackAnswer
	appURL   string // PUBLIC_APP_URL
}

func setup(t *testing.T, o setupOpts) *testBundle {
	t.Helper()
	b := &testBundle{logs: &logtest.Buffer{}, res: notifytest.NewResolver()}
	if o.fresh {
		b.db, b.sql = pgtest.OpenURL(t, pgtest.Fresh(t))
	} else {
		b.db, b.sql = pgtest.Open(t), pgtest.SQL(t)
	}
	b.recv = notifytest.NewTLSReceiver(t, o.statuses...)
	b.slack = notifytest.NewSlackReceiver(t, o.slack...)
	b.smtp = notifytest.NewSMTPServer(t)
	roots := x509.NewCertPool()
	roots.AddCert(b.recv.Server.Certificate())
	webhooks := notify.NewWebhook(notify.WebhookConfig{
		Guard:   &egress.Guard{AllowLoopback: true, Resolver: b.res},
		RootCAs: roots, Attempts: 3, Backoff: time.Millisecond,
		SlackOrigin: b.slack.Server.URL,
	})
	smtpCfg, err := notify.ParseSMTPURL(b.smtp.URL("tokka", "relay-pw"), "alerts@tokka.test")
	require.NoError(t, err)
	log := zerolog.New(b.logs).Level(zerolog.DebugLevel)
	b.ev = budget.New(budget.Config{Instance: o.instance, EmailBackoff: time.Millisecond, AppURL: o.appURL},
		b.db, webhooks, notify.NewMailer(smtpCfg), log)
	return b
}

func (b *testBundle) newUser(t *testing.T) tokka.User {
	id := uuid.NewString()
	claims, err := json.Marshal(map[string]string{"sub": id, "role": "authenticated", "aud": "authenticated", "email": id[:8] + "@example.com"})
	require.NoError(t, err)
	return tokka.User{ID: id, Email: id[:8] + "@example.com", Claims: claims}
}

// The connection is not due for a sync, so no test's lease picks it up.
func (b *testBundle) newConnection(t *testing.T, u tokka.User, provider string) string {
	id := uuid.NewString()
	_, err := b.sql.Exec(`INSERT INTO tokka.connections (id, team_id, provider, label, key_hint, sealed_key, next_sync_at)
		VALUES ($1, $2, $3, 'test', 'sk-…test', 'v2:00:00:00', now() + interval '1 year')`, id, u.ID, provider)
	require.NoError(t, err)
	return id
}

// cost writes a cost line straight into cost_daily as the owner (the
// syncer's CompleteSync path is exercised in the httpapi budget test).
func (b *testBundle) cost(t *testing.T, u tokka.User, conn, provider, day, model, amount string) {
	_, err := b.sql.Exec(`INSERT INTO tokka.cost_daily (connection_id, team_id, provider, day, model, amount_usd, amount, currency)
		VALUES ($1, $2, $3, $4, $5, $6, $6, 'USD')`, conn, u.ID, provider, day, model, amount)
	require.NoError(t, err)
}

func (b *testBundle) budget(t *testing.T, u tokka.User, nb tokka.NewBudget) (tokka.Budget, string) {
	t.Helper()
	nb.ID = uuid.NewString()
	if nb.Name == "" {
		nb.Name = "Team “AI” spend"
	}
	if nb.Scope == "" {
		nb.Scope = tokka.ScopeAll
	}
	secretStr := "whsec_" + strings.ReplaceAll(uuid.NewString()+uuid.NewString(), "-", "")
	nb.WebhookSecret = secret.FromString(secretStr)
	bud, err := b.db.CreateBudget(context.Background(), u, nb)
	require.NoError(t, err)
	return bud, secretStr
}

func (b *testBundle) hookURL() *string { return new(b.recv.Server.URL + "/hooks/tokka") }

func (b *testBundle) alerts(t *testing.T, u tokka.User, kind string) []tokka.Alert {
	var as []tokka.Alert
	require.NoError(t, b.sql.Select(&as, `SELECT id, team_id, kind, severity, connection_id, dedup_key, title, detail,
		created_at, acknowledged_at FROM tokka.alerts WHERE team_id = $1 AND kind = $2 ORDER BY id`, u.ID, kind))
	return as
}

type webhookBody struct {
	ID        string    `json:"id"`
	Type      string    `json:"type"`
	CreatedAt time.Time `json:"created_at"`
	Alert     struct {
		ID       int64  `json:"id"`
		Kind     string `json:"kind"`
		Severity string `json:"severity"`
		Title    string `json:"title"`
		Detail   struct {
			BudgetID         string `json:"budget_id"`
			ThresholdPercent int    `json:"threshold_percent"`
			AmountUSD        string `json:"amount_usd"`
			SpendUSD         string `json:"spend_usd"`
			Month            string `json:"month"`
		} `json:"detail"`
	} `json:"alert"`
}

// webhooks returns the bodies received, each after verifying its signature.
func (b *testBundle) webhooks(t *testing.T, key string) []webhookBody {
	t.Helper()
	var out []webhookBody
	for _, r := range b.recv.Requests() {
		require.NoError(t, notify.VerifySignature([]byte(key), r.Header.Get(notify.HeaderSignature),
			r.Header.Get(notify.HeaderTimestamp), r.Body, time.Now(), 5*time.Minute), "every webhook is signed")
		var wb webhookBody
		require.NoError(t, json.Unmarshal(r.Body, &wb))
		require.Equal(t, wb.ID, r.Header.Get(notify.HeaderDelivery))
		require.Equal(t, wb.Type, r.Header.Get(notify.HeaderEvent))
		out = append(out, wb)
	}
	return out
}

func (b *testBundle) deliveries(t *testing.T, budgetID string) []tokka.Delivery {
	var ds []tokka.Delivery
	require.NoError(t, b.sql.Select(&ds, `SELECT id, budget_id, alert_id, channel, status, attempts, response_status,
		last_error, created_at, updated_at, delivered_at FROM tokka.budget_deliveries WHERE budget_id = $1 ORDER BY id`, budgetID))
	return ds
}

func TestThresholdsFireOnceEachWithSignedWebhooksAndEmails(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	ctx := context.Background()
	alice := b.newUser(t)
	conn := b.newConnection(t, alice, "anthropic")
	bud, key := b.budget(t, alice, tokka.NewBudget{
		AmountUSD: tokkatest.USD("100"), Thresholds: []int64{50, 80, 100}, ForecastThresholds: []int64{},
		WebhookURL: b.hookURL(), EmailTo: new(alice.Email),
	})

	steps := []struct {
		day, amount string
		threshold   int
		spend       string
	}{
		{"2026-11-02", "55.25", 50, "55.25"},
		{"2026-11-10", "30", 80, "85.25"},
		{"2026-11-19", "40.000001", 100, "125.250001"},
	}
	for i, s := range steps {
		b.cost(t, alice, conn, "anthropic", s.day, "claude-x", s.amount)
		// Each sync evaluates; evaluating again changes nothing.
		for range 3 {
			require.NoError(t, b.ev.AfterSync(ctx, alice.ID, now))
		}
		hooks := b.webhooks(t, key)
		require.Len(t, hooks, i+1, "one webhook per crossed threshold")
		h := hooks[i]
		require.Equal(t, "budget.threshold", h.Type)
		require.Equal(t, "budget_threshold", h.Alert.Kind)
		require.Equal(t, s.threshold, h.Alert.Detail.ThresholdPercent)
		require.Equal(t, bud.ID, h.Alert.Detail.BudgetID)
		require.Equal(t, "100", h.Alert.Detail.AmountUSD)
		require.Equal(t, s.spend, h.Alert.Detail.SpendUSD, "exact decimal")
		require.Equal(t, "2026-11", h.Alert.Detail.Month)
		require.Len(t, b.smtp.Messages(), i+1, "one email per crossed threshold")
	}
	hooks := b.webhooks(t, key)
	require.Equal(t, "warning", hooks[0].Alert.Severity)
	require.Equal(t, "critical", hooks[2].Alert.Severity)

	mails := b.smtp.Messages()
	for i, m := range mails {
		require.Equal(t, []string{alice.Email}, m.To)
		require.Equal(t, "alerts@tokka.test", m.From)
		require.Equal(t, "tokka", m.Username)
		require.True(t, strings.HasPrefix(subjectOf(t, m.Data), "[Tokka] Budget “Team “AI” spend” reached "+
			[]string{"50%", "80%", "100%"}[i]), subjectOf(t, m.Data))
		require.Contains(t, m.Data, "Threshold:         "+[]string{"50%", "80%", "100%"}[i])
	}

	as := b.alerts(t, alice, tokka.AlertBudgetThreshold)
	require.Len(t, as, 3)
	ds := b.deliveries(t, bud.ID)
	require.Len(t, ds, 6)
	for _, d := range ds {
		require.Equal(t, tokka.DeliveryDelivered, d.Status, d.Channel)
		require.Equal(t, 1, d.Attempts)
		require.NotNil(t, d.DeliveredAt)
		require.Nil(t, d.LastError)
	}

	// No secret anywhere it could leak: payloads, alert details, logs.
	for _, r := range b.recv.Requests() {
		require.NotContains(t, string(r.Body), key)
		require.NotContains(t, string(r.Body), "whsec_")
	}
	for _, a := range as {
		require.NotContains(t, string(a.Detail), "whsec_")
		require.NotContains(t, string(a.Detail), b.recv.Server.URL, "no destination in the alert")
	}
	for _, m := range mails {
		require.NotContains(t, m.Data, "whsec_")
	}
	require.NotContains(t, b.logs.String(), key)
	require.NotContains(t, b.logs.String(), "relay-pw")
	require.NotContains(t, b.logs.String(), b.recv.Server.URL)
}

func TestCrossingSeveralThresholdsAtOnceSendsOneMessage(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	ctx := context.Background()
	alice := b.newUser(t)
	conn := b.newConnection(t, alice, "openai")
	b.cost(t, alice, conn, "openai", "2026-11-05", "gpt-x", "90")
	bud, key := b.budget(t, alice, tokka.NewBudget{AmountUSD: tokkatest.USD("100"), Thresholds: []int64{50, 80, 100},
		WebhookURL: b.hookURL()})
	require.NoError(t, b.ev.AfterSync(ctx, alice.ID, now))
	require.Len(t, b.alerts(t, alice, tokka.AlertBudgetThreshold), 2, "50% and 80% are both on record")
	hooks := b.webhooks(t, key)
	require.Len(t, hooks, 1)
	require.Equal(t, 80, hooks[0].Alert.Detail.ThresholdPercent)
	require.Len(t, b.deliveries(t, bud.ID), 1)
	require.Empty(t, b.smtp.Messages(), "email is off for this budget")
}

func TestRaisingTheBudgetMidMonthRearmsItsThresholds(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	ctx := context.Background()
	alice := b.newUser(t)
	conn := b.newConnection(t, alice, "openai")
	bud, key := b.budget(t, alice, tokka.NewBudget{AmountUSD: tokkatest.USD("100"), Thresholds: []int64{50, 80, 100},
		ForecastThresholds: []int64{}, WebhookURL: b.hookURL()})
	thresholdsSent := func() (out []string) {
		for _, h := range b.webhooks(t, key) {
			out = append(out, h.Alert.Detail.AmountUSD+"@"+jsonInt(h.Alert.Detail.ThresholdPercent))
		}
		return out
	}

	b.cost(t, alice, conn, "openai", "2026-11-03", "gpt-x", "60")
	require.NoError(t, b.ev.AfterSync(ctx, alice.ID, now))
	require.Equal(t, []string{"100@50"}, thresholdsSent())

	// Raised to $200: $60 is 30%, nothing fires; at $110 (55%) the 50%
	// threshold fires again, for the new amount.
	_, err := b.db.UpdateBudget(ctx, alice, bud.ID, tokka.BudgetPatch{AmountUSD: new(tokkatest.USD("200"))})
	require.NoError(t, err)
	require.NoError(t, b.ev.AfterSync(ctx, alice.ID, now))
	require.Equal(t, []string{"100@50"}, thresholdsSent())
	b.cost(t, alice, conn, "openai", "2026-11-04", "gpt-x", "50")
	require.NoError(t, b.ev.AfterSync(ctx, alice.ID, now))
	require.NoError(t, b.ev.AfterSync(ctx, alice.ID, now))
	require.Equal(t, []string{"100@50", "200@50"}, thresholdsSent())

	// Back to $100 with $110 spent: 100% of $100 is new; 50% and 80% of $100
	// (the 50% already sent this month) are on record but not re-sent.
	_, err = b.db.UpdateBudget(ctx, alice, bud.ID, tokka.BudgetPatch{AmountUSD: new(tokkatest.USD("100.00"))})
	require.NoError(t, err)
	require.NoError(t, b.ev.AfterSync(ctx, alice.ID, now))
	require.Equal(t, []string{"100@50", "200@50", "100@100"}, thresholdsSent())

	// Next month everything re-arms.
	b.cost(t, alice, conn, "openai", "2026-12-01", "gpt-x", "55")
	require.NoError(t, b.ev.AfterSync(ctx, alice.ID, time.Date(2026, 12, 1, 18, 0, 0, 0, time.UTC)))
	require.Equal(t, []string{"100@50", "200@50", "100@100", "100@50"}, thresholdsSent())
}

func subjectOf(t *testing.T, data string) string {
	for _, line := range strings.Split(data, "\n") {
		if v, ok := strings.CutPrefix(line, "Subject: "); ok {
			s, err := new(mime.WordDecoder).DecodeHeader(v)
			require.NoError(t, err)
			return s
		}
	}
	return ""
}

func jsonInt(v int) string { b, _ := json.Marshal(v); return string(b) }

func TestForecastThresholdFiresOnceWhileSpendIsBelowIt(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	ctx := context.Background()
	alice := b.newUser(t)
	conn := b.newConnection(t, alice, "anthropic")
	for d := time.Date(2026, 10, 25, 0, 0, 0, 0, time.UTC); d.Before(now.Truncate(24 * time.Hour)); d = d.AddDate(0, 0, 1) {
		b.cost(t, alice, conn, "anthropic", d.Format(time.DateOnly), "claude-x", "50")
	}
	// $950 before today (19 days), $50/day × 11 days left → forecast $1500.
	bud, key := b.budget(t, alice, tokka.NewBudget{AmountUSD: tokkatest.USD("1200"), Thresholds: []int64{100},
		ForecastThresholds: []int64{100, 150}, WebhookURL: b.hookURL()})
	require.NoError(t, b.ev.AfterSync(ctx, alice.ID, now))
	require.NoError(t, b.ev.AfterSync(ctx, alice.ID, now))
	hooks := b.webhooks(t, key)
	require.Len(t, hooks, 1)
	require.Equal(t, "budget.forecast", hooks[0].Type)
	require.Equal(t, 100, hooks[0].Alert.Detail.ThresholdPercent)
	require.Contains(t, hooks[0].Alert.Title, "projected")
	as := b.alerts(t, alice, tokka.AlertBudgetForecast)
	require.Len(t, as, 1)
	var detail map[string]any
	require.NoError(t, json.Unmarshal(as[0].Detail, &detail))
	require.Equal(t, "1500", detail["forecast_usd"])
	require.Equal(t, "950", detail["spend_usd"])
	require.Equal(t, "50", detail["daily_rate_usd"])
	require.Len(t, b.deliveries(t, bud.ID), 1)
	require.Empty(t, b.alerts(t, alice, tokka.AlertBudgetThreshold))
}

func TestWebhookToAnAddressThatTurnedInternalIsRefusedAtSendTime(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	ctx := context.Background()
	for class, addr := range map[string]string{
		"metadata": "169.254.169.254", "private": "10.0.0.8", "CGNAT": "100.64.1.1", "v4-mapped": "::ffff:192.168.1.1",
		"link-local v6": "fe80::1", "unspecified": "0.0.0.0", "multicast": "239.1.1.1", "ULA": "fd00::1",
	} {
		t.Run(class, func(t *testing.T) {
			alice := b.newUser(t)
			conn := b.newConnection(t, alice, "openai")
			host := uuid.NewString()[:8] + ".rebind.test"
			// The name was public when the budget was saved; it now resolves
			// inside (first answer for the up-front check, second at dial).
			b.res.Set(host, []string{addr})
			bud, _ := b.budget(t, alice, tokka.NewBudget{AmountUSD: tokkatest.USD("10"), Thresholds: []int64{100},
				WebhookURL: new("https://" + host + "/hook"), EmailTo: new(alice.Email)})
			b.cost(t, alice, conn, "openai", "2026-11-05", "gpt-x", "11")
			before := len(b.recv.Requests())
			require.NoError(t, b.ev.AfterSync(ctx, alice.ID, now))
			require.Len(t, b.recv.Requests(), before)
			ds := b.deliveries(t, bud.ID)
			require.Len(t, ds, 2)
			byChannel := map[string]tokka.Delivery{ds[0].Channel: ds[0], ds[1].Channel: ds[1]}
			hook := byChannel["webhook"]
			require.Equal(t, tokka.DeliveryFailed, hook.Status)
			require.NotNil(t, hook.LastError)
			require.Contains(t, *hook.LastError, "refused")
			require.NotContains(t, *hook.LastError, addr)
			require.NotContains(t, *hook.LastError, host)
			require.Equal(t, tokka.DeliveryDelivered, byChannel["email"].Status, "the other channel still works")
		})
	}
}

func TestFailedDeliveryIsRecordedAndBounded(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{statuses: []int{500, 500, 500, 500, 500, 500}})
	ctx := context.Background()
	alice := b.newUser(t)
	conn := b.newConnection(t, alice, "openai")
	bud, _ := b.budget(t, alice, tokka.NewBudget{AmountUSD: tokkatest.USD("10"), Thresholds: []int64{100}, WebhookURL: b.hookURL()})
	b.cost(t, alice, conn, "openai", "2026-11-05", "gpt-x", "11")
	require.NoError(t, b.ev.AfterSync(ctx, alice.ID, now))
	require.NoError(t, b.ev.AfterSync(ctx, alice.ID, now))
	require.Len(t, b.recv.Requests(), 3, "three attempts, then it stops")
	ds := b.deliveries(t, bud.ID)
	require.Len(t, ds, 1)
	require.Equal(t, tokka.DeliveryFailed, ds[0].Status)
	require.Equal(t, 3, ds[0].Attempts)
	require.Equal(t, 500, *ds[0].ResponseStatus)
	require.Equal(t, "receiver answered HTTP 500", *ds[0].LastError)
}

func TestDeliveryLeftBehindByACrashedSyncerIsSentOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{instance: "syncer-b"})
	ctx := context.Background()
	alice := b.newUser(t)
	conn := b.newConnection(t, alice, "openai")
	bud, key := b.budget(t, alice, tokka.NewBudget{AmountUSD: tokkatest.USD("10"), Thresholds: []int64{100}, WebhookURL: b.hookURL()})
	b.cost(t, alice, conn, "openai", "2026-11-05", "gpt-x", "11")

	// Syncer A raised the alert and claimed the delivery, then died.
	created, err := b.db.RaiseBudgetAlert(ctx, tokka.Alert{TeamID: alice.ID, Kind: tokka.AlertBudgetThreshold,
		DedupKey: budget.DedupKey(bud, "2026-11", "threshold", 100), Title: "t", Detail: json.RawMessage(`{}`)},
		bud.ID, []string{"webhook"})
	require.NoError(t, err)
	require.True(t, created)
	claimed, err := b.db.ClaimDeliveries(ctx, alice.ID, "syncer-a", 10, time.Minute)
	require.NoError(t, err)
	require.Len(t, claimed, 1)
	require.Equal(t, "[REDACTED]", claimed[0].WebhookSecret.String(), "the secret redacts itself")

	// While A's claim is live, B leaves it alone.
	require.NoError(t, b.ev.AfterSync(ctx, alice.ID, now))
	require.Empty(t, b.recv.Requests())

	// A's claim expires; B sends it, once.
	_, err = b.sql.Exec(`UPDATE tokka.budget_deliveries SET claim_expires_at = now() - interval '1 second' WHERE id = $1`, claimed[0].ID)
	require.NoError(t, err)
	require.NoError(t, b.ev.AfterSync(ctx, alice.ID, now))
	require.NoError(t, b.ev.AfterSync(ctx, alice.ID, now))
	require.Len(t, b.webhooks(t, key), 1)
	// A's late report changes nothing.
	require.NoError(t, b.db.FinishDelivery(ctx, tokka.DeliveryResult{ID: claimed[0].ID, Owner: "syncer-a", Status: tokka.DeliveryFailed, Reason: "late"}))
	ds := b.deliveries(t, bud.ID)
	require.Equal(t, tokka.DeliveryDelivered, ds[0].Status)
}

func TestConcurrentEvaluationsSendEachNotificationOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	ctx := context.Background()
	alice := b.newUser(t)
	conn := b.newConnection(t, alice, "openai")
	_, key := b.budget(t, alice, tokka.NewBudget{AmountUSD: tokkatest.USD("10"), Thresholds: []int64{50, 100},
		WebhookURL: b.hookURL(), EmailTo: new(alice.Email)})
	b.cost(t, alice, conn, "openai", "2026-11-05", "gpt-x", "6")
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() { require.NoError(t, b.ev.AfterSync(ctx, alice.ID, now)) })
	}
	wg.Wait()
	require.Len(t, b.webhooks(t, key), 1)
	require.Len(t, b.smtp.Messages(), 1)
}

func TestAnomalyAlertFiresOnceForASpike(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	ctx := context.Background()
	alice := b.newUser(t)
	conn := b.newConnection(t, alice, "anthropic")
	end := now.Truncate(24 * time.Hour)
	for _, r := range normalRows(end.AddDate(0, 0, -1)) {
		b.cost(t, alice, conn, string(r.Provider), r.Day, r.Model, r.USD.String())
	}
	// Normal days: nothing, however often the syncer evaluates.
	for i := 3; i >= 1; i-- {
		require.NoError(t, b.ev.AfterSync(ctx, alice.ID, end.AddDate(0, 0, -i).Add(20*time.Hour)))
	}
	require.Empty(t, b.alerts(t, alice, tokka.AlertSpendAnomaly))

	b.cost(t, alice, conn, "anthropic", end.Format(time.DateOnly), "claude-big", "750")
	for range 3 {
		require.NoError(t, b.ev.AfterSync(ctx, alice.ID, now))
	}
	require.NoError(t, b.ev.AfterSync(ctx, alice.ID, now.Add(24*time.Hour)))
	as := b.alerts(t, alice, tokka.AlertSpendAnomaly)
	require.Len(t, as, 1, "one alert per anomaly, not one per sync")
	require.Equal(t, "anomaly:all:2026-11-20", as[0].DedupKey)
	require.Contains(t, as[0].Title, "2026-11-20")
	var detail struct {
		Scope     string `json:"scope"`
		Day       string `json:"day"`
		SpendUSD  string `json:"spend_usd"`
		MedianUSD string `json:"baseline_median_usd"`
		Rule      string `json:"rule"`
		Drivers   []struct {
			Scope, Provider, Model string
		} `json:"drivers"`
	}
	require.NoError(t, json.Unmarshal(as[0].Detail, &detail))
	require.Equal(t, "all", detail.Scope)
	require.Equal(t, "750", detail.SpendUSD)
	require.NotEmpty(t, detail.Rule)
	require.NotEmpty(t, detail.Drivers)
	require.Equal(t, "claude-big", detail.Drivers[0].Model)
	require.Empty(t, b.recv.Requests(), "anomalies are alerts, not budget notifications")
}

// TestEvaluationIsPerUser runs in a database of its own: several users'
// spend, budgets and deliveries side by side.
func TestEvaluationIsPerUser(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{fresh: true})
	ctx := context.Background()
	alice, bob := b.newUser(t), b.newUser(t)
	aConn, bConn := b.newConnection(t, alice, "openai"), b.newConnection(t, bob, "openai")
	_, aKey := b.budget(t, alice, tokka.NewBudget{AmountUSD: tokkatest.USD("100"), Thresholds: []int64{50}, WebhookURL: b.hookURL()})
	bBud, _ := b.budget(t, bob, tokka.NewBudget{AmountUSD: tokkatest.USD("100"), Thresholds: []int64{50}, WebhookURL: b.hookURL()})
	b.cost(t, bob, bConn, "openai", "2026-11-05", "gpt-x", "99")
	b.cost(t, alice, aConn, "openai", "2026-11-05", "gpt-x", "10")

	// Bob's alert is raised but his evaluation has not run: Alice's must
	// neither count his spend nor send his notification.
	_, err := b.db.RaiseBudgetAlert(ctx, tokka.Alert{TeamID: bob.ID, Kind: tokka.AlertBudgetThreshold,
		DedupKey: budget.DedupKey(bBud, "2026-11", "threshold", 50), Title: "bob"}, bBud.ID, []string{"webhook"})
	require.NoError(t, err)
	require.NoError(t, b.ev.AfterSync(ctx, alice.ID, now))
	require.Empty(t, b.recv.Requests())
	require.Empty(t, b.alerts(t, alice, tokka.AlertBudgetThreshold))

	b.cost(t, alice, aConn, "openai", "2026-11-06", "gpt-x", "45")
	require.NoError(t, b.ev.AfterSync(ctx, alice.ID, now))
	require.Len(t, b.webhooks(t, aKey), 1)

	// An alert cannot queue a delivery on another user's budget.
	_, err = b.db.RaiseBudgetAlert(ctx, tokka.Alert{TeamID: alice.ID, Kind: tokka.AlertBudgetThreshold,
		DedupKey: "cross-user", Title: "x"}, bBud.ID, []string{"webhook"})
	require.NoError(t, err)
	var n int
	require.NoError(t, b.sql.Get(&n, `SELECT count(*) FROM tokka.budget_deliveries WHERE team_id = $1`, alice.ID))
	require.Equal(t, 1, n)
}
