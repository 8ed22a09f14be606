package notify_test

import (
	"context"
	"crypto/x509"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/egress"
	"github.com/tokka-dev/tokka/pkg/notify"
	"github.com/tokka-dev/tokka/pkg/notify/notifytest"
	"github.com/tokka-dev/tokka/pkg/secret"
)

const testSecret = "whsec_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

func message(url string) notify.WebhookMessage {
	return notify.WebhookMessage{URL: url, Secret: secret.FromString(testSecret), Event: "budget.threshold",
		DeliveryID: "42", Body: []byte(`{"id":"42","type":"budget.threshold"}`)}
}

func sender(t *testing.T, g *egress.Guard, roots *x509.CertPool) *notify.Webhook {
	t.Helper()
	return notify.NewWebhook(notify.WebhookConfig{Guard: g, RootCAs: roots, Attempts: 3,
		Backoff: time.Millisecond, Timeout: 5 * time.Second})
}

func TestWebhookIsSignedAndVerifies(t *testing.T) {
	t.Parallel()
	recv := notifytest.NewTLSReceiver(t)
	roots := x509.NewCertPool()
	roots.AddCert(recv.Server.Certificate())
	w := sender(t, &egress.Guard{AllowLoopback: true}, roots)
	m := message(recv.Server.URL + "/hook")
	attempts, status, err := w.Send(context.Background(), m)
	require.NoError(t, err)
	require.Equal(t, 1, attempts)
	require.Equal(t, http.StatusOK, status)

	reqs := recv.Requests()
	require.Len(t, reqs, 1)
	r := reqs[0]
	require.Equal(t, http.MethodPost, r.Method)
	require.Equal(t, "/hook", r.Path)
	require.Equal(t, "application/json", r.Header.Get("Content-Type"))
	require.Equal(t, "budget.threshold", r.Header.Get(notify.HeaderEvent))
	require.Equal(t, "42", r.Header.Get(notify.HeaderDelivery))
	require.Equal(t, m.Body, r.Body)
	require.NoError(t, notify.VerifySignature([]byte(testSecret), r.Header.Get(notify.HeaderSignature),
		r.Header.Get(notify.HeaderTimestamp), r.Body, time.Now(), 5*time.Minute))
	require.Error(t, notify.VerifySignature([]byte("whsec_other"), r.Header.Get(notify.HeaderSignature),
		r.Header.Get(notify.HeaderTimestamp), r.Body, time.Now(), 5*time.Minute), "another key")
	require.Error(t, notify.VerifySignature([]byte(testSecret), r.Header.Get(notify.HeaderSignature),
		r.Header.Get(notify.HeaderTimestamp), append(r.Body, ' '), time.Now(), 5*time.Minute), "tampered body")
	require.Error(t, notify.VerifySignature([]byte(testSecret), r.Header.Get(notify.HeaderSignature),
		r.Header.Get(notify.HeaderTimestamp), r.Body, time.Now().Add(time.Hour), 5*time.Minute), "replayed later")
	for k, v := range r.Header {
		require.NotContains(t, strings.Join(v, " "), testSecret, k)
	}
	require.NotContains(t, string(r.Body), testSecret)
}

func TestWebhookToUntrustedCertificateFails(t *testing.T) {
	t.Parallel()
	recv := notifytest.NewTLSReceiver(t)
	w := sender(t, &egress.Guard{AllowLoopback: true}, nil) // system roots only
	_, _, err := w.Send(context.Background(), message(recv.Server.URL))
	require.Error(t, err)
	require.Equal(t, "the receiver's TLS certificate is not trusted", notify.Reason(err))
}

func TestWebhookRetriesAreBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g := &egress.Guard{AllowLoopback: true}

	down := notifytest.NewReceiver(t, 500, 502, 503, 504, 500)
	attempts, status, err := sender(t, g, nil).Send(ctx, message(down.Server.URL))
	require.Error(t, err)
	require.Equal(t, 3, attempts)
	require.Equal(t, 503, status)
	require.Len(t, down.Requests(), 3, "exactly the configured attempts")
	require.Equal(t, "receiver answered HTTP 503", notify.Reason(err))
	require.NotContains(t, notify.Reason(err), "receiver says", "the response body is never kept")

	flaky := notifytest.NewReceiver(t, 503, 429)
	attempts, status, err = sender(t, g, nil).Send(ctx, message(flaky.Server.URL))
	require.NoError(t, err)
	require.Equal(t, 3, attempts)
	require.Equal(t, 200, status)
	reqs := flaky.Requests()
	require.Len(t, reqs, 3)
	require.Equal(t, reqs[0].Header.Get(notify.HeaderDelivery), reqs[2].Header.Get(notify.HeaderDelivery),
		"retries keep the delivery id so receivers can de-duplicate")

	rejected := notifytest.NewReceiver(t, 400)
	attempts, _, err = sender(t, g, nil).Send(ctx, message(rejected.Server.URL))
	require.Error(t, err)
	require.Equal(t, 1, attempts, "a 4xx answer is not retried")
}

