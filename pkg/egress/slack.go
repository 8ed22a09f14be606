package egress

import (
	"context"
	"net/url"
	"regexp"
	"strings"
)

// SlackHost is the one host Slack messages are sent to.
const SlackHost = "hooks.slack.com"

// SlackOrigin is what every Slack incoming-webhook URL starts with.
const SlackOrigin = "https://" + SlackHost

// slackPath is an incoming webhook's path: /services/<team>/<hook>/<token>.
// Nothing else is accepted (no query, no dot segments, no escapes), so the
// URL cannot be bent to another endpoint of the host.
var slackPath = regexp.MustCompile(`^/services/[A-Z0-9]{1,32}/[A-Z0-9]{1,32}/[A-Za-z0-9]{8,64}$`)

// CheckSlackURL checks that raw is a Slack incoming-webhook URL,
// https://hooks.slack.com/services/<team>/<hook>/<token> with nothing more
// (no user info, no port, no query or fragment), and that the host passes
// CheckURL like any webhook destination. It returns the URL with scheme and
// host in lower case, or a *RefusedError that never quotes the URL: the URL
// is the credential that lets anyone post to the channel.
func (g *Guard) CheckSlackURL(ctx context.Context, raw string) (string, error) {
	norm, err := ParseSlackURL(raw)
	if err != nil {
		return "", err
	}
	if _, err := g.CheckURL(ctx, norm); err != nil {
		return "", err
	}
	return norm, nil
}

// ParseSlackURL is CheckSlackURL without the address check (the sender
// checks the address when it dials).
func ParseSlackURL(raw string) (string, error) {
	bad := refused("the URL must be a Slack incoming webhook, " + SlackOrigin + "/services/…")
	if len(raw) > MaxURLLength {
		return "", refused("the URL is longer than %d characters", MaxURLLength)
	}
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" || u.RawPath != "" || u.RawQuery != "" || u.ForceQuery ||
		u.Fragment != "" || strings.Contains(raw, "#") {
		return "", bad
	}
	if !strings.EqualFold(u.Scheme, "https") {
		return "", refused("the URL must use https")
	}
	if u.User != nil {
		return "", refused("the URL must not contain a user name or password")
	}
	// The host compared exactly (no port, not even :443; no trailing dot):
	// hooks.slack.com.evil.com and evil.com/@hooks.slack.com are not it.
	if !strings.EqualFold(u.Host, SlackHost) || !slackPath.MatchString(u.Path) {
		return "", bad
	}
	return SlackOrigin + u.Path, nil
}
