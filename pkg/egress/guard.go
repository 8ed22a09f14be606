// Package egress decides where Tokka may send a request on a user's behalf
// (webhook and Slack destinations): a URL is checked when it is saved and
// every address again when it is dialled, so neither a private address nor
// a name that later re-resolves to one (DNS rebinding) is ever contacted.
// Its errors never quote the URL, so callers may store and show them.
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Resolver looks host names up; *net.Resolver implements it. Tests inject
// one to simulate DNS rebinding.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Guard decides which webhook destinations may be contacted. A destination
// is checked when the URL is saved (CheckURL) and again on every connection
// (DialContext), which resolves the name, checks every address and then dials
// exactly the address it checked, so a name that re-resolves to an internal
// address after it was saved (DNS rebinding) is still refused.
type Guard struct {
	// AllowLoopback (WEBHOOK_ALLOW_LOOPBACK_HTTP, for local development and
	// tests only) permits loopback destinations (127.0.0.0/8, ::1) on any
	// port and, for them alone, plain http. Every other rule still holds.
	AllowLoopback bool
	// Resolver resolves host names; nil means net.DefaultResolver.
	Resolver Resolver
	// DialTimeout bounds one TCP connect; default 10s.
	DialTimeout time.Duration
}

// RefusedError says why a destination is not allowed, in words safe to show
// to the user (no address, no URL).
type RefusedError struct {
	Reason string
}

func (e *RefusedError) Error() string { return "webhook destination refused: " + e.Reason }

func refused(format string, args ...any) *RefusedError {
	if len(args) == 0 {
		return &RefusedError{Reason: format}
	}
	return &RefusedError{Reason: fmt.Sprintf(format, args...)}
}

// MaxURLLength caps a webhook URL.
const MaxURLLength = 2048

// CheckURL parses raw and checks that it is an allowed webhook destination:
// https only (http only to loopback with AllowLoopback), no credentials in
// the URL, the default port, a host that is a canonical IP address or a DNS
// name, and every address the host resolves to a public unicast address (not
// loopback, link-local, private, CGNAT, unspecified, multicast, reserved,
// documentation or a cloud metadata endpoint). An IPv6 address that carries
// an IPv4 address (IPv4-mapped, IPv4-translated, IPv4-compatible, NAT64,
// 6to4, Teredo) is judged by the IPv4 address inside, and only the mapped
// and well-known NAT64 forms of a public address pass. It returns the
// normalised URL, or a *RefusedError.
func (g *Guard) CheckURL(ctx context.Context, raw string) (*url.URL, error) {
	if raw == "" {
		return nil, refused("the URL is empty")
	}
	if len(raw) > MaxURLLength {
		return nil, refused("the URL is longer than %d characters", MaxURLLength)
	}
	for _, r := range raw {
		if r <= ' ' || r == 0x7f || r > 0x7e {
			return nil, refused("the URL contains spaces, control or non-ASCII characters (use the punycode form of the host)")
		}
	}
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" || u.Host == "" {
		return nil, refused("the URL is not an absolute http(s) URL")
	}
	scheme := strings.ToLower(u.Scheme)
	switch {
	case scheme == "https":
	case scheme == "http" && g.AllowLoopback:
	default:
		return nil, refused("the URL must use https")
	}
	u.Scheme = scheme
	if u.User != nil {
		return nil, refused("the URL must not contain a user name or password")
	}
	host, port := u.Hostname(), u.Port()
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, refused("the URL has an invalid port")
		}
	}
	addrs, err := g.resolve(ctx, host)
	if err != nil {
		return nil, err
	}
	allLoopback := true
	for _, a := range addrs {
		if err := g.checkAddr(a); err != nil {
			return nil, err
		}
		allLoopback = allLoopback && a.Unmap().IsLoopback()
	}
	if scheme == "http" && !allLoopback {
		return nil, refused("the URL must use https")
	}
	if port != "" && port != "443" && !allLoopback {
		return nil, refused("the URL must use the standard https port 443")
	}
	u.Host = strings.ToLower(u.Host)
	return u, nil
}

