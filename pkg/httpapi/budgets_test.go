package httpapi_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/authtest"
	"github.com/tokka-dev/tokka/pkg/budget"
	"github.com/tokka-dev/tokka/pkg/egress"
	"github.com/tokka-dev/tokka/pkg/httpapi"
	"github.com/tokka-dev/tokka/pkg/logtest"
	"github.com/tokka-dev/tokka/pkg/notify"
	"github.com/tokka-dev/tokka/pkg/notify/notifytest"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// The connection is not due for a sync, so no test's lease picks it up.
func (b *testBundle) connection(t *testing.T, u user, p string) string {
	t.Helper()
	id := uuid.NewString()
	_, err := b.sql.Exec(`INSERT INTO tokka.connections (id, team_id, provider, label, key_hint, sealed_key, next_sync_at)
		VALUES ($1, $2, $3, 'org', 'sk-…abcd', 'v2:00', now() + interval '1 year')`, id, u.id, p)
	require.NoError(t, err)
	return id
}

type budgetJSON struct {
	ID                 string  `json:"id"`
	Name               string  `json:"name"`
	AmountUSD          string  `json:"amount_usd"`
	Scope              string  `json:"scope"`
	Provider           *string `json:"provider"`
	ConnectionID       *string `json:"connection_id"`
	Thresholds         []int   `json:"thresholds"`
	ForecastThresholds []int   `json:"forecast_thresholds"`
	Channels           struct {
		WebhookURL *string `json:"webhook_url"`
		Email      bool    `json:"email"`
		EmailTo    *string `json:"email_to"`
	} `json:"channels"`
	WebhookSecret string `json:"webhook_secret"`
	Status        struct {
		Month       string `json:"month"`
		SpendUSD    string `json:"spend_usd"`
		PercentUsed string `json:"percent_used"`
		ForecastUSD string `json:"forecast_usd"`
	} `json:"status"`
}

// deliveryJSON is one item of GET /v1/budgets/{id}/deliveries.
type deliveryJSON struct {
	Channel   string  `json:"channel"`
	Status    string  `json:"status"`
	Attempts  int     `json:"attempts"`
	LastError *string `json:"last_error"`
}

func decodeBudget(t *testing.T, body []byte) budgetJSON {
	t.Helper()
	var bj budgetJSON
	require.NoError(t, json.Unmarshal(body, &bj))
	return bj
}