func TestWebhookDoesNotFollowRedirects(t *testing.T) {
	t.Parallel()
	// The receiver answers 302 to the metadata address.
	recv := notifytest.NewReceiver(t, http.StatusFound)
	attempts, status, err := sender(t, &egress.Guard{AllowLoopback: true}, nil).Send(context.Background(), message(recv.Server.URL))
	require.Error(t, err)
	require.Equal(t, 1, attempts)
	require.Equal(t, http.StatusFound, status)
	require.Contains(t, notify.Reason(err), "redirect")
	require.Len(t, recv.Requests(), 1)
}

// TestWebhookRechecksAtSendTime: a URL whose host resolved to a public
// address when it was saved but now resolves somewhere forbidden (DNS
// rebinding, or a record changed) is refused when sending, for every
// forbidden class, without a single connection.
func TestWebhookRechecksAtSendTime(t *testing.T) {
	t.Parallel()
	for class, addr := range notifytest.ForbiddenAddrs {
		t.Run(class, func(t *testing.T) {
			res := notifytest.NewResolver()
			g := &egress.Guard{Resolver: res}
			ctx := context.Background()

			// Saved: the name resolved publicly.
			res.Set("hooks.rebind.test", []string{"93.184.216.34"})
			_, err := g.CheckURL(ctx, "https://hooks.rebind.test/hook")
			require.NoError(t, err)

			// Sending, the record now points inside.
			res.Set("hooks.rebind.test", []string{addr})
			attempts, _, err := sender(t, g, nil).Send(ctx, message("https://hooks.rebind.test/hook"))
			var re *egress.RefusedError
			require.ErrorAs(t, err, &re)
			require.Zero(t, attempts)

			// Rebinding between the check and the dial: the dialer resolves
			// again, checks, and refuses.
			res.Set("hooks.rebind.test", []string{"93.184.216.34"}, []string{addr})
			attempts, _, err = sender(t, g, nil).Send(ctx, message("https://hooks.rebind.test/hook"))
			require.ErrorAs(t, err, &re)
			require.Equal(t, 1, attempts, "refusals are not retried")
			require.Equal(t, 2, res.Calls("hooks.rebind.test"), "checked once up front, once at dial")
			require.Contains(t, notify.Reason(err), "refused")
			require.NotContains(t, notify.Reason(err), addr)
			require.NotContains(t, notify.Reason(err), "rebind.test", "reasons never carry the URL")
		})
	}
}

func TestWebhookSendsToTheCheckedAddressOfAName(t *testing.T) {
	t.Parallel()
	recv := notifytest.NewReceiver(t)
	port := recv.Server.URL[strings.LastIndexByte(recv.Server.URL, ':')+1:]
	res := notifytest.NewResolver()
	res.Set("receiver.test", []string{"127.0.0.1"})
	w := sender(t, &egress.Guard{AllowLoopback: true, Resolver: res}, nil)
	_, _, err := w.Send(context.Background(), message("http://receiver.test:"+port+"/x"))
	require.NoError(t, err)
	require.Len(t, recv.Requests(), 1)
}

func TestWebhookIgnoresProxyEnvironment(t *testing.T) {
	// Not parallel: it sets the process environment.
	recv := notifytest.NewReceiver(t)
	proxy := notifytest.NewReceiver(t)
	t.Setenv("HTTP_PROXY", proxy.Server.URL)
	t.Setenv("HTTPS_PROXY", proxy.Server.URL)
	_, _, err := sender(t, &egress.Guard{AllowLoopback: true}, nil).Send(context.Background(), message(recv.Server.URL))
	require.NoError(t, err)
	require.Len(t, recv.Requests(), 1)
	require.Empty(t, proxy.Requests())
}
