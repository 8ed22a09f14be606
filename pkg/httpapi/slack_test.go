package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/budget"
	"github.com/tokka-dev/tokka/pkg/egress"
	"github.com/tokka-dev/tokka/pkg/httpapi"
	"github.com/tokka-dev/tokka/pkg/notify"
	"github.com/tokka-dev/tokka/pkg/notify/notifytest"
)

const (
	apiSlackURL  = "https://hooks.slack.com/services/T0123ABCD/B0456EFGH/abcdEFGHijklMNOPqrstUVWX"
	apiSlackHint = "https://hooks.slack.com/services/…UVWX"
	slackToken   = "abcdEFGHijklMNOPqrstUVWX"
)

type slackChannels struct {
	Channels struct {
		SlackURL *string `json:"slack_url"`
		Email    bool    `json:"email"`
	} `json:"channels"`
}

func slackOf(t *testing.T, body []byte) slackChannels {
	t.Helper()
	var s slackChannels
	require.NoError(t, json.Unmarshal(body, &s))
	return s
}

// TestSlackChannelShowsOnlyAHint: the Slack URL is a credential; the API
// takes it and never gives it back, showing a hint that a PATCH may send
// back to keep it.
func TestSlackChannelShowsOnlyAHint(t *testing.T) {
	t.Parallel()
	b := setup(t, forBudgets())
	b.res.Set("hooks.slack.com", []string{"34.226.36.52"})
	alice := b.newUser(t)

	status, _, body := b.do(t, alice, http.MethodPost, "/v1/budgets", map[string]any{
		"amount_usd": "50", "channels": map[string]any{"slack_url": apiSlackURL}})
	require.Equal(t, http.StatusCreated, status, string(body))
	require.NotContains(t, string(body), slackToken)
	require.Equal(t, apiSlackHint, *slackOf(t, body).Channels.SlackURL)
	id := decodeBudget(t, body).ID
	for _, path := range []string{"/v1/budgets", "/v1/budgets/" + id} {
		status, _, body := b.do(t, alice, http.MethodGet, path, nil)
		require.Equal(t, http.StatusOK, status)
		require.NotContains(t, string(body), slackToken)
		require.Contains(t, string(body), apiSlackHint)
	}

	// What GET showed, sent back, keeps the URL while email is turned on.
	status, _, body = b.do(t, alice, http.MethodPatch, "/v1/budgets/"+id, map[string]any{
		"channels": map[string]any{"slack_url": apiSlackHint, "email": true}})
	require.Equal(t, http.StatusOK, status, string(body))
	got := slackOf(t, body)
	require.Equal(t, apiSlackHint, *got.Channels.SlackURL)
	require.True(t, got.Channels.Email)
	var stored string
	require.NoError(t, b.sql.Get(&stored, `SELECT slack_url FROM tokka.budgets WHERE id = $1`, id))
	require.Equal(t, apiSlackURL, stored)

	// Another budget's hint is no way to keep a URL.
	status, _, body = b.do(t, alice, http.MethodPatch, "/v1/budgets/"+id, map[string]any{
		"channels": map[string]any{"slack_url": "https://hooks.slack.com/services/…ZZZZ"}})
	require.Equal(t, http.StatusBadRequest, status, string(body))
	var p httpapi.Problem
	require.NoError(t, json.Unmarshal(body, &p))
	require.Equal(t, "channels.slack_url", p.Field)

	// Channels are replaced whole: leaving slack_url out turns Slack off.
	status, _, body = b.do(t, alice, http.MethodPatch, "/v1/budgets/"+id, map[string]any{
		"channels": map[string]any{"email": true}})
	require.Equal(t, http.StatusOK, status, string(body))
	require.Nil(t, slackOf(t, body).Channels.SlackURL)
	require.NotContains(t, b.logs.String(), slackToken)
}