func TestBudgetLifecycle(t *testing.T) {
	t.Parallel()
	b := setup(t, forBudgets())
	b.res.Set("hooks.example.com", []string{"93.184.216.34"})
	alice := b.newUser(t)
	conn := b.connection(t, alice, "anthropic")

	status, _, body := b.do(t, alice, http.MethodPost, "/v1/budgets", map[string]any{
		"name": "Claude prod", "amount_usd": "250.50", "scope": "connection", "connection_id": conn,
		"thresholds": []int{100, 50, 80}, "channels": map[string]any{"webhook_url": "https://hooks.example.com/tokka?team=ml", "email": true},
	})
	require.Equal(t, http.StatusCreated, status, string(body))
	created := decodeBudget(t, body)
	require.Regexp(t, `^whsec_[0-9a-f]{64}$`, created.WebhookSecret)
	require.Equal(t, "250.5", created.AmountUSD)
	require.Equal(t, []int{50, 80, 100}, created.Thresholds)
	require.Equal(t, []int{100}, created.ForecastThresholds, "default forecast threshold")
	require.Equal(t, conn, *created.ConnectionID)
	require.Equal(t, "https://hooks.example.com/tokka?team=ml", *created.Channels.WebhookURL)
	require.Equal(t, alice.email, *created.Channels.EmailTo, "the recipient is the token's email")
	require.Equal(t, "2026-11", created.Status.Month)
	require.Equal(t, "0", created.Status.SpendUSD)
	secret := created.WebhookSecret

	// The secret is never shown again.
	for _, path := range []string{"/v1/budgets", "/v1/budgets/" + created.ID} {
		status, _, body := b.do(t, alice, http.MethodGet, path, nil)
		require.Equal(t, http.StatusOK, status)
		require.NotContains(t, string(body), "whsec_")
		require.NotContains(t, string(body), "webhook_secret")
	}
	status, _, body = b.do(t, alice, http.MethodGet, "/v1/budgets/"+created.ID, nil)
	require.Equal(t, http.StatusOK, status)
	require.NotContains(t, string(body), "deliveries", "deliveries are a list of their own")
	status, _, body = b.do(t, alice, http.MethodGet, "/v1/budgets/"+created.ID+"/deliveries", nil)
	require.Equal(t, http.StatusOK, status)
	require.JSONEq(t, `{"data":[],"has_more":false,"next_cursor":null}`, string(body))

	// Spend shows in the status (exact decimal).
	_, err := b.sql.Exec(`INSERT INTO tokka.cost_daily (connection_id, team_id, provider, day, amount_usd, amount, currency)
		VALUES ($1, $2, 'anthropic', '2026-11-03', 100.2, 10020, 'USD')`, conn, alice.id)
	require.NoError(t, err)
	status, _, body = b.do(t, alice, http.MethodGet, "/v1/budgets", nil)
	require.Equal(t, http.StatusOK, status)
	var list struct {
		Budgets []budgetJSON `json:"data"`
	}
	require.NoError(t, json.Unmarshal(body, &list))
	require.Len(t, list.Budgets, 1)
	require.Equal(t, "100.2", list.Budgets[0].Status.SpendUSD)
	require.Equal(t, "40", list.Budgets[0].Status.PercentUsed)

	// PATCH: partial; channels replaced whole; no secret unless rotated.
	status, _, body = b.do(t, alice, http.MethodPatch, "/v1/budgets/"+created.ID, map[string]any{
		"amount_usd": "300", "forecast_thresholds": []int{}, "channels": map[string]any{"email": true},
	})
	require.Equal(t, http.StatusOK, status, string(body))
	patched := decodeBudget(t, body)
	require.Equal(t, "300", patched.AmountUSD)
	require.Equal(t, "Claude prod", patched.Name)
	require.Empty(t, patched.ForecastThresholds)
	require.Nil(t, patched.Channels.WebhookURL)
	require.True(t, patched.Channels.Email)
	require.Empty(t, patched.WebhookSecret)

	status, _, body = b.do(t, alice, http.MethodPatch, "/v1/budgets/"+created.ID, map[string]any{"rotate_webhook_secret": true})
	require.Equal(t, http.StatusOK, status)
	rotated := decodeBudget(t, body).WebhookSecret
	require.Regexp(t, `^whsec_[0-9a-f]{64}$`, rotated)
	require.NotEqual(t, secret, rotated)
	var stored string
	require.NoError(t, b.sql.Get(&stored, `SELECT webhook_secret FROM tokka.budgets WHERE id = $1`, created.ID))
	require.Equal(t, rotated, stored)

	for _, bad := range []string{`{"scope":"all"}`, `{"team_id":"` + uuid.NewString() + `"}`, `{"user_id":"` + uuid.NewString() + `"}`, `{"webhook_secret":"whsec_x"}`, `{"connection_id":null}`} {
		status, _, body := b.do(t, alice, http.MethodPatch, "/v1/budgets/"+created.ID, bad)
		require.Equal(t, http.StatusBadRequest, status, bad+" "+string(body))
	}

	status, _, _ = b.do(t, alice, http.MethodDelete, "/v1/budgets/"+created.ID, nil)
	require.Equal(t, http.StatusNoContent, status)
	status, _, _ = b.do(t, alice, http.MethodGet, "/v1/budgets/"+created.ID, nil)
	require.Equal(t, http.StatusNotFound, status)
	require.NotContains(t, b.logs.String(), "whsec_")
	require.NotContains(t, b.logs.String(), "hooks.example.com")
}

