package notify

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"

	"github.com/tokka-dev/tokka/pkg/egress"
)

// slackErrorCode is the shape of the error codes Slack answers with
// (invalid_payload, channel_not_found, …): only a body of that shape is
// repeated in a delivery's reason.
var slackErrorCode = regexp.MustCompile(`^[a-z][a-z_]{0,63}$`)

// SlackEscape escapes the three characters Slack's mrkdwn gives meaning to
// (&, < and >), so text a user typed (a budget's name) can neither mention
// @channel nor make a link.
func SlackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// SlackPayload is the JSON body of an incoming-webhook message: Text is the
// notification's plain fallback, Blocks the message as shown. Both are
// mrkdwn: escape what users typed with SlackEscape.
type SlackPayload struct {
	Text   string       `json:"text"`
	Blocks []SlackBlock `json:"blocks"`
}

// SlackBlock is one Block Kit layout block: a section with a text, a
// section of fields, or a context line of elements.
type SlackBlock struct {
	Type     string      `json:"type"`
	Text     *SlackText  `json:"text,omitempty"`
	Fields   []SlackText `json:"fields,omitempty"`
	Elements []SlackText `json:"elements,omitempty"`
}

// SlackText is a Block Kit text object.
type SlackText struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// SlackMrkdwn returns a mrkdwn text object; s must already be escaped.
func SlackMrkdwn(s string) SlackText { return SlackText{Type: "mrkdwn", Text: s} }

// SlackSection returns a section block showing t.
func SlackSection(t SlackText) SlackBlock { return SlackBlock{Type: "section", Text: &t} }

// SlackFields returns a section block of fields, shown two to a row.
func SlackFields(fs ...SlackText) SlackBlock { return SlackBlock{Type: "section", Fields: fs} }

// SlackContext returns a context block: small print under the message.
func SlackContext(es ...SlackText) SlackBlock { return SlackBlock{Type: "context", Elements: es} }

// SlackMessage is one message to post to a Slack incoming webhook.
type SlackMessage struct {
	// URL is the incoming webhook; it is a credential, never logged.
	URL     string
	Payload SlackPayload
}

// SendSlack posts m.Payload to m.URL with Send's retries: transport
// failures, 408, 429 (after its Retry-After) and 5xx are tried again; other
// answers (404 channel_not_found or no_service, 410 channel_is_archived,
// 400 invalid_payload, …) are final. The URL must pass CheckSlackURL again
// first. It returns the attempts made and nil on a 2xx answer; otherwise a
// *egress.RefusedError or a *SendError whose reason carries Slack's error code.
func (w *Webhook) SendSlack(ctx context.Context, m SlackMessage) (attempts int, status int, err error) {
	dest, err := egress.ParseSlackURL(m.URL)
	if err != nil {
		return 0, 0, err
	}
	if w.cfg.SlackOrigin != "" {
		dest = w.cfg.SlackOrigin + strings.TrimPrefix(dest, egress.SlackOrigin)
	}
	u, err := w.cfg.Guard.CheckURL(ctx, dest)
	if err != nil {
		return 0, 0, err
	}
	body, err := json.Marshal(m.Payload)
	if err != nil {
		return 0, 0, &SendError{Reason: "the Slack message could not be encoded"}
	}
	// No Tokka signature: Slack does not check one, and the budget's
	// signing secret has no business with a third party.
	return w.retry(ctx, func() (int, error) {
		return w.post(ctx, u.String(), body, "Slack", func(http.Header) {})
	})
}
