package notify_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/egress"
	"github.com/tokka-dev/tokka/pkg/notify"
	"github.com/tokka-dev/tokka/pkg/notify/notifytest"
)

// slackURL is shaped like a real incoming-webhook URL; its last path
// segment is the credential.
const slackURL = "https://hooks.slack.com/services/T0123ABCD/B0456EFGH/abcdEFGHijklMNOPqrstUVWX"

func TestCheckSlackURL(t *testing.T) {
	t.Parallel()
	res := notifytest.NewResolver()
	res.Set("hooks.slack.com", []string{"34.226.36.52"})
	g := &egress.Guard{Resolver: res}
	ctx := context.Background()

	got, err := g.CheckSlackURL(ctx, slackURL)
	require.NoError(t, err)
	require.Equal(t, slackURL, got)
	got, err = g.CheckSlackURL(ctx, "HTTPS://HOOKS.Slack.com/services/T0123ABCD/B0456EFGH/abcdEFGHijklMNOPqrstUVWX")
	require.NoError(t, err)
	require.Equal(t, slackURL, got, "scheme and host are normalised, the token is kept as it is")

	for _, bad := range []string{
		"",
		"http://hooks.slack.com/services/T0123ABCD/B0456EFGH/abcdEFGHijklMNOPqrstUVWX",
		"https://hooks.slack.com.evil.com/services/T0123ABCD/B0456EFGH/abcdEFGHijklMNOPqrstUVWX",
		"https://evilhooks.slack.com/services/T0123ABCD/B0456EFGH/abcdEFGHijklMNOPqrstUVWX",
		"https://hooks.slack.com./services/T0123ABCD/B0456EFGH/abcdEFGHijklMNOPqrstUVWX",
		"https://hooks.slack.com@evil.com/services/T0123ABCD/B0456EFGH/abcdEFGHijklMNOPqrstUVWX",
		"https://evil.com@hooks.slack.com/services/T0123ABCD/B0456EFGH/abcdEFGHijklMNOPqrstUVWX",
		"https://user:pw@hooks.slack.com/services/T0123ABCD/B0456EFGH/abcdEFGHijklMNOPqrstUVWX",
		"https://hooks.slack.com:8443/services/T0123ABCD/B0456EFGH/abcdEFGHijklMNOPqrstUVWX",
		"https://hooks.slack.com:443/services/T0123ABCD/B0456EFGH/abcdEFGHijklMNOPqrstUVWX",
		"https://hooks.slack.com\\@evil.com/services/T0123ABCD/B0456EFGH/abcd",
		"https://hooks.slack.com/services/T0123ABCD/B0456EFGH/abcdEFGH?x=1",
		"https://hooks.slack.com/services/T0123ABCD/B0456EFGH/abcdEFGH#frag",
		"https://hooks.slack.com/services/T0123ABCD/B0456EFGH/../../redirect",
		"https://hooks.slack.com/services/T0123ABCD/B0456EFGH/abcd%2FEFGH",
		"https://hooks.slack.com/services/T0123ABCD/B0456EFGH",
		"https://hooks.slack.com/triggers/T0123ABCD/123/abcdef",
		"https://hooks.slack.com/",
		"https://34.226.36.52/services/T0123ABCD/B0456EFGH/abcdEFGHijklMNOPqrstUVWX",
		"hooks.slack.com/services/T0123ABCD/B0456EFGH/abcdEFGHijklMNOPqrstUVWX",
		"javascript:alert(1)",
	} {
		_, err := g.CheckSlackURL(ctx, bad)
		var re *egress.RefusedError
		require.ErrorAs(t, err, &re, bad)
		require.NotContains(t, re.Reason, "abcdEFGH", "a refusal never quotes the URL")
	}

	// The Slack host is still checked like any webhook host: one that
	// resolves inside is refused (DNS poisoning, a split-horizon resolver).
	res.Set("hooks.slack.com", []string{"10.0.0.5"})
	_, err = g.CheckSlackURL(ctx, slackURL)
	require.ErrorContains(t, err, "private address")
}

func TestSlackEscape(t *testing.T) {
	t.Parallel()
	require.Equal(t, "R&amp;D &lt;!channel&gt; &lt;https://evil|click&gt; “ok”",
		notify.SlackEscape("R&D <!channel> <https://evil|click> “ok”"))
}

// slackSender posts to a local fake Slack: the Slack URL's origin is
// replaced by the receiver's (loopback is allowed for tests only).
func slackSender(t *testing.T, recv *notifytest.Receiver) *notify.Webhook {
	t.Helper()
	return notify.NewWebhook(notify.WebhookConfig{Guard: &egress.Guard{AllowLoopback: true},
		Attempts: 3, Backoff: time.Millisecond, Timeout: 5 * time.Second, SlackOrigin: recv.Server.URL})
}

func slackMessage() notify.SlackMessage {
	return notify.SlackMessage{URL: slackURL, Payload: notify.SlackPayload{
		Text: "Budget reached 80%",
		Blocks: []notify.SlackBlock{
			notify.SlackSection(notify.SlackMrkdwn("*Budget &lt;x&gt; reached 80%*")),
			notify.SlackFields(notify.SlackMrkdwn("*Spent*\n$80.00"), notify.SlackMrkdwn("*Budget*\n$100.00")),
			notify.SlackContext(notify.SlackMrkdwn("Tokka cannot stop spend.")),
		},
	}}
}