func TestCreateBudgetRejectsBadInput(t *testing.T) {
	t.Parallel()
	b := setup(t, forBudgets())
	alice := b.newUser(t)
	noEmail := b.newUser(t, func(tok *authtest.Token) { tok.Email = "" })
	bob := b.newUser(t)
	bobsConn := b.connection(t, bob, "openai")
	cases := []struct {
		name  string
		u     user
		body  string
		field string
	}{
		{"amount as a number", alice, `{"amount_usd":100}`, "amount_usd"},
		{"amount missing", alice, `{}`, "amount_usd"},
		{"amount zero", alice, `{"amount_usd":"0"}`, "amount_usd"},
		{"amount negative", alice, `{"amount_usd":"-5"}`, "amount_usd"},
		{"amount exponent", alice, `{"amount_usd":"1e3"}`, "amount_usd"},
		{"amount too precise", alice, `{"amount_usd":"1.0000001"}`, "amount_usd"},
		{"amount huge", alice, `{"amount_usd":"1000000000000"}`, "amount_usd"},
		{"unknown scope", alice, `{"amount_usd":"5","scope":"team"}`, "scope"},
		{"provider scope without provider", alice, `{"amount_usd":"5","scope":"provider"}`, "provider"},
		{"unknown provider", alice, `{"amount_usd":"5","scope":"provider","provider":"mistral"}`, "provider"},
		{"all scope with provider", alice, `{"amount_usd":"5","scope":"all","provider":"openai"}`, "scope"},
		{"connection scope without id", alice, `{"amount_usd":"5","scope":"connection"}`, "connection_id"},
		{"connection id not a uuid", alice, `{"amount_usd":"5","scope":"connection","connection_id":"x"}`, "connection_id"},
		{"someone else's connection", alice, `{"amount_usd":"5","scope":"connection","connection_id":"` + bobsConn + `"}`, "connection_id"},
		{"no such connection", alice, `{"amount_usd":"5","scope":"connection","connection_id":"` + uuid.NewString() + `"}`, "connection_id"},
		{"threshold zero", alice, `{"amount_usd":"5","thresholds":[0]}`, "thresholds"},
		{"threshold too high", alice, `{"amount_usd":"5","thresholds":[1001]}`, "thresholds"},
		{"threshold repeated", alice, `{"amount_usd":"5","thresholds":[50,50]}`, "thresholds"},
		{"threshold fraction", alice, `{"amount_usd":"5","thresholds":[50.5]}`, "thresholds"},
		{"too many thresholds", alice, `{"amount_usd":"5","thresholds":[1,2,3,4,5,6,7,8,9,10,11]}`, "thresholds"},
		{"forecast threshold bad", alice, `{"amount_usd":"5","forecast_thresholds":[-1]}`, "forecast_thresholds"},
		{"name control char", alice, `{"amount_usd":"5","name":"a\u0007b"}`, "name"},
		{"name too long", alice, `{"amount_usd":"5","name":"` + strings.Repeat("n", 101) + `"}`, "name"},
		{"mass assignment user_id", alice, `{"amount_usd":"5","user_id":"` + bob.id + `"}`, "user_id"},
		{"mass assignment team_id", alice, `{"amount_usd":"5","team_id":"` + bob.id + `"}`, "team_id"},
		{"mass assignment secret", alice, `{"amount_usd":"5","webhook_secret":"whsec_mine"}`, "webhook_secret"},
		{"mass assignment email_to", alice, `{"amount_usd":"5","channels":{"email":true,"email_to":"victim@example.com"}}`, "email_to"},
		{"email without an address", noEmail, `{"amount_usd":"5","channels":{"email":true}}`, "channels.email"},
		{"webhook http", alice, `{"amount_usd":"5","channels":{"webhook_url":"http://hooks.example.com/"}}`, "channels.webhook_url"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, _, body := b.do(t, tc.u, http.MethodPost, "/v1/budgets", tc.body)
			require.Equal(t, http.StatusBadRequest, status, string(body))
			var p httpapi.Problem
			require.NoError(t, json.Unmarshal(body, &p))
			require.Equal(t, tc.field, p.Field, p.Detail)
		})
	}
	// Someone else's connection and a missing one look the same.
	_, _, a := b.do(t, alice, http.MethodPost, "/v1/budgets", `{"amount_usd":"5","scope":"connection","connection_id":"`+bobsConn+`"}`)
	_, _, m := b.do(t, alice, http.MethodPost, "/v1/budgets", `{"amount_usd":"5","scope":"connection","connection_id":"`+uuid.NewString()+`"}`)
	require.Equal(t, stripRequestID(m), stripRequestID(a))
	var n int
	require.NoError(t, b.sql.Get(&n, `SELECT count(*) FROM tokka.budgets WHERE team_id = $1`, alice.id))
	require.Zero(t, n, "no rejected request stored anything")
}

