package egress_test

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/egress"
	"github.com/tokka-dev/tokka/pkg/notify/notifytest"
)

// TestCheckURLRefusesForTheRightReason pins which check refuses each URL
// and every bound at the value and one past it. Several checks overlap (a
// URL with a space may also fail to parse, a bad port is also not 443), so
// a test that only asks "refused?" keeps passing when one of them breaks;
// scripts/mutate found a dozen such survivors. want is a piece of the
// reason, or "" for a URL that must be accepted.
func TestCheckURLRefusesForTheRightReason(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	res := notifytest.NewResolver()
	res.Set("hooks.example.com", []string{"93.184.216.34"})
	strict := &egress.Guard{Resolver: res}
	dev := &egress.Guard{AllowLoopback: true, Resolver: res}

	base := "https://hooks.example.com/"
	exactly := func(n int) string { return base + strings.Repeat("p", n-len(base)) }
	const chars = "the URL contains spaces, control or non-ASCII characters"
	const notAbsolute = "the URL is not an absolute http(s) URL"
	const badPort = "the URL has an invalid port"
	for _, tc := range []struct {
		g    *egress.Guard
		raw  string
		want string
	}{
		{strict, exactly(egress.MaxURLLength), ""},
		{strict, exactly(egress.MaxURLLength + 1), "the URL is longer than 2048 characters"},
		{strict, base + "a b", chars},
		{strict, base + "a\tb", chars},
		{strict, base + "a\x7fb", chars},
		{strict, base + "é", chars},
		{strict, base + "~user/hook", ""},
		{strict, "https://[::1/hook", notAbsolute},
		{strict, "https:///hook", notAbsolute},
		{strict, "https:hooks.example.com", notAbsolute},
		{dev, "ftp://127.0.0.1/hook", "the URL must use https"},
		{dev, "http://127.0.0.1:0/hook", badPort},
		{dev, "http://127.0.0.1:1/hook", ""},
		{dev, "http://127.0.0.1:65535/hook", ""},
		{dev, "http://127.0.0.1:65536/hook", badPort},
	} {
		name := tc.raw
		if len(name) > 60 {
			name = name[:40] + "…"
		}
		_, err := tc.g.CheckURL(ctx, tc.raw)
		if tc.want == "" {
			require.NoError(t, err, "%q (%d characters)", name, len(tc.raw))
			continue
		}
		var re *egress.RefusedError
		require.ErrorAs(t, err, &re, "%q (%d characters) must be refused", name, len(tc.raw))
		require.Contains(t, re.Reason, tc.want, "%q (%d characters)", name, len(tc.raw))
	}
}

// TestHostNamesAreJudgedForTheRightReason pins the host-name rules: loopback
// names, DNS length and character limits at the bound and one past, the
// legacy numeric forms (all refused as such, not as bad names), and a name
// that resolves to nothing.
func TestHostNamesAreJudgedForTheRightReason(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	res := notifytest.NewResolver()
	g := &egress.Guard{Resolver: res}
	label := func(c string, n int) string { return strings.Repeat(c, n) }
	longest := label("a", 63) + "." + label("b", 63) + "." + label("c", 63) + "." + label("d", 61) // 253
	// Names that would resolve, so only the name rules can refuse them.
	for _, name := range []string{longest, label("e", 63) + ".example.com", "a-z_0-9.example.com",
		"bad!name.example.com", "bad+name.example.com", "bad$name.example.com"} {
		res.Set(name, []string{"93.184.216.34"})
	}
	res.Set("empty.example.com", []string{})

	const loopback = "the host is a loopback address"
	const badName = "the host is not a valid DNS name or IP address"
	const legacy = "the host is an IP address in a non-standard form"
	for _, tc := range []struct{ host, want string }{
		{"localhost", loopback},
		{"api.localhost", loopback},
		{longest, ""},
		{longest + "d", badName},
		{label("e", 63) + ".example.com", ""},
		{label("e", 64) + ".example.com", badName},
		{"-a.example.com", badName},
		{"a-.example.com", badName},
		{"a-z_0-9.example.com", ""},
		{"bad!name.example.com", badName},
		{"bad+name.example.com", badName},
		{"bad$name.example.com", badName},
		{"empty.example.com", "the host name does not resolve"},
		{"0177.0.0.1", legacy},
		{"0x7f000001", legacy},
		{"0X7F.1", legacy},
		{"0", legacy},
		{"19.1", legacy},
		{"255.1", legacy},
		{"256.1", badName},
		{"1.16777215", legacy},
		{"1.16777216", badName},
		{"1.2.3.255", ""}, // canonical: judged as the address it is
		{"1.2.3.256", badName},
	} {
		_, err := g.CheckURL(ctx, "https://"+tc.host+"/hook")
		if tc.want == "" {
			require.NoError(t, err, tc.host)
			continue
		}
		var re *egress.RefusedError
		require.ErrorAs(t, err, &re, "%s must be refused", tc.host)
		require.Contains(t, re.Reason, tc.want, tc.host)
	}
}

// deadlineResolver answers every name with one public address and records
// how long the guard gave the lookup.
type deadlineResolver struct {
	mu   sync.Mutex
	left []time.Duration
}

func (r *deadlineResolver) LookupNetIP(ctx context.Context, _, _ string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, ok := ctx.Deadline()
	if !ok {
		r.left = append(r.left, -1)
	} else {
		r.left = append(r.left, time.Until(d))
	}
	return []netip.Addr{netip.MustParseAddr("93.184.216.34")}, nil
}

// TestLookupsHaveTheirOwnBudget: a lookup gets a deadline of its own (five
// seconds) even when the caller's context has none.
func TestLookupsHaveTheirOwnBudget(t *testing.T) {
	t.Parallel()
	res := &deadlineResolver{}
	g := &egress.Guard{Resolver: res}
	_, err := g.CheckURL(context.Background(), "https://hooks.example.com/hook")
	require.NoError(t, err)
	require.Len(t, res.left, 1)
	require.Greater(t, res.left[0], time.Second, "the lookup deadline")
	require.LessOrEqual(t, res.left[0], 5*time.Second)
}

// TestDialRefusesBeforeConnecting: DialContext applies the port rule to
// every resolved address and refuses malformed addresses, all before any
// connection is attempted (the context is cancelled, so an attempt would
// fail with another error).
func TestDialRefusesBeforeConnecting(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	g := &egress.Guard{AllowLoopback: true, Resolver: notifytest.NewResolver()}
	for addr, want := range map[string]string{
		"93.184.216.34:8443":  "the URL must use the standard https port 443",
		"93.184.216.34":       "the destination address is malformed",
		"93.184.216.34:65536": "the destination port is malformed",
		"10.0.0.1:443":        "private",
	} {
		_, err := g.DialContext(ctx, "tcp", addr)
		var re *egress.RefusedError
		require.ErrorAs(t, err, &re, addr)
		require.Contains(t, re.Reason, want, addr)
	}
}
