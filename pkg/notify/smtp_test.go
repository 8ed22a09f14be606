package notify_test

import (
	"context"
	"fmt"
	"mime"
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/notify"
	"github.com/tokka-dev/tokka/pkg/notify/notifytest"
)

func TestParseSMTPURL(t *testing.T) {
	t.Parallel()
	c, err := notify.ParseSMTPURL("smtp://mailer:s%3Acret@mail.example.com", "Tokka <alerts@example.com>")
	require.NoError(t, err)
	require.Equal(t, "mail.example.com", c.Host)
	require.Equal(t, "587", c.Port)
	require.False(t, c.Implicit)
	require.Equal(t, "mailer", c.Username)
	require.Equal(t, "s:cret", string(c.Password.Bytes()))
	require.Equal(t, "alerts@example.com", c.From)
	require.NotContains(t, fmt.Sprintf("%v %+v", c, c), "s:cret", "the password never prints")

	c, err = notify.ParseSMTPURL("smtps://relay.example.com:2465", "alerts@example.com")
	require.NoError(t, err)
	require.True(t, c.Implicit)
	require.Equal(t, "2465", c.Port)

	for _, tc := range []struct{ url, from string }{
		{"http://u:SECRETPW@mail.example.com", "a@example.com"},
		{"smtp://u:SECRETPW@", "a@example.com"},
		{"smtp://u:SECRETPW@mail.example.com/path", "a@example.com"},
		{"smtp://u:SECRETPW@mail.example.com?x=1", "a@example.com"},
		{"smtp://u:SECRETPW@mail.example.com", ""},
		{"smtp://u:SECRETPW@mail.example.com", "not an address"},
		{"smtp://u:SECRETPW@mail example.com", "a@example.com"},
	} {
		_, err := notify.ParseSMTPURL(tc.url, tc.from)
		require.Error(t, err, tc.url)
		require.NotContains(t, err.Error(), "SECRETPW")
	}
}

func TestMailerSendsThroughSMTP(t *testing.T) {
	t.Parallel()
	srv := notifytest.NewSMTPServer(t)
	cfg, err := notify.ParseSMTPURL(srv.URL("tokka", "relay-password"), "Tokka Alerts <alerts@tokka.example>")
	require.NoError(t, err)
	m := notify.NewMailer(cfg)
	err = m.Send(context.Background(), notify.Email{
		To:      "alice@example.com",
		Subject: "Budget “Prod” reached 80%\r\nBcc: victim@example.com",
		Body:    "Line one\n.\nA line with a lone dot above, and € signs.\n",
	})
	require.NoError(t, err)
	msgs := srv.Messages()
	require.Len(t, msgs, 1)
	got := msgs[0]
	require.Equal(t, "alerts@tokka.example", got.From)
	require.Equal(t, []string{"alice@example.com"}, got.To)
	require.Equal(t, "tokka", got.Username)
	require.Equal(t, "relay-password", got.Password)
	// textproto's dot reader hands the message over with LF line ends.
	require.Contains(t, got.Data, "To: alice@example.com\n")
	require.NotContains(t, got.Data, "\nBcc:", "no header injection through the subject")
	var subject string
	for _, line := range strings.Split(got.Data, "\n") {
		if strings.HasPrefix(line, "Subject: ") {
			subject, err = new(mime.WordDecoder).DecodeHeader(strings.TrimPrefix(line, "Subject: "))
			require.NoError(t, err)
		}
	}
	require.Equal(t, "Budget “Prod” reached 80%  Bcc: victim@example.com", subject)
	require.Contains(t, got.Data, "Content-Type: text/plain; charset=utf-8")
	require.Contains(t, got.Data, "\n.\n", "a lone dot survives dot-stuffing")
}

func TestMailerRefusesCleartextToRemoteRelay(t *testing.T) {
	t.Parallel()
	// A relay that offers no STARTTLS is only acceptable on loopback. Reach
	// the local test server under a non-loopback name so the mailer treats
	// it as remote.
	srv := notifytest.NewSMTPServer(t)
	cfg, err := notify.ParseSMTPURL("smtp://mail.example.com:25", "alerts@tokka.example")
	require.NoError(t, err)
	cfg.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, srv.Addr)
	}
	m := notify.NewMailer(cfg)
	err = m.Send(context.Background(), notify.Email{To: "alice@example.com", Subject: "x", Body: "y"})
	require.Error(t, err)
	require.Contains(t, notify.Reason(err), "STARTTLS")
	require.Empty(t, srv.Messages())
}