// forbiddenWebhookAddrs has one address per class the API must refuse.
var forbiddenWebhookAddrs = map[string]string{
	"loopback":           "127.0.0.1",
	"loopback v6":        "::1",
	"v4-mapped loopback": "::ffff:127.0.0.1",
	"v4-mapped metadata": "::ffff:169.254.169.254",
	"unspecified":        "0.0.0.0",
	"unspecified v6":     "::",
	"private 10":         "10.0.0.1",
	"private 172":        "172.31.255.254",
	"private 192":        "192.168.0.10",
	"ULA v6":             "fd00::1",
	"CGNAT":              "100.127.0.1",
	"link-local":         "169.254.10.10",
	"link-local v6":      "fe80::abcd",
	"AWS/GCP metadata":   "169.254.169.254",
	"AWS metadata v6":    "fd00:ec2::254",
	"Azure wireserver":   "168.63.129.16",
	"Alibaba metadata":   "100.100.100.200",
	"multicast":          "239.255.255.250",
	"multicast v6":       "ff05::1:3",
	"broadcast":          "255.255.255.255",
	"reserved":           "240.1.2.3",
	"NAT64 of private":   "64:ff9b::c0a8:1",
}

func TestWebhookURLIsCheckedWhenSaved(t *testing.T) {
	t.Parallel()
	b := setup(t, forBudgets())
	alice := b.newUser(t)
	refuse := func(t *testing.T, url string) {
		t.Helper()
		status, _, body := b.do(t, alice, http.MethodPost, "/v1/budgets",
			map[string]any{"amount_usd": "5", "channels": map[string]any{"webhook_url": url}})
		require.Equal(t, http.StatusBadRequest, status, url+" "+string(body))
		var p httpapi.Problem
		require.NoError(t, json.Unmarshal(body, &p))
		require.Equal(t, "channels.webhook_url", p.Field)
		require.Contains(t, p.Detail, "channels.webhook_url is not allowed")
	}
	for class, addr := range forbiddenWebhookAddrs {
		t.Run(class, func(t *testing.T) {
			lit := "https://" + addr + "/hook"
			if strings.Contains(addr, ":") {
				lit = "https://[" + addr + "]/hook"
			}
			refuse(t, lit)
			host := uuid.NewString()[:8] + ".internal.example"
			b.res.Set(host, []string{addr})
			refuse(t, "https://"+host+"/hook")
		})
	}
	for _, url := range []string{
		"http://93.184.216.34/hook", "https://2130706433/", "https://0x7f000001/", "https://0177.0.0.1/",
		"https://127.1/", "https://0xA9FEA9FE/", "https://u:p@93.184.216.34/", "https://93.184.216.34:8443/",
		"https://localhost/", "https://nowhere.example/", "javascript:alert(1)", "https://[fe80::1%25en0]/",
	} {
		refuse(t, url)
	}
	// Without WEBHOOK_ALLOW_LOOPBACK_HTTP a local receiver is refused too.
	refuse(t, "http://127.0.0.1:8080/hook")
	var n int
	require.NoError(t, b.sql.Get(&n, `SELECT count(*) FROM tokka.budgets WHERE team_id = $1`, alice.id))
	require.Zero(t, n)

	// A public host is accepted.
	b.res.Set("hooks.example.net", []string{"2606:4700::6810:84e5", "93.184.216.34"})
	status, _, body := b.do(t, alice, http.MethodPost, "/v1/budgets",
		map[string]any{"amount_usd": "5", "channels": map[string]any{"webhook_url": "https://hooks.example.net/x"}})
	require.Equal(t, http.StatusCreated, status, string(body))
}