func TestSlackMessageIsPostedAsIncomingWebhookJSON(t *testing.T) {
	t.Parallel()
	recv := notifytest.NewReceiver(t)
	attempts, status, err := slackSender(t, recv).SendSlack(context.Background(), slackMessage())
	require.NoError(t, err)
	require.Equal(t, 1, attempts)
	require.Equal(t, http.StatusOK, status)

	reqs := recv.Requests()
	require.Len(t, reqs, 1)
	r := reqs[0]
	require.Equal(t, http.MethodPost, r.Method)
	require.Equal(t, "/services/T0123ABCD/B0456EFGH/abcdEFGHijklMNOPqrstUVWX", r.Path)
	require.Equal(t, "application/json", r.Header.Get("Content-Type"))
	require.Empty(t, r.Header.Get(notify.HeaderSignature), "Slack gets no Tokka signature")
	require.JSONEq(t, `{
		"text": "Budget reached 80%",
		"blocks": [
			{"type": "section", "text": {"type": "mrkdwn", "text": "*Budget &lt;x&gt; reached 80%*"}},
			{"type": "section", "fields": [
				{"type": "mrkdwn", "text": "*Spent*\n$80.00"},
				{"type": "mrkdwn", "text": "*Budget*\n$100.00"}]},
			{"type": "context", "elements": [{"type": "mrkdwn", "text": "Tokka cannot stop spend."}]}
		]}`, string(r.Body))
}

func TestSlackRetriesOnlyWhatSlackSaysToRetry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	// 5xx and 429 are retried; the third attempt gets through.
	flaky := notifytest.NewSlackReceiver(t, notifytest.SlackAnswer{Status: 500, Body: "rollup_error"},
		notifytest.SlackAnswer{Status: 429, Body: "rate_limited", RetryAfter: "0"})
	attempts, status, err := slackSender(t, flaky).SendSlack(ctx, slackMessage())
	require.NoError(t, err)
	require.Equal(t, 3, attempts)
	require.Equal(t, 200, status)
	require.Len(t, flaky.Requests(), 3)

	// Still failing after the configured attempts: the reason names Slack's
	// error code, never the URL.
	down := notifytest.NewSlackReceiver(t, notifytest.SlackAnswer{Status: 503}, notifytest.SlackAnswer{Status: 502},
		notifytest.SlackAnswer{Status: 500, Body: "rollup_error"}, notifytest.SlackAnswer{Status: 500})
	attempts, status, err = slackSender(t, down).SendSlack(ctx, slackMessage())
	require.Error(t, err)
	require.Equal(t, 3, attempts)
	require.Equal(t, 500, status)
	require.Equal(t, "Slack answered HTTP 500 (rollup_error)", notify.Reason(err))

	// A channel that is gone, or a payload Slack refuses, is final.
	for _, a := range []notifytest.SlackAnswer{
		{Status: 404, Body: "channel_not_found"}, {Status: 410, Body: "channel_is_archived"},
		{Status: 404, Body: "no_service"}, {Status: 400, Body: "invalid_payload"}, {Status: 403, Body: "action_prohibited"},
	} {
		recv := notifytest.NewSlackReceiver(t, a)
		attempts, status, err := slackSender(t, recv).SendSlack(ctx, slackMessage())
		require.Error(t, err, a.Body)
		require.Equal(t, 1, attempts, a.Body)
		require.Equal(t, a.Status, status)
		require.Len(t, recv.Requests(), 1)
		require.Equal(t, "Slack answered HTTP "+jsonInt(a.Status)+" ("+a.Body+")", notify.Reason(err))
		require.NotContains(t, notify.Reason(err), "abcdEFGH")
	}

	// Anything but one of Slack's error codes is not repeated.
	odd := notifytest.NewSlackReceiver(t, notifytest.SlackAnswer{Status: 400, Body: "<html>" + slackURL + "</html>"})
	_, _, err = slackSender(t, odd).SendSlack(ctx, slackMessage())
	require.Equal(t, "Slack answered HTTP 400", notify.Reason(err))
}

func TestSlackRefusesURLsThatAreNotSlacksAtSendTime(t *testing.T) {
	t.Parallel()
	recv := notifytest.NewReceiver(t)
	// A URL that got into storage under other rules (or was altered
	// there) is refused before any connection, origin override or not.
	for _, bad := range []string{recv.Server.URL + "/services/T1/B1/abc", "https://hooks.slack.com.evil.com/services/T1/B1/abc"} {
		attempts, _, err := slackSender(t, recv).SendSlack(context.Background(), notify.SlackMessage{URL: bad})
		var re *egress.RefusedError
		require.ErrorAs(t, err, &re)
		require.Zero(t, attempts)
	}
	require.Empty(t, recv.Requests())
}

func jsonInt(v int) string {
	b, _ := json.Marshal(v)
	return strings.TrimSpace(string(b))
}
