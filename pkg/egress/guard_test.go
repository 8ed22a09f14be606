package egress_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/egress"
	"github.com/tokka-dev/tokka/pkg/notify/notifytest"
)

func literalURL(addr string) string {
	if strings.Contains(addr, ":") {
		return "https://[" + addr + "]/hook"
	}
	return "https://" + addr + "/hook"
}

func TestCheckURLRefusesEveryForbiddenClassAsLiteralAndByName(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	res := notifytest.NewResolver()
	g := &egress.Guard{Resolver: res}
	for class, addr := range notifytest.ForbiddenAddrs {
		t.Run(class, func(t *testing.T) {
			_, err := g.CheckURL(ctx, literalURL(addr))
			var re *egress.RefusedError
			require.ErrorAs(t, err, &re, "literal %s", addr)
			require.NotContains(t, re.Reason, addr, "reasons never echo the address")

			host := strings.NewReplacer(" ", "-", "/", "-").Replace(class) + ".example.test"
			res.Set(host, []string{"93.184.216.34", addr}) // one bad address spoils the name
			_, err = g.CheckURL(ctx, "https://"+host+"/hook")
			require.ErrorAs(t, err, &re, "name resolving to %s", addr)
		})
	}
}

func TestCheckURLRefusesDisguisedAndMalformedDestinations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	res := notifytest.NewResolver()
	res.Set("hooks.example.com", []string{"93.184.216.34"})
	g := &egress.Guard{Resolver: res}
	for _, raw := range []string{
		"http://hooks.example.com/hook",          // not https
		"ftp://hooks.example.com/hook",           // not http(s)
		"//hooks.example.com/hook",               // no scheme
		"https:hooks.example.com",                // opaque
		"https://user:pass@hooks.example.com/",   // credentials
		"https://hooks.example.com:8443/hook",    // non-443 port
		"https://hooks.example.com:0/hook",       // bad port
		"https://2130706433/",                    // decimal 127.0.0.1
		"https://0x7f000001/",                    // hex
		"https://0x7f.0.0.1/",                    // hex part
		"https://0177.0.0.1/",                    // octal
		"https://017700000001/",                  // octal whole
		"https://127.1/",                         // short form
		"https://3232235777/",                    // decimal 192.168.1.1
		"https://0xa9.0xfe.0xa9.0xfe/",           // metadata in hex
		"https://[fe80::1%25eth0]/",              // zone
		"https://localhost/",                     // loopback name
		"https://api.localhost/",                 // loopback name
		"https://1.2.3.4.5/",                     // numeric TLD
		"https://unknown.example.test/",          // does not resolve
		"https://bad_host!.example.com/",         // invalid name
		"https://exämple.com/",                   // not punycode
		"https://hooks.example.com/\nX-Injected", // control character
		"",
		"https://" + strings.Repeat("a", 2100) + ".com/",
	} {
		_, err := g.CheckURL(ctx, raw)
		var re *egress.RefusedError
		require.ErrorAs(t, err, &re, "%q must be refused", raw)
	}
	for _, raw := range []string{
		"https://hooks.example.com/hook?x=1",
		"https://hooks.example.com:443/hook",
		"https://HOOKS.example.com/hook",
		"https://93.184.216.34/hook",
		"https://[2606:4700:4700::1111]/hook",
	} {
		u, err := g.CheckURL(ctx, raw)
		require.NoError(t, err, raw)
		require.Equal(t, "https", u.Scheme)
	}
}

func TestLoopbackFlagAllowsOnlyLoopback(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	res := notifytest.NewResolver()
	res.Set("hooks.example.com", []string{"93.184.216.34"})
	dev := &egress.Guard{AllowLoopback: true, Resolver: res}
	for _, raw := range []string{"http://127.0.0.1:8080/hook", "https://127.0.0.1:9443/hook", "http://[::1]:8080/", "http://localhost:8080/"} {
		_, err := dev.CheckURL(ctx, raw)
		if raw == "http://localhost:8080/" {
			// localhost is a name: it must still resolve (here it does not).
			require.Error(t, err)
			continue
		}
		require.NoError(t, err, raw)
	}
	for _, raw := range []string{
		"http://hooks.example.com/hook",   // http only to loopback
		"https://hooks.example.com:8443/", // other ports only to loopback
		"http://10.0.0.1/", "https://169.254.169.254/", "https://[::ffff:192.168.0.1]/", "http://0.0.0.0:8080/",
	} {
		_, err := dev.CheckURL(ctx, raw)
		require.Error(t, err, raw)
	}
	strict := &egress.Guard{Resolver: res}
	_, err := strict.CheckURL(ctx, "http://127.0.0.1:8080/hook")
	require.Error(t, err, "off by default")
}

func TestDialConnectsToTheAddressItChecked(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	res := notifytest.NewResolver()
	res.Set("receiver.test", []string{"127.0.0.1"})
	g := &egress.Guard{AllowLoopback: true, Resolver: res}
	conn, err := g.DialContext(context.Background(), "tcp", "receiver.test:"+port)
	require.NoError(t, err)
	require.Equal(t, ln.Addr().String(), conn.RemoteAddr().String())
	conn.Close()
	require.Equal(t, 1, res.Calls("receiver.test"), "one lookup, and the dial used its answer")

	// A name that now resolves somewhere forbidden is refused before any
	// connection is attempted.
	res.Set("receiver.test", []string{"10.0.0.7"})
	_, err = g.DialContext(context.Background(), "tcp", "receiver.test:"+port)
	var re *egress.RefusedError
	require.True(t, errors.As(err, &re))
}