func TestOtherUsersCannotReachYourBudgets(t *testing.T) {
	t.Parallel()
	b := setup(t, forBudgets())
	alice, bob := b.newUser(t), b.newUser(t)
	status, _, body := b.do(t, alice, http.MethodPost, "/v1/budgets", map[string]any{"amount_usd": "5"})
	require.Equal(t, http.StatusCreated, status)
	id := decodeBudget(t, body).ID

	_, _, missing := b.do(t, bob, http.MethodGet, "/v1/budgets/"+uuid.NewString(), nil)
	for _, m := range []string{http.MethodGet, http.MethodPatch, http.MethodDelete} {
		var req any
		if m == http.MethodPatch {
			req = map[string]any{"amount_usd": "1"}
		}
		status, _, body := b.do(t, bob, m, "/v1/budgets/"+id, req)
		require.Equal(t, http.StatusNotFound, status, m)
		require.Equal(t, stripRequestID(missing), stripRequestID(body), "another user's budget looks exactly like a missing one")
	}
	status, _, body = b.do(t, bob, http.MethodGet, "/v1/budgets", nil)
	require.Equal(t, http.StatusOK, status)
	require.JSONEq(t, `{"data":[],"has_more":false,"next_cursor":null}`, string(body))
	status, _, _ = b.do(t, alice, http.MethodGet, "/v1/budgets/not-a-uuid", nil)
	require.Equal(t, http.StatusNotFound, status)

	status, _, body = b.do(t, alice, http.MethodGet, "/v1/budgets/"+id, nil)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "5", decodeBudget(t, body).AmountUSD, "unchanged by Bob's attempts")
}

