package egress_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/egress"
	"github.com/tokka-dev/tokka/pkg/notify/notifytest"
)

// embedForms writes an IPv4 address into each IPv6 form that carries one.
var embedForms = map[string]func(v4 [4]byte) netip.Addr{
	"IPv4-mapped ::ffff:0:0/96": func(v4 [4]byte) netip.Addr {
		return netip.AddrFrom16([16]byte{10: 0xff, 11: 0xff, 12: v4[0], 13: v4[1], 14: v4[2], 15: v4[3]})
	},
	"IPv4-translated ::ffff:0:0:0/96 (RFC 2765)": func(v4 [4]byte) netip.Addr {
		return netip.AddrFrom16([16]byte{8: 0xff, 9: 0xff, 12: v4[0], 13: v4[1], 14: v4[2], 15: v4[3]})
	},
	"IPv4-compatible ::/96": func(v4 [4]byte) netip.Addr {
		return netip.AddrFrom16([16]byte{12: v4[0], 13: v4[1], 14: v4[2], 15: v4[3]})
	},
	"NAT64 64:ff9b::/96": func(v4 [4]byte) netip.Addr {
		return netip.AddrFrom16([16]byte{0: 0x00, 1: 0x64, 2: 0xff, 3: 0x9b, 12: v4[0], 13: v4[1], 14: v4[2], 15: v4[3]})
	},
	"local-use NAT64 64:ff9b:1::/48": func(v4 [4]byte) netip.Addr {
		return netip.AddrFrom16([16]byte{1: 0x64, 2: 0xff, 3: 0x9b, 5: 0x01, 12: v4[0], 13: v4[1], 14: v4[2], 15: v4[3]})
	},
	"6to4 2002::/16": func(v4 [4]byte) netip.Addr {
		return netip.AddrFrom16([16]byte{0: 0x20, 1: 0x02, 2: v4[0], 3: v4[1], 4: v4[2], 5: v4[3], 15: 1})
	},
	"Teredo 2001::/32, client": func(v4 [4]byte) netip.Addr {
		// Server 65.54.227.120 (public); the client address is stored
		// inverted.
		return netip.AddrFrom16([16]byte{0: 0x20, 1: 0x01, 4: 65, 5: 54, 6: 227, 7: 120, 8: 0x80,
			12: ^v4[0], 13: ^v4[1], 14: ^v4[2], 15: ^v4[3]})
	},
	"Teredo 2001::/32, server": func(v4 [4]byte) netip.Addr {
		return netip.AddrFrom16([16]byte{0: 0x20, 1: 0x01, 4: v4[0], 5: v4[1], 6: v4[2], 7: v4[3], 8: 0x80,
			12: ^byte(93), 13: ^byte(184), 14: ^byte(216), 15: ^byte(34)})
	},
}

// embeddedTargets are internal IPv4 destinations and the word the refusal
// must use for each: the guard judges the address inside, not the wrapper.
var embeddedTargets = map[string]struct {
	v4   [4]byte
	word string
}{
	"loopback": {[4]byte{127, 0, 0, 1}, "loopback"},
	"private":  {[4]byte{10, 0, 0, 1}, "private"},
	"metadata": {[4]byte{169, 254, 169, 254}, "metadata"},
	"CGNAT":    {[4]byte{100, 64, 0, 1}, "carrier-grade NAT"},
}

// TestEmbeddedIPv4IsJudgedAtSaveAndAtSend: every IPv6 form that carries an
// IPv4 address is refused when the address inside is internal, with a
// reason naming what is inside, as a literal or behind a name when the URL
// is saved, and behind a name when the webhook is sent (DialContext), even
// with AllowLoopback (meant for real loopback only).
func TestEmbeddedIPv4IsJudgedAtSaveAndAtSend(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	res := notifytest.NewResolver()
	for _, allowLoopback := range []bool{false, true} {
		g := &egress.Guard{Resolver: res, AllowLoopback: allowLoopback}
		for form, embed := range embedForms {
			for target, tc := range embeddedTargets {
				if allowLoopback && target == "loopback" && strings.HasPrefix(form, "IPv4-mapped") {
					continue // ::ffff:127.0.0.1 is loopback itself, which the flag allows
				}
				addr := embed(tc.v4)
				name := form + " " + target
				var re *egress.RefusedError

				_, err := g.CheckURL(ctx, "https://["+addr.String()+"]/hook")
				require.ErrorAs(t, err, &re, "save, literal: %s (%s)", name, addr)
				require.Contains(t, re.Reason, tc.word, "save, literal: %s (%s)", name, addr)
				require.NotContains(t, re.Reason, addr.String(), "reasons never echo the address")

				host := strings.NewReplacer(" ", "-", "/", "-", ":", "-", "(", "", ")", "", ",", "").Replace(strings.ToLower(name)) + ".example.test"
				res.Set(host, []string{addr.String()})
				_, err = g.CheckURL(ctx, "https://"+host+"/hook")
				require.ErrorAs(t, err, &re, "save, by name: %s (%s)", name, addr)
				require.Contains(t, re.Reason, tc.word, "save, by name: %s", name)

				_, err = g.DialContext(ctx, "tcp", host+":443")
				require.True(t, errors.As(err, &re), "send: %s (%s): %v", name, addr, err)
				require.Contains(t, re.Reason, tc.word, "send: %s", name)
			}
		}
	}
}

// TestEmbeddedPublicIPv4 keeps what worked: IPv4-mapped and well-known
// NAT64 addresses of a public IPv4 address are public; the tunnel,
// translated, local-use and deprecated forms stay refused whatever they
// carry (a local-use NAT64 prefix of another length is caught this way).
func TestEmbeddedPublicIPv4(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g := &egress.Guard{Resolver: notifytest.NewResolver()}
	public := [4]byte{93, 184, 216, 34}
	for form, embed := range embedForms {
		addr := embed(public)
		_, err := g.CheckURL(ctx, "https://["+addr.String()+"]/hook")
		switch form {
		case "IPv4-mapped ::ffff:0:0/96", "NAT64 64:ff9b::/96":
			require.NoError(t, err, "%s (%s)", form, addr)
		default:
			var re *egress.RefusedError
			require.ErrorAs(t, err, &re, "%s (%s)", form, addr)
		}
	}
}
