package budget_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/notify/notifytest"
	"github.com/tokka-dev/tokka/pkg/tokka"
	"github.com/tokka-dev/tokka/pkg/tokka/tokkatest"
)

// slackHook is shaped like a Slack incoming-webhook URL; its token is the
// credential that must not leak.
const slackHook = "https://hooks.slack.com/services/T0123ABCD/B0456EFGH/abcdEFGHijklMNOPqrstUVWX"

type slackBody struct {
	Text   string `json:"text"`
	Blocks []struct {
		Type string `json:"type"`
		Text *struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"text"`
		Fields []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"fields"`
		Elements []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"elements"`
	} `json:"blocks"`
}

func (b *testBundle) slackMessages(t *testing.T) []slackBody {
	t.Helper()
	var out []slackBody
	for _, r := range b.slack.Requests() {
		require.Equal(t, "/services/T0123ABCD/B0456EFGH/abcdEFGHijklMNOPqrstUVWX", r.Path)
		var sb slackBody
		require.NoError(t, json.Unmarshal(r.Body, &sb))
		out = append(out, sb)
	}
	return out
}

func TestSlackMessageSaysWhatFiredWithItsFigures(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{appURL: "https://app.tokka.test"})
	ctx := context.Background()
	alice := b.newUser(t)
	conn := b.newConnection(t, alice, "openai")
	bud, key := b.budget(t, alice, tokka.NewBudget{Name: "R&D <!channel> <https://evil.test|click>",
		AmountUSD: tokkatest.USD("100"), Thresholds: []int64{50, 80}, ForecastThresholds: []int64{}, SlackURL: new(slackHook)})

	b.cost(t, alice, conn, "openai", "2026-11-02", "gpt-x", "81.5")
	require.NoError(t, b.ev.AfterSync(ctx, alice.ID, now))
	require.NoError(t, b.ev.AfterSync(ctx, alice.ID, now))
	msgs := b.slackMessages(t)
	require.Len(t, msgs, 1, "one message, for the highest threshold crossed")
	m := msgs[0]

	// The fallback text and the headline: what fired, escaped.
	const title = "Budget “R&amp;D &lt;!channel&gt; &lt;https://evil.test|click&gt;” reached 80% of $100.00 for 2026-11 ($81.50 spent)"
	require.Equal(t, title, m.Text)
	require.Len(t, m.Blocks, 4)
	require.Equal(t, "section", m.Blocks[0].Type)
	require.Equal(t, "mrkdwn", m.Blocks[0].Text.Type)
	require.Equal(t, ":warning: *"+title+"*", m.Blocks[0].Text.Text)

	// The figures, one field each.
	require.Equal(t, "section", m.Blocks[1].Type)
	var fields []string
	for _, f := range m.Blocks[1].Fields {
		require.Equal(t, "mrkdwn", f.Type)
		fields = append(fields, f.Text)
	}
	require.Equal(t, []string{
		"*Budget*\nR&amp;D &lt;!channel&gt; &lt;https://evil.test|click&gt;",
		"*Period*\n2026-11 (UTC month)",
		"*Spent so far*\n$81.50 (81.5% of the budget)",
		"*Budget amount*\n$100.00",
		"*Month-end forecast*\n$81.50",
		"*Threshold*\n80% (spend)",
	}, fields)

	// The link back, to this budget.
	require.Equal(t, "<https://app.tokka.test/budgets/"+bud.ID+"|Open this budget in Tokka>", m.Blocks[2].Text.Text)
	require.Equal(t, "context", m.Blocks[3].Type)
	require.Contains(t, m.Blocks[3].Elements[0].Text, "cannot stop spend")

	for _, r := range b.slack.Requests() {
		require.NotContains(t, string(r.Body), "<!channel>", "a name cannot mention the channel")
		require.NotContains(t, string(r.Body), key)
		require.NotContains(t, string(r.Body), "hooks.slack.com", "the message does not carry its own URL")
	}
	ds := b.deliveries(t, bud.ID)
	require.Len(t, ds, 1)
	require.Equal(t, "slack", ds[0].Channel)
	require.Equal(t, tokka.DeliveryDelivered, ds[0].Status)
	require.Equal(t, 1, ds[0].Attempts)
	require.Equal(t, 200, *ds[0].ResponseStatus)
	require.NotContains(t, b.logs.String(), "abcdEFGH", "the Slack URL is never logged")
	require.Empty(t, b.recv.Requests(), "no webhook for a budget without one")
}

func TestSlackForecastMessageWithoutAppURL(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	ctx := context.Background()
	alice := b.newUser(t)
	conn := b.newConnection(t, alice, "openai")
	// $10 a day for the last week: $70 spent, $180 forecast (11 days left).
	for _, d := range []string{"13", "14", "15", "16", "17", "18", "19"} {
		b.cost(t, alice, conn, "openai", "2026-11-"+d, "gpt-x", "10")
	}
	b.budget(t, alice, tokka.NewBudget{AmountUSD: tokkatest.USD("150"), Thresholds: []int64{100},
		ForecastThresholds: []int64{100}, SlackURL: new(slackHook)})
	require.NoError(t, b.ev.AfterSync(ctx, alice.ID, now))
	msgs := b.slackMessages(t)
	require.Len(t, msgs, 1)
	m := msgs[0]
	require.Contains(t, m.Text, "is projected to reach 100% of $150.00 by the end of 2026-11 ($180.00 forecast)")
	require.Len(t, m.Blocks, 3, "no link without PUBLIC_APP_URL")
	require.Contains(t, m.Blocks[1].Fields[5].Text, "*Threshold*\n100% (forecast)")
	for _, bl := range m.Blocks {
		if bl.Text != nil {
			require.NotContains(t, bl.Text.Text, "Open this budget")
		}
	}
}

func TestSlackFailuresAreRecordedLikeWebhooks(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		answers  []notifytest.SlackAnswer
		status   string
		attempts int
		code     int
		reason   string
	}{
		{"archived channel is final", []notifytest.SlackAnswer{{Status: 410, Body: "channel_is_archived"}},
			tokka.DeliveryFailed, 1, 410, "Slack answered HTTP 410 (channel_is_archived)"},
		{"missing channel is final", []notifytest.SlackAnswer{{Status: 404, Body: "channel_not_found"}},
			tokka.DeliveryFailed, 1, 404, "Slack answered HTTP 404 (channel_not_found)"},
		{"rate limited, then delivered", []notifytest.SlackAnswer{{Status: 429, Body: "rate_limited", RetryAfter: "0"}},
			tokka.DeliveryDelivered, 2, 200, ""},
		{"server errors, bounded", []notifytest.SlackAnswer{{Status: 500}, {Status: 503}, {Status: 500, Body: "rollup_error"}, {Status: 500}},
			tokka.DeliveryFailed, 3, 500, "Slack answered HTTP 500 (rollup_error)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, setupOpts{slack: tc.answers})
			ctx := context.Background()
			alice := b.newUser(t)
			conn := b.newConnection(t, alice, "openai")
			bud, _ := b.budget(t, alice, tokka.NewBudget{AmountUSD: tokkatest.USD("10"), Thresholds: []int64{100}, SlackURL: new(slackHook)})
			b.cost(t, alice, conn, "openai", "2026-11-05", "gpt-x", "11")
			require.NoError(t, b.ev.AfterSync(ctx, alice.ID, now))
			require.NoError(t, b.ev.AfterSync(ctx, alice.ID, now), "a finished delivery is not sent again")
			require.Len(t, b.slack.Requests(), tc.attempts)
			ds := b.deliveries(t, bud.ID)
			require.Len(t, ds, 1)
			require.Equal(t, tc.status, ds[0].Status)
			require.Equal(t, tc.attempts, ds[0].Attempts)
			require.Equal(t, tc.code, *ds[0].ResponseStatus)
			if tc.reason == "" {
				require.Nil(t, ds[0].LastError)
			} else {
				require.Equal(t, tc.reason, *ds[0].LastError)
			}
			require.NotContains(t, b.logs.String(), "abcdEFGH")
		})
	}
}
