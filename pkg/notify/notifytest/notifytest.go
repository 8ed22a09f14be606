// Package notifytest has local receivers for tests of notifications: a
// minimal SMTP server on 127.0.0.1 (net/textproto) and a recording webhook
// receiver. It is never used outside tests.
package notifytest

import (
	"bufio"
	"context"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/textproto"
	"strings"
	"sync"
	"testing"
)

// Mail is one message the SMTP server accepted.
type Mail struct {
	From     string
	To       []string
	Data     string // the message as received, dot-unstuffed
	Username string // from AUTH PLAIN, when the client authenticated
	Password string
}

// SMTPServer is a minimal SMTP receiver: EHLO/HELO, AUTH PLAIN, MAIL, RCPT,
// DATA, RSET, NOOP, QUIT. It offers no STARTTLS, which Tokka's mailer
// accepts only for loopback relays.
type SMTPServer struct {
	Addr string
	ln   net.Listener
	mu   sync.Mutex
	msgs []Mail
	wg   sync.WaitGroup
}

// NewSMTPServer listens on 127.0.0.1 and stops when the test ends.
func NewSMTPServer(tb testing.TB) *SMTPServer {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &SMTPServer{Addr: ln.Addr().String(), ln: ln}
	s.wg.Go(s.serve)
	tb.Cleanup(func() { _ = ln.Close(); s.wg.Wait() })
	return s
}

// URL returns an SMTP_URL for this server with the given credentials.
func (s *SMTPServer) URL(user, password string) string {
	if user == "" {
		return "smtp://" + s.Addr
	}
	return "smtp://" + user + ":" + password + "@" + s.Addr
}

// Messages returns a copy of what was received so far.
func (s *SMTPServer) Messages() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.msgs...)
}

func (s *SMTPServer) serve() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Go(func() { s.session(c) })
	}
}

func (s *SMTPServer) session(c net.Conn) {
	defer c.Close()
	tp := textproto.NewConn(c)
	_ = tp.PrintfLine("220 notifytest ESMTP ready")
	var cur Mail
	var user, pass string
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			_ = tp.PrintfLine("250-notifytest greets %s", arg)
			_ = tp.PrintfLine("250-AUTH PLAIN")
			_ = tp.PrintfLine("250 8BITMIME")
		case "HELO":
			_ = tp.PrintfLine("250 notifytest")
		case "AUTH":
			mech, resp, _ := strings.Cut(arg, " ")
			if !strings.EqualFold(mech, "PLAIN") {
				_ = tp.PrintfLine("504 unsupported mechanism")
				continue
			}
			if resp == "" {
				_ = tp.PrintfLine("334 ")
				if resp, err = tp.ReadLine(); err != nil {
					return
				}
			}
			raw, err := base64.StdEncoding.DecodeString(resp)
			parts := strings.Split(string(raw), "\x00")
			if err != nil || len(parts) != 3 {
				_ = tp.PrintfLine("501 malformed AUTH PLAIN")
				continue
			}
			user, pass = parts[1], parts[2]
			_ = tp.PrintfLine("235 2.7.0 authenticated")
		case "MAIL":
			cur = Mail{From: addrOf(arg), Username: user, Password: pass}
			_ = tp.PrintfLine("250 ok")
		case "RCPT":
			cur.To = append(cur.To, addrOf(arg))
			_ = tp.PrintfLine("250 ok")
		case "DATA":
			_ = tp.PrintfLine("354 end with <CRLF>.<CRLF>")
			data, err := tp.ReadDotBytes()
			if err != nil {
				return
			}
			cur.Data = string(data)
			s.mu.Lock()
			s.msgs = append(s.msgs, cur)
			s.mu.Unlock()
			cur = Mail{}
			_ = tp.PrintfLine("250 queued")
		case "RSET":
			cur = Mail{}
			_ = tp.PrintfLine("250 ok")
		case "NOOP":
			_ = tp.PrintfLine("250 ok")
		case "QUIT":
			_ = tp.PrintfLine("221 bye")
			return
		default:
			_ = tp.PrintfLine("502 command not implemented")
		}
	}
}

// addrOf extracts the address from "FROM:<a@b> SIZE=…" or "TO:<a@b>".
func addrOf(arg string) string {
	if i := strings.IndexByte(arg, '<'); i >= 0 {
		if j := strings.IndexByte(arg[i:], '>'); j >= 0 {
			return arg[i+1 : i+j]
		}
	}
	return arg
}

// Request is one request a Receiver recorded.
type Request struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte
}

// Receiver records webhook requests and answers each with the next scripted
// answer (200 when they run out).
type Receiver struct {
	Server  *httptest.Server
	mu      sync.Mutex
	reqs    []Request
	answers []SlackAnswer
	// otherwise is the answer once the scripted ones run out.
	otherwise SlackAnswer
}

// SlackAnswer is one scripted answer: Slack's incoming webhooks answer
// "ok" with 200, and an error code such as channel_not_found as the plain
// text body of a 4xx or 5xx.
type SlackAnswer struct {
	Status     int
	Body       string
	RetryAfter string // the Retry-After header, when set
}

// receiverBody is what a Receiver says with a bare status: a body that
// must never be stored or shown.
const receiverBody = "receiver says: not to be stored\n"

func statusAnswers(statuses []int) []SlackAnswer {
	out := make([]SlackAnswer, len(statuses))
	for i, s := range statuses {
		out[i] = SlackAnswer{Status: s, Body: receiverBody}
	}
	return out
}