func TestSlackURLIsCheckedWhenSaved(t *testing.T) {
	t.Parallel()
	b := setup(t, forBudgets(), loopbackWebhooks())
	b.res.Set("hooks.slack.com", []string{"34.226.36.52"})
	b.res.Set("hooks.slack.com.evil.com", []string{"93.184.216.34"})
	b.res.Set("evil.com", []string{"93.184.216.34"})
	alice := b.newUser(t)
	path := "/services/T0123ABCD/B0456EFGH/abcdEFGHijklMNOPqrstUVWX"
	for _, bad := range []string{
		"http://hooks.slack.com" + path,
		"https://hooks.slack.com.evil.com" + path,
		"https://evil.com" + path,
		"https://hooks.slack.com@evil.com" + path,
		"https://evil.com@hooks.slack.com" + path,
		"https://hooks.slack.com:x@evil.com" + path,
		"https://hooks.slack.com:8443" + path,
		"https://hooks.slack.com" + path + "?next=https://evil.com",
		"https://hooks.slack.com/services/T0123ABCD/B0456EFGH/../../../x",
		"https://hooks.slack.com/api/chat.postMessage",
		"http://127.0.0.1:8080" + path, // not even with WEBHOOK_ALLOW_LOOPBACK_HTTP
		apiSlackHint,                   // a hint is no URL for a new budget
		strings.Repeat("x", 3000),
	} {
		status, _, body := b.do(t, alice, http.MethodPost, "/v1/budgets",
			map[string]any{"amount_usd": "5", "channels": map[string]any{"slack_url": bad}})
		require.Equal(t, http.StatusBadRequest, status, bad+" "+string(body))
		var p httpapi.Problem
		require.NoError(t, json.Unmarshal(body, &p))
		require.Equal(t, "channels.slack_url", p.Field, bad)
		require.Contains(t, p.Detail, "channels.slack_url", bad)
		require.NotContains(t, p.Detail, "abcdEFGH", "a refusal never quotes the URL")
	}
	// hooks.slack.com itself answering with an internal address is refused.
	b.res.Set("hooks.slack.com", []string{"10.1.2.3"})
	status, _, body := b.do(t, alice, http.MethodPost, "/v1/budgets",
		map[string]any{"amount_usd": "5", "channels": map[string]any{"slack_url": apiSlackURL}})
	require.Equal(t, http.StatusBadRequest, status, string(body))
	require.Contains(t, string(body), "private address")
	var n int
	require.NoError(t, b.sql.Get(&n, `SELECT count(*) FROM tokka.budgets WHERE team_id = $1`, alice.id))
	require.Zero(t, n, "no rejected request stored anything")
}

// TestSlackDeliveriesShowInTheAPI: a budget saved through the API notifies a
// local fake Slack when the evaluator runs, and its deliveries list says so.
func TestSlackDeliveriesShowInTheAPI(t *testing.T) {
	t.Parallel()
	b := setup(t, forBudgets())
	b.res.Set("hooks.slack.com", []string{"34.226.36.52"})
	slack := notifytest.NewSlackReceiver(t, notifytest.SlackAnswer{Status: 410, Body: "channel_is_archived"})
	alice := b.newUser(t)
	conn := b.connection(t, alice, "openai")
	status, _, body := b.do(t, alice, http.MethodPost, "/v1/budgets", map[string]any{
		"name": "Ops", "amount_usd": "100", "thresholds": []int{50, 100}, "forecast_thresholds": []int{},
		"channels": map[string]any{"slack_url": apiSlackURL}})
	require.Equal(t, http.StatusCreated, status, string(body))
	id := decodeBudget(t, body).ID

	ev := budget.New(budget.Config{Instance: "syncer-test", AppURL: "https://app.tokka.test"}, b.db,
		notify.NewWebhook(notify.WebhookConfig{Guard: &egress.Guard{AllowLoopback: true}, Backoff: time.Millisecond,
			SlackOrigin: slack.Server.URL}),
		nil, zerolog.Nop())
	_, err := b.sql.Exec(`INSERT INTO tokka.cost_daily (connection_id, team_id, provider, day, amount_usd, amount, currency)
		VALUES ($1, $2, 'openai', '2026-11-03', 60, 60, 'USD')`, conn, alice.id)
	require.NoError(t, err)
	require.NoError(t, ev.AfterSync(context.Background(), alice.id, budgetNow))
	require.Len(t, slack.Requests(), 1, "a 410 is final")
	require.Contains(t, string(slack.Requests()[0].Body), "https://app.tokka.test/budgets/"+id)

	status, _, body = b.do(t, alice, http.MethodGet, "/v1/budgets/"+id+"/deliveries", nil)
	require.Equal(t, http.StatusOK, status, string(body))
	var ds struct{ Data []deliveryJSON }
	require.NoError(t, json.Unmarshal(body, &ds))
	require.Len(t, ds.Data, 1)
	require.Equal(t, "slack", ds.Data[0].Channel)
	require.Equal(t, "failed", ds.Data[0].Status)
	require.Equal(t, "Slack answered HTTP 410 (channel_is_archived)", *ds.Data[0].LastError)
	require.NotContains(t, string(body), slackToken)
}