// TestBudgetAlertsEndToEnd: costs arrive through the syncer's storage path
// (lease, CompleteSync), the evaluator runs after each sync, and the API
// shows the result. It has a database of its own (the lease sees every
// connection).
func TestBudgetAlertsEndToEnd(t *testing.T) {
	t.Parallel()
	b := setup(t, forBudgets(), loopbackWebhooks(), ownDatabase())
	ctx := context.Background()
	recv := notifytest.NewTLSReceiver(t)
	mailbox := notifytest.NewSMTPServer(t)
	alice := b.newUser(t)
	conn := b.connection(t, alice, "openai")

	status, _, body := b.do(t, alice, http.MethodPost, "/v1/budgets", map[string]any{
		"name": "OpenAI", "amount_usd": "100", "scope": "provider", "provider": "openai",
		"thresholds": []int{50, 80, 100}, "forecast_thresholds": []int{},
		"channels": map[string]any{"webhook_url": recv.Server.URL + "/tokka", "email": true},
	})
	require.Equal(t, http.StatusCreated, status, string(body))
	created := decodeBudget(t, body)
	key := created.WebhookSecret

	roots := x509.NewCertPool()
	roots.AddCert(recv.Server.Certificate())
	smtpCfg, err := notify.ParseSMTPURL(mailbox.URL("", ""), "alerts@tokka.test")
	require.NoError(t, err)
	evLogs := &logtest.Buffer{}
	ev := budget.New(budget.Config{Instance: "syncer-test"}, b.db,
		notify.NewWebhook(notify.WebhookConfig{Guard: &egress.Guard{AllowLoopback: true}, RootCAs: roots, Backoff: time.Millisecond}),
		notify.NewMailer(smtpCfg), zerolog.New(evLogs))

	// sync stores one day's cost as the syncer does and then evaluates, as
	// the syncer's wiring does after every successful sync.
	sync := func(day string, amount string) {
		t.Helper()
		_, err := b.sql.Exec(`UPDATE tokka.connections SET next_sync_at = now() - interval '1 second' WHERE id = $1`, conn)
		require.NoError(t, err)
		ls, err := b.db.LeaseDue(ctx, "syncer-test", 10, time.Minute)
		require.NoError(t, err)
		require.Len(t, ls, 1)
		d, _ := time.Parse(time.DateOnly, day)
		require.NoError(t, b.db.CompleteSync(ctx, ls[0], tokka.SyncResult{
			Window: tokka.Window{From: d, To: d.AddDate(0, 0, 1)},
			Costs: []tokka.CostRow{{Day: d, Model: "gpt-x", LineItem: "gpt-x, input",
				AmountUSD: decimal.RequireFromString(amount), Amount: decimal.RequireFromString(amount), Currency: "usd"}},
			Next:  time.Now().Add(time.Hour),
			Event: tokka.AuditEvent{Action: tokka.ActionSyncSucceeded, Outcome: tokka.OutcomeSuccess, Actor: "syncer:test"},
		}))
		require.NoError(t, ev.AfterSync(ctx, ls[0].TeamID, budgetNow))
	}

	sync("2026-11-02", "51")
	sync("2026-11-02", "51") // a re-sync of the same window: no double count, no re-fire
	sync("2026-11-09", "30")
	sync("2026-11-16", "19.5")
	sync("2026-11-16", "19.5")

	reqs := recv.Requests()
	require.Len(t, reqs, 3, "exactly one webhook per threshold")
	for i, r := range reqs {
		require.NoError(t, notify.VerifySignature([]byte(key), r.Header.Get(notify.HeaderSignature),
			r.Header.Get(notify.HeaderTimestamp), r.Body, time.Now(), 5*time.Minute))
		var p struct {
			Type  string `json:"type"`
			Alert struct {
				Detail struct {
					ThresholdPercent int    `json:"threshold_percent"`
					SpendUSD         string `json:"spend_usd"`
				} `json:"detail"`
			} `json:"alert"`
		}
		require.NoError(t, json.Unmarshal(r.Body, &p))
		require.Equal(t, "budget.threshold", p.Type)
		require.Equal(t, []int{50, 80, 100}[i], p.Alert.Detail.ThresholdPercent)
		require.Equal(t, []string{"51", "81", "100.5"}[i], p.Alert.Detail.SpendUSD)
		require.NotContains(t, string(r.Body), key)
	}
	mails := mailbox.Messages()
	require.Len(t, mails, 3)
	for _, m := range mails {
		require.Equal(t, []string{alice.email}, m.To)
	}

	// The API shows the budget's state, its deliveries and the alerts.
	status, _, body = b.do(t, alice, http.MethodGet, "/v1/budgets/"+created.ID, nil)
	require.Equal(t, http.StatusOK, status)
	got := decodeBudget(t, body)
	require.Equal(t, "100.5", got.Status.SpendUSD)
	require.Equal(t, "100.5", got.Status.PercentUsed)
	status, _, body = b.do(t, alice, http.MethodGet, "/v1/budgets/"+created.ID+"/deliveries", nil)
	require.Equal(t, http.StatusOK, status)
	var deliveries struct{ Data []deliveryJSON }
	require.NoError(t, json.Unmarshal(body, &deliveries))
	require.Len(t, deliveries.Data, 6)
	for _, d := range deliveries.Data {
		require.Equal(t, "delivered", d.Status)
		require.Equal(t, 1, d.Attempts)
	}
	status, _, body = b.do(t, alice, http.MethodGet, "/v1/alerts", nil)
	require.Equal(t, http.StatusOK, status)
	var alerts struct {
		Alerts []struct {
			Kind   string         `json:"kind"`
			Title  string         `json:"title"`
			Detail map[string]any `json:"detail"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(body, &alerts))
	require.Len(t, alerts.Alerts, 3)
	require.Equal(t, "budget_threshold", alerts.Alerts[0].Kind)
	require.Equal(t, float64(100), alerts.Alerts[0].Detail["threshold_percent"])
	require.Equal(t, created.ID, alerts.Alerts[0].Detail["budget_id"])
	require.NotContains(t, string(body), "whsec_")

	// Raised mid-month to $150: $100.50 is 67%, so 50% of $150 fires anew;
	// 80% of $150 ($120) fires when spend gets there.
	status, _, _ = b.do(t, alice, http.MethodPatch, "/v1/budgets/"+created.ID, map[string]any{"amount_usd": "150"})
	require.Equal(t, http.StatusOK, status)
	sync("2026-11-17", "1")
	require.Len(t, recv.Requests(), 4)
	sync("2026-11-18", "18.5")
	sync("2026-11-18", "18.5")
	require.Len(t, recv.Requests(), 5)
	var last struct {
		Alert struct {
			Detail struct {
				ThresholdPercent int    `json:"threshold_percent"`
				AmountUSD        string `json:"amount_usd"`
			} `json:"detail"`
		} `json:"alert"`
	}
	require.NoError(t, json.Unmarshal(recv.Requests()[4].Body, &last))
	require.Equal(t, 80, last.Alert.Detail.ThresholdPercent)
	require.Equal(t, "150", last.Alert.Detail.AmountUSD)

	for _, logs := range []string{b.logs.String(), evLogs.String()} {
		require.NotContains(t, logs, key)
		require.NotContains(t, logs, recv.Server.URL)
	}
}
