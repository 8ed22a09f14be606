package notify

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/url"
	"strings"
	"time"

	"github.com/tokka-dev/tokka/pkg/secret"
)

// SMTPConfig says how to reach the mail relay. Build it with ParseSMTPURL.
type SMTPConfig struct {
	Host     string
	Port     string
	Username string
	Password *secret.Key // redacts itself when printed
	// Implicit is smtps:// (TLS from the first byte, usually port 465);
	// otherwise the connection is upgraded with STARTTLS, which is required
	// unless the relay is on a loopback address.
	Implicit bool
	From     string // SMTP_FROM, a bare address
	Timeout  time.Duration
	// RootCAs replaces the system roots (tests); nil = system roots.
	RootCAs *x509.CertPool
	// Dial replaces the TCP dialer (tests); nil = net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// ParseSMTPURL reads SMTP_URL (smtp://user:pass@host:port or
// smtps://user:pass@host:port; user and password optional,
// percent-encoded) and SMTP_FROM. Its errors name the variable and never
// quote the URL, which holds a password.
func ParseSMTPURL(raw, from string) (SMTPConfig, error) {
	var c SMTPConfig
	u, err := url.Parse(raw)
	if err != nil {
		return c, errors.New("SMTP_URL: not a URL like smtp://user:password@host:587")
	}
	switch u.Scheme {
	case "smtp":
		c.Port = "587"
	case "smtps":
		c.Implicit, c.Port = true, "465"
	default:
		return c, errors.New("SMTP_URL: scheme must be smtp:// (STARTTLS) or smtps:// (implicit TLS)")
	}
	if u.Hostname() == "" {
		return c, errors.New("SMTP_URL: a host is required")
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return c, errors.New("SMTP_URL: only scheme, user, password, host and port are allowed")
	}
	c.Host = u.Hostname()
	if p := u.Port(); p != "" {
		c.Port = p
	}
	if u.User != nil {
		c.Username = u.User.Username()
		if p, ok := u.User.Password(); ok {
			c.Password = secret.FromString(p)
		}
	}
	if from == "" {
		return c, errors.New("SMTP_FROM is required when SMTP_URL is set (the sender address)")
	}
	a, err := mail.ParseAddress(from)
	if err != nil {
		return c, errors.New("SMTP_FROM: not an email address")
	}
	c.From = a.Address
	return c, nil
}

// Mailer sends plain-text email through one SMTP relay.
type Mailer struct {
	cfg SMTPConfig
}

// NewMailer returns a Mailer for cfg.
func NewMailer(cfg SMTPConfig) *Mailer {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	return &Mailer{cfg: cfg}
}

// Email is one message.
type Email struct {
	To      string
	Subject string
	Body    string // plain text
}

// Send delivers e. Errors are *SendError with a caller-safe reason (the
// relay's own reply text is not kept: it can quote addresses and names).
func (m *Mailer) Send(ctx context.Context, e Email) error {
	to, err := mail.ParseAddress(e.To)
	if err != nil {
		return &SendError{Reason: "the recipient address is not valid"}
	}
	msg := buildMessage(m.cfg.From, to.Address, e.Subject, e.Body, time.Now())
	ctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	defer cancel()
	dial := m.cfg.Dial
	if dial == nil {
		d := net.Dialer{Timeout: m.cfg.Timeout}
		dial = d.DialContext
	}
	conn, err := dial(ctx, "tcp", net.JoinHostPort(m.cfg.Host, m.cfg.Port))
	if err != nil {
		return &SendError{Reason: "could not connect to the mail relay", Retryable: true}
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	tlsCfg := &tls.Config{ServerName: m.cfg.Host, MinVersion: tls.VersionTLS12, RootCAs: m.cfg.RootCAs}
	if m.cfg.Implicit {
		tc := tls.Client(conn, tlsCfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return &SendError{Reason: "the TLS handshake with the mail relay failed"}
		}
		conn = tc
	}
	c, err := smtp.NewClient(conn, m.cfg.Host)
	if err != nil {
		return &SendError{Reason: "the mail relay did not greet", Retryable: true}
	}
	defer c.Close()
	if err := c.Hello("tokka"); err != nil {
		return &SendError{Reason: "the mail relay refused EHLO"}
	}
	if !m.cfg.Implicit {
		if ok, _ := c.Extension("STARTTLS"); ok {
			if err := c.StartTLS(tlsCfg); err != nil {
				return &SendError{Reason: "STARTTLS with the mail relay failed"}
			}
		} else if !isLoopbackHost(m.cfg.Host) {
			return &SendError{Reason: "the mail relay does not offer STARTTLS; refusing to send in clear text"}
		}
	}
	if m.cfg.Username != "" {
		pw := string(m.cfg.Password.Bytes())
		if err := c.Auth(smtp.PlainAuth("", m.cfg.Username, pw, m.cfg.Host)); err != nil {
			return &SendError{Reason: "the mail relay refused the configured credentials"}
		}
	}
	if err := c.Mail(m.cfg.From); err != nil {
		return &SendError{Reason: "the mail relay refused the sender address"}
	}
	if err := c.Rcpt(to.Address); err != nil {
		return &SendError{Reason: "the mail relay refused the recipient"}
	}
	w, err := c.Data()
	if err != nil {
		return &SendError{Reason: "the mail relay refused the message", Retryable: true}
	}
	if _, err := w.Write(msg); err != nil {
		return &SendError{Reason: "sending the message failed", Retryable: true}
	}
	if err := w.Close(); err != nil {
		return &SendError{Reason: "the mail relay refused the message", Retryable: true}
	}
	_ = c.Quit()
	return nil
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// buildMessage writes an RFC 5322 message with a quoted-printable UTF-8
// body. Header values have CR and LF removed, so nothing a user typed (a
// budget name in the subject) can add a header.
func buildMessage(from, to, subject, body string, now time.Time) []byte {
	clean := func(s string) string { return strings.NewReplacer("\r", " ", "\n", " ").Replace(s) }
	var id [12]byte
	_, _ = rand.Read(id[:])
	domain := "tokka.invalid"
	if at := strings.LastIndexByte(from, '@'); at >= 0 {
		domain = from[at+1:]
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: %s\r\n", clean(from))
	fmt.Fprintf(&b, "To: %s\r\n", clean(to))
	fmt.Fprintf(&b, "Subject: %s\r\n", mime.QEncoding.Encode("utf-8", clean(subject)))
	fmt.Fprintf(&b, "Date: %s\r\n", now.UTC().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s@%s>\r\n", hex.EncodeToString(id[:]), clean(domain))
	b.WriteString("MIME-Version: 1.0\r\n")
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\n")
	b.WriteString("Content-Transfer-Encoding: quoted-printable\r\n")
	b.WriteString("Auto-Submitted: auto-generated\r\n\r\n")
	qp := quotedprintable.NewWriter(&b)
	_, _ = qp.Write([]byte(strings.ReplaceAll(strings.ReplaceAll(body, "\r\n", "\n"), "\n", "\r\n")))
	_ = qp.Close()
	b.WriteString("\r\n")
	return b.Bytes()
}