// DialContext is an http.Transport dialer that resolves address's host,
// refuses it unless every address is allowed, and then connects to one of
// exactly those checked addresses (never resolving again).
func (g *Guard) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return nil, refused("the destination address is malformed")
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, refused("the destination port is malformed")
	}
	addrs, err := g.resolve(ctx, host)
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		if err := g.checkAddr(a); err != nil {
			return nil, err
		}
		if port != 443 && !a.Unmap().IsLoopback() {
			return nil, refused("the URL must use the standard https port 443")
		}
	}
	timeout := g.DialTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	d := net.Dialer{Timeout: timeout}
	var lastErr error
	for _, a := range addrs {
		conn, err := d.DialContext(ctx, network, netip.AddrPortFrom(a.Unmap(), uint16(port)).String())
		if err == nil {
			return conn, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

// resolve turns a URL host into the addresses to check: a canonical IP
// literal as itself, a DNS name through the resolver. Numeric hosts in any
// other form (2130706433, 0x7f.1, 0177.0.0.1, 127.1) are refused outright:
// resolvers disagree on what they mean, which is what SSRF filters trip on.
func (g *Guard) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if host == "" {
		return nil, refused("the URL has no host")
	}
	if strings.Contains(host, "%") {
		return nil, refused("the host must not carry an IPv6 zone")
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a}, nil
	}
	if _, ok := parseLegacyIPv4(host); ok {
		return nil, refused("the host is an IP address in a non-standard form; write it as dotted decimal")
	}
	name := strings.TrimSuffix(strings.ToLower(host), ".")
	if !validHostName(name) {
		return nil, refused("the host is not a valid DNS name or IP address")
	}
	if (name == "localhost" || strings.HasSuffix(name, ".localhost")) && !g.AllowLoopback {
		return nil, refused("the host is a loopback address")
	}
	r := g.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := r.LookupNetIP(lctx, "ip", name)
	if err != nil || len(addrs) == 0 {
		return nil, refused("the host name does not resolve")
	}
	return addrs, nil
}

