package egress

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestParseLegacyIPv4Values: the inet_aton forms mean what resolvers take
// them to mean, each part filling its bytes and the last the rest. resolve
// only asks whether a host is such a number, so this checks the values
// (which a future rule may judge) directly.
func TestParseLegacyIPv4Values(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"2130706433":       "127.0.0.1",
		"0x7f000001":       "127.0.0.1",
		"0177.0.0.1":       "127.0.0.1",
		"127.1":            "127.0.0.1",
		"0x7f.1":           "127.0.0.1",
		"10.0x10203":       "10.1.2.3",
		"192.168.0x102":    "192.168.1.2",
		"0xa9.0xfe.0xa9.1": "169.254.169.1",
		"1.2.3.4":          "1.2.3.4",
	} {
		got, ok := parseLegacyIPv4(in)
		require.True(t, ok, in)
		require.Equal(t, netip.MustParseAddr(want), got, in)
	}
}
