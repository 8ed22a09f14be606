package notify_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/notify"
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
	strict := &notify.Guard{Resolver: res}
	dev := &notify.Guard{AllowLoopback: true, Resolver: res}

	base := "https://hooks.example.com/"
	exactly := func(n int) string { return base + strings.Repeat("p", n-len(base)) }
	const chars = "the URL contains spaces, control or non-ASCII characters"
	const notAbsolute = "the URL is not an absolute http(s) URL"
	const badPort = "the URL has an invalid port"
	for _, tc := range []struct {
		g    *notify.Guard
		raw  string
		want string
	}{
		{strict, exactly(notify.MaxURLLength), ""},
		{strict, exactly(notify.MaxURLLength + 1), "the URL is longer than 2048 characters"},
		{strict, base + "a b", chars},
		{strict, base + "a\tb", chars},
		{strict, base + "a\x7fb", chars},
		{strict, base + "é", chars},
		{strict, base + "~user/hook", ""},
		{strict, "https://[::1/hook", notAbsolute},
		{strict, "https:///hook", notAbsolute},
		{strict, "https:hooks.example.com", notAbsolute},
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
		var re *notify.RefusedError
		require.ErrorAs(t, err, &re, "%q (%d characters) must be refused", name, len(tc.raw))
		require.Contains(t, re.Reason, tc.want, "%q (%d characters)", name, len(tc.raw))
	}
}