func validHostName(name string) bool {
	if len(name) == 0 || len(name) > 253 {
		return false
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	// A top-level label is never all digits; a name that is looks like an
	// address in disguise.
	last := labels[len(labels)-1]
	return strings.Trim(last, "0123456789") != ""
}

// parseLegacyIPv4 parses the inet_aton forms: one to four parts, each
// decimal, octal (leading 0) or hex (0x), the last filling the remaining
// bytes. It reports whether host is such a number.
func parseLegacyIPv4(host string) (netip.Addr, bool) {
	parts := strings.Split(host, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	vals := make([]uint64, len(parts))
	for i, p := range parts {
		base := 10
		switch {
		case strings.HasPrefix(p, "0x") || strings.HasPrefix(p, "0X"):
			base, p = 16, p[2:]
		case len(p) > 1 && p[0] == '0':
			base, p = 8, p[1:]
		}
		if p == "" {
			return netip.Addr{}, false
		}
		v, err := strconv.ParseUint(p, base, 32)
		if err != nil {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	var n uint64
	for i, v := range vals {
		if i < len(vals)-1 {
			if v > 0xff {
				return netip.Addr{}, false
			}
			n |= v << (8 * (3 - i))
			continue
		}
		if v >= 1<<(8*(4-i)) {
			return netip.Addr{}, false
		}
		n |= v
	}
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true
}

type blocked struct {
	prefix netip.Prefix
	what   string
}

// Cloud metadata endpoints are checked first so they are named as such.
var metadataAddrs = []blocked{
	{netip.MustParsePrefix("169.254.169.254/32"), "a cloud metadata endpoint"}, // AWS, GCP, Azure, OpenStack, …
	{netip.MustParsePrefix("169.254.170.2/32"), "a cloud metadata endpoint"},   // AWS ECS task metadata
	{netip.MustParsePrefix("fd00:ec2::254/128"), "a cloud metadata endpoint"},  // AWS IMDS over IPv6
	{netip.MustParsePrefix("fd20:ce::254/128"), "a cloud metadata endpoint"},   // GCP metadata over IPv6
	{netip.MustParsePrefix("168.63.129.16/32"), "a cloud metadata endpoint"},   // Azure WireServer
	{netip.MustParsePrefix("100.100.100.200/32"), "a cloud metadata endpoint"}, // Alibaba Cloud
	{netip.MustParsePrefix("192.0.0.192/32"), "a cloud metadata endpoint"},     // Oracle Cloud
}

var reservedAddrs = []blocked{
	{netip.MustParsePrefix("100.64.0.0/10"), "a carrier-grade NAT (CGNAT) address"},
	{netip.MustParsePrefix("0.0.0.0/8"), "an unspecified (\"this network\") address"},
	{netip.MustParsePrefix("192.0.0.0/24"), "a reserved (IETF protocol) address"},
	{netip.MustParsePrefix("192.0.2.0/24"), "a documentation address"},
	{netip.MustParsePrefix("198.51.100.0/24"), "a documentation address"},
	{netip.MustParsePrefix("203.0.113.0/24"), "a documentation address"},
	{netip.MustParsePrefix("198.18.0.0/15"), "a benchmarking address"},
	{netip.MustParsePrefix("240.0.0.0/4"), "a reserved or broadcast address"},
	{netip.MustParsePrefix("::/96"), "a reserved (IPv4-compatible) address"},
	{netip.MustParsePrefix("::ffff:0:0:0/96"), "a reserved (IPv4-translated) address"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "a local-use NAT64 address"},
	{netip.MustParsePrefix("100::/64"), "a discard-only address"},
	{netip.MustParsePrefix("2001::/32"), "a Teredo tunnel address"},
	{netip.MustParsePrefix("2001:db8::/32"), "a documentation address"},
	{netip.MustParsePrefix("2002::/16"), "a 6to4 tunnel address"},
	{netip.MustParsePrefix("fec0::/10"), "a site-local address"},
}

// IPv6 forms that carry an IPv4 address (IPv4-mapped ::ffff:0:0/96 is
// unmapped before these are looked at).
var (
	nat64          = netip.MustParsePrefix("64:ff9b::/96")    // RFC 6052 well-known prefix
	nat64Local     = netip.MustParsePrefix("64:ff9b:1::/48")  // RFC 8215 local-use prefix
	v4Translated   = netip.MustParsePrefix("::ffff:0:0:0/96") // RFC 2765 SIIT
	v4Compatible   = netip.MustParsePrefix("::/96")           // RFC 4291, deprecated
	sixToFour      = netip.MustParsePrefix("2002::/16")       // RFC 3056
	teredo         = netip.MustParsePrefix("2001::/32")       // RFC 4380
	strictEmbedded = &Guard{}                                 // judges embedded addresses: no loopback exception
)

// embeddedIPv4 returns the IPv4 addresses an IPv6 address a carries in one
// of the translation or tunnelling forms, and the form's name; none for any
// other address. Teredo carries its server and, inverted, its client. A
// local-use NAT64 prefix may be /48 to /96 long (RFC 6052 §2.2), which the
// address does not tell; it is read as the usual /96, and the whole /48 is
// refused anyway (reservedAddrs), whatever it carries.
func embeddedIPv4(a netip.Addr) (string, []netip.Addr) {
	b := a.As16()
	v4 := func(i, j, k, l int) netip.Addr { return netip.AddrFrom4([4]byte{b[i], b[j], b[k], b[l]}) }
	switch {
	case nat64.Contains(a):
		return "a NAT64 address", []netip.Addr{v4(12, 13, 14, 15)}
	case nat64Local.Contains(a):
		return "a local-use NAT64 address", []netip.Addr{v4(12, 13, 14, 15)}
	case v4Translated.Contains(a):
		return "an IPv4-translated address", []netip.Addr{v4(12, 13, 14, 15)}
	case v4Compatible.Contains(a) && !a.IsUnspecified() && !a.IsLoopback():
		return "an IPv4-compatible address", []netip.Addr{v4(12, 13, 14, 15)}
	case sixToFour.Contains(a):
		return "a 6to4 tunnel address", []netip.Addr{v4(2, 3, 4, 5)}
	case teredo.Contains(a):
		client := netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]})
		return "a Teredo tunnel address", []netip.Addr{v4(4, 5, 6, 7), client}
	}
	return "", nil
}

// checkAddr refuses every address that is not public unicast.
func (g *Guard) checkAddr(a netip.Addr) error {
	if !a.IsValid() {
		return refused("the host resolves to an invalid address")
	}
	if a.Zone() != "" {
		return refused("the host must not carry an IPv6 zone")
	}
	// An IPv6 address that carries an IPv4 address may reach it (through
	// the kernel, a NAT64 or SIIT translator, or a tunnel relay): judge the
	// IPv4 address inside first, strictly, so the reason says what is in
	// there. IPv4-mapped addresses are the IPv4 address itself.
	a = a.Unmap()
	if form, inner := embeddedIPv4(a); form != "" {
		for _, v4 := range inner {
			var re *RefusedError
			if err := strictEmbedded.checkAddr(v4); errors.As(err, &re) {
				return refused("%s (inside %s)", re.Reason, form)
			}
		}
		// The well-known NAT64 prefix of a public IPv4 address is that
		// address; the other forms are refused below as what they are.
		if nat64.Contains(a) {
			return nil
		}
	}
	for _, m := range metadataAddrs {
		if m.prefix.Contains(a) {
			return refused("the host is or resolves to %s", m.what)
		}
	}
	switch {
	case a.IsUnspecified():
		return refused("the host is or resolves to an unspecified address")
	case a.IsLoopback():
		if g.AllowLoopback {
			return nil
		}
		return refused("the host is or resolves to a loopback address")
	case a.IsLinkLocalUnicast():
		return refused("the host is or resolves to a link-local address")
	case a.IsMulticast():
		return refused("the host is or resolves to a multicast address")
	case a.IsPrivate():
		return refused("the host is or resolves to a private address")
	}
	for _, r := range reservedAddrs {
		if r.prefix.Contains(a) {
			return refused("the host is or resolves to %s", r.what)
		}
	}
	if !a.IsGlobalUnicast() {
		return refused("the host is or resolves to an address that is not public")
	}
	return nil
}

// Reason returns a caller-safe description of err: the refusal reason for a
// *RefusedError, otherwise a generic phrase.
func Reason(err error) string {
	var re *RefusedError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &re):
		return re.Error()
	}
	return "the destination is not allowed"
}