// NewTLSReceiver starts an HTTPS receiver on 127.0.0.1 (certificate valid for
// 127.0.0.1), closed when the test ends.
func NewTLSReceiver(tb testing.TB, statuses ...int) *Receiver {
	r := &Receiver{answers: statusAnswers(statuses), otherwise: SlackAnswer{Status: http.StatusOK, Body: receiverBody}}
	r.Server = httptest.NewTLSServer(r)
	tb.Cleanup(r.Server.Close)
	return r
}

// NewReceiver starts a plain-HTTP receiver on 127.0.0.1, closed when the test
// ends.
func NewReceiver(tb testing.TB, statuses ...int) *Receiver {
	r := &Receiver{answers: statusAnswers(statuses), otherwise: SlackAnswer{Status: http.StatusOK, Body: receiverBody}}
	r.Server = httptest.NewServer(r)
	tb.Cleanup(r.Server.Close)
	return r
}

// NewSlackReceiver starts a plain-HTTP fake of Slack's incoming webhooks on
// 127.0.0.1: it gives the scripted answers, then 200 "ok". It is closed
// when the test ends.
func NewSlackReceiver(tb testing.TB, answers ...SlackAnswer) *Receiver {
	r := &Receiver{answers: answers, otherwise: SlackAnswer{Status: http.StatusOK, Body: "ok"}}
	r.Server = httptest.NewServer(r)
	tb.Cleanup(r.Server.Close)
	return r
}

// ServeHTTP records the request.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(bufio.NewReader(req.Body))
	r.mu.Lock()
	r.reqs = append(r.reqs, Request{Method: req.Method, Path: req.URL.Path, Header: req.Header.Clone(), Body: body})
	a := r.otherwise
	if len(r.answers) > 0 {
		a, r.answers = r.answers[0], r.answers[1:]
	}
	r.mu.Unlock()
	if a.Status >= 300 && a.Status < 400 {
		w.Header().Set("Location", "http://169.254.169.254/latest/meta-data/")
	}
	if a.RetryAfter != "" {
		w.Header().Set("Retry-After", a.RetryAfter)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(a.Status)
	_, _ = io.WriteString(w, a.Body)
}

// Requests returns a copy of what was received so far.
func (r *Receiver) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Request(nil), r.reqs...)
}

// Resolver is a scripted DNS resolver: each name answers its scripted
// address lists in turn (the last one repeating), which is how tests
// simulate DNS rebinding. Unknown names do not resolve.
type Resolver struct {
	mu      sync.Mutex
	answers map[string][][]netip.Addr
	calls   map[string]int
}

// NewResolver returns an empty Resolver.
func NewResolver() *Resolver {
	return &Resolver{answers: map[string][][]netip.Addr{}, calls: map[string]int{}}
}

// Set scripts host: the first lookup gets answers[0], the next answers[1], …
func (r *Resolver) Set(host string, answers ...[]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var as [][]netip.Addr
	for _, ans := range answers {
		var list []netip.Addr
		for _, a := range ans {
			list = append(list, netip.MustParseAddr(a))
		}
		as = append(as, list)
	}
	r.answers[host] = as
	r.calls[host] = 0
}

// Calls reports how often host was looked up.
func (r *Resolver) Calls(host string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[host]
}

// LookupNetIP implements egress.Resolver.
func (r *Resolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	as, ok := r.answers[host]
	if !ok || len(as) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	i := min(r.calls[host], len(as)-1)
	r.calls[host]++
	return as[i], nil
}

// ForbiddenAddrs is one address per class the egress guard must refuse, in every
// spelling an attacker might try.
var ForbiddenAddrs = map[string]string{
	"loopback v4":              "127.0.0.1",
	"loopback v4 other":        "127.10.20.30",
	"loopback v6":              "::1",
	"v4-mapped loopback":       "::ffff:127.0.0.1",
	"v4-mapped private":        "::ffff:10.0.0.1",
	"v4-mapped metadata":       "::ffff:169.254.169.254",
	"unspecified v4":           "0.0.0.0",
	"this network":             "0.1.2.3",
	"unspecified v6":           "::",
	"private 10/8":             "10.1.2.3",
	"private 172.16/12":        "172.16.0.1",
	"private 192.168/16":       "192.168.1.1",
	"private v6 ULA":           "fd12:3456::1",
	"CGNAT":                    "100.64.0.1",
	"link-local v4":            "169.254.1.1",
	"link-local v6":            "fe80::1",
	"metadata AWS/GCP/Azure":   "169.254.169.254",
	"metadata AWS v6":          "fd00:ec2::254",
	"metadata Azure wire":      "168.63.129.16",
	"metadata Alibaba":         "100.100.100.200",
	"metadata Oracle":          "192.0.0.192",
	"multicast v4":             "224.0.0.1",
	"multicast v6":             "ff02::1",
	"broadcast":                "255.255.255.255",
	"reserved 240/4":           "240.0.0.1",
	"documentation v4":         "192.0.2.1",
	"documentation v6":         "2001:db8::1",
	"benchmarking":             "198.18.0.1",
	"NAT64 of private":         "64:ff9b::a00:1",
	"NAT64 of loopback":        "64:ff9b::7f00:1",
	"6to4":                     "2002:7f00:1::1",
	"Teredo":                   "2001:0:4136:e378:8000:63bf:3fff:fdd2",
	"IPv4-compatible loopback": "::127.0.0.1",
	"site-local v6":            "fec0::1",
}
