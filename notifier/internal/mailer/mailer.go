// Package mailer sends the notifier's email over SMTP with
// github.com/wneessen/go-mail: STARTTLS (opportunistic or mandatory),
// implicit TLS or none, and SMTP AUTH when a username is configured.
//
// Send tells the caller whether a failure is worth retrying: an error for
// which IsPermanent is true (a 5xx reply to MAIL FROM, RCPT TO or DATA, or a
// message that cannot be sent at all) will fail again; any other error
// (connection refused or lost, timeout, TLS or AUTH failure, a 4xx reply)
// may succeed later.
package mailer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	netmail "net/mail"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	mail "github.com/wneessen/go-mail"
)

// TLS modes of Config.TLS (the values of SMTP_TLS).
const (
	// TLSOpportunistic uses STARTTLS when the server offers it, else plain text.
	TLSOpportunistic = "opportunistic"
	// TLSMandatory requires STARTTLS; a server without it is an error.
	TLSMandatory = "mandatory"
	// TLSImplicit speaks TLS from the first byte (SMTPS, usually port 465).
	TLSImplicit = "implicit"
	// TLSNone never encrypts.
	TLSNone = "none"
)

// When TLS is required, Config.RequireTLS (the values of SMTP_REQUIRE_TLS).
const (
	// RequireTLSAuto requires it for a server not on loopback: mail to
	// the local sink stays plain, mail to a relay never is.
	RequireTLSAuto = "auto"
	// RequireTLSAlways requires it for every server.
	RequireTLSAlways = "true"
	// RequireTLSNever leaves it to Config.TLS, for a sink on a private
	// network that offers no TLS (compose's MailDev).
	RequireTLSNever = "false"
)

// ErrTLSRequired is the cause of a failed Send or Ping when TLS is
// required (RequireTLS) and the server does not offer STARTTLS.
var ErrTLSRequired = errors.New("the SMTP server does not offer STARTTLS, which is required for a server not on loopback (or by SMTP_REQUIRE_TLS=true); nothing was sent")

// Auth mechanisms of Config.Auth (the values of SMTP_AUTH).
const (
	// AuthAuto picks the strongest mechanism the server offers; PLAIN and
	// LOGIN only over an encrypted connection.
	AuthAuto = "auto"
	// AuthPlain is SASL PLAIN.
	AuthPlain = "plain"
	// AuthLogin is the LOGIN mechanism.
	AuthLogin = "login"
)

// Defaults of a Config.
const (
	DefaultAddr    = "127.0.0.1:1025"
	DefaultFrom    = "audiomill <no-reply@audiomill.local>"
	DefaultTimeout = 30 * time.Second
	DefaultHELO    = "audiomill-notifier"
)

// MaxSubjectLength is the longest subject Send writes, in runes; a longer
// one is cut with an ellipsis.
const MaxSubjectLength = 200

// Config is how to reach the SMTP server.
type Config struct {
	// Addr is the server's host:port.
	Addr string
	// Username and Password enable SMTP AUTH when Username is set.
	Username, Password string
	// Auth is the mechanism: AuthAuto (default), AuthPlain or AuthLogin.
	Auth string
	// TLS is one of the TLS modes; default TLSOpportunistic. When TLS is
	// required (RequireTLS), TLSOpportunistic means TLSMandatory and
	// TLSNone is an error.
	TLS string
	// RequireTLS is when TLS is required: RequireTLSAuto (default),
	// RequireTLSAlways or RequireTLSNever.
	RequireTLS string
	// CAFile is a PEM file of certificates to trust besides the system's
	// (a private relay's own CA); optional.
	CAFile string
	// From is the sender, "Name <address>" or a bare address.
	From string
	// Timeout bounds connecting and each SMTP command; default DefaultTimeout.
	Timeout time.Duration
	// HELO is the name the client greets with; default DefaultHELO.
	HELO string
}

// ConfigError is an invalid Config; Field names the Config field.
type ConfigError struct {
	Field string
	Err   error
}

// Error implements error.
func (e *ConfigError) Error() string { return e.Err.Error() }

// Unwrap returns the cause.
func (e *ConfigError) Unwrap() error { return e.Err }

// Mail is one message to send.
type Mail struct {
	// To is the recipient's bare address.
	To string
	// Subject is written on one line: control characters (CR, LF, …)
	// become spaces, and it is cut at MaxSubjectLength runes.
	Subject string
	// Text and HTML are the two alternative bodies (multipart/alternative).
	Text, HTML string
	// MessageID, without angle brackets, makes the Message-ID header
	// deterministic, so a mail client can recognise a duplicate; optional.
	MessageID string
	// Language is the Content-Language of the message ("en", "zh"); optional.
	Language string
}

// Mailer sends Mail. It is safe for concurrent use: every Send opens its
// own SMTP connection.
type Mailer struct {
	cfg     Config
	host    string
	port    int
	from    *netmail.Address
	tlsConf *tls.Config
}

// New validates cfg and returns a Mailer. It does not connect. An invalid
// cfg is a *ConfigError.
func New(cfg Config) (*Mailer, error) {
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.Auth == "" {
		cfg.Auth = AuthAuto
	}
	if cfg.TLS == "" {
		cfg.TLS = TLSOpportunistic
	}
	if cfg.From == "" {
		cfg.From = DefaultFrom
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.HELO == "" {
		cfg.HELO = DefaultHELO
	}
	if cfg.RequireTLS == "" {
		cfg.RequireTLS = RequireTLSAuto
	}
	host, portStr, err := net.SplitHostPort(cfg.Addr)
	if err != nil || host == "" {
		return nil, &ConfigError{Field: "Addr", Err: fmt.Errorf("smtp address %q: want host:port", cfg.Addr)}
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 {
		return nil, &ConfigError{Field: "Addr", Err: fmt.Errorf("smtp address %q: invalid port", cfg.Addr)}
	}
	switch cfg.TLS {
	case TLSOpportunistic, TLSMandatory, TLSImplicit, TLSNone:
	default:
		return nil, &ConfigError{Field: "TLS", Err: fmt.Errorf("smtp tls mode %q: want %s, %s, %s or %s", cfg.TLS, TLSOpportunistic, TLSMandatory, TLSImplicit, TLSNone)}
	}
	switch cfg.RequireTLS {
	case RequireTLSAuto, RequireTLSAlways, RequireTLSNever:
	default:
		return nil, &ConfigError{Field: "RequireTLS", Err: fmt.Errorf("smtp require tls %q: want %s, %s or %s", cfg.RequireTLS, RequireTLSAuto, RequireTLSAlways, RequireTLSNever)}
	}
	if cfg.RequireTLS == RequireTLSAlways || cfg.RequireTLS == RequireTLSAuto && !Loopback(host) {
		switch cfg.TLS {
		case TLSNone:
			return nil, &ConfigError{Field: "TLS", Err: fmt.Errorf("smtp tls mode %s would send mail in clear text to %s, and TLS is required (a server not on loopback, or SMTP_REQUIRE_TLS=true): use %s, %s or %s",
				TLSNone, cfg.Addr, TLSOpportunistic, TLSMandatory, TLSImplicit)}
		case TLSOpportunistic:
			cfg.TLS = TLSMandatory
		}
	}
	switch cfg.Auth {
	case AuthAuto, AuthPlain, AuthLogin:
	default:
		return nil, &ConfigError{Field: "Auth", Err: fmt.Errorf("smtp auth %q: want %s, %s or %s", cfg.Auth, AuthAuto, AuthPlain, AuthLogin)}
	}
	if cfg.Password != "" && cfg.Username == "" {
		return nil, &ConfigError{Field: "Password", Err: errors.New("smtp password set without a username")}
	}
	from, err := netmail.ParseAddress(cfg.From)
	if err != nil || hasControl(cfg.From) {
		return nil, &ConfigError{Field: "From", Err: fmt.Errorf("mail from %q: not an address", HeaderText(cfg.From, 100))}
	}
	tlsConf := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, &ConfigError{Field: "CAFile", Err: fmt.Errorf("smtp CA file: %w", err)}
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &ConfigError{Field: "CAFile", Err: fmt.Errorf("smtp CA file %s: no PEM certificate in it", cfg.CAFile)}
		}
		tlsConf.RootCAs = pool
	}
	return &Mailer{cfg: cfg, host: host, port: port, from: from, tlsConf: tlsConf}, nil
}

// Loopback reports whether host (a name or an address) is this machine's
// loopback: "localhost" or a loopback IP. Other names are not resolved:
// what they point at may change.
func Loopback(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// TLSMode is the TLS mode the Mailer uses: Config.TLS, made
// TLSMandatory when TLS is required.
func (m *Mailer) TLSMode() string { return m.cfg.TLS }

// dialError explains a failed connection: a server without STARTTLS when
// TLS is mandatory is ErrTLSRequired.
func (m *Mailer) dialError(err error) error {
	if m.cfg.TLS == TLSMandatory && strings.Contains(err.Error(), "does not support STARTTLS") {
		return fmt.Errorf("%s: %w (%v)", m.cfg.Addr, ErrTLSRequired, err)
	}
	return fmt.Errorf("%s: %w", m.cfg.Addr, err)
}

// FromDomain is the domain of the sender's address ("audiomill.local").
func (m *Mailer) FromDomain() string {
	_, domain, _ := strings.Cut(m.from.Address, "@")
	return domain
}

// client builds a go-mail client for one connection.
func (m *Mailer) client() (*mail.Client, error) {
	opts := []mail.Option{
		mail.WithPort(m.port),
		mail.WithTimeout(m.cfg.Timeout),
		mail.WithHELO(m.cfg.HELO),
		mail.WithTLSConfig(m.tlsConf),
	}
	switch m.cfg.TLS {
	case TLSOpportunistic:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSOpportunistic))
	case TLSMandatory:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	case TLSImplicit:
		opts = append(opts, mail.WithSSL(), mail.WithTLSPolicy(mail.TLSMandatory))
	case TLSNone:
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
	}
	if m.cfg.Username != "" {
		mech := mail.SMTPAuthAutoDiscover
		switch m.cfg.Auth {
		case AuthPlain:
			mech = mail.SMTPAuthPlain
		case AuthLogin:
			mech = mail.SMTPAuthLogin
		}
		opts = append(opts, mail.WithSMTPAuth(mech), mail.WithUsername(m.cfg.Username), mail.WithPassword(m.cfg.Password))
	}
	c, err := mail.NewClient(m.host, opts...)
	if err != nil {
		return nil, fmt.Errorf("smtp client for %s: %w", m.cfg.Addr, err)
	}
	return c, nil
}

// Ping is the readiness check ("smtp" in /readyz): it connects, greets,
// negotiates TLS and authenticates as Send would, then quits.
func (m *Mailer) Ping(ctx context.Context) error {
	c, err := m.client()
	if err != nil {
		return err
	}
	sc, err := c.DialToSMTPClientWithContext(ctx)
	if err != nil {
		return fmt.Errorf("smtp connect %w", m.dialError(err))
	}
	if err := c.CloseWithSMTPClient(sc); err != nil {
		return fmt.Errorf("smtp quit %s: %w", m.cfg.Addr, err)
	}
	return nil
}

// Build returns the go-mail message for ml. It fails (permanently) on an
// invalid recipient.
func (m *Mailer) build(ml Mail) (*mail.Msg, error) {
	to, err := netmail.ParseAddress(ml.To)
	if err != nil || to.Name != "" || to.Address != ml.To || hasControl(ml.To) {
		return nil, fmt.Errorf("recipient %q is not a bare email address", HeaderText(ml.To, 100))
	}
	msg := mail.NewMsg(mail.WithNoDefaultUserAgent())
	msg.FromMailAddress(m.from)
	msg.ToMailAddress(to)
	msg.Subject(HeaderText(ml.Subject, MaxSubjectLength))
	msg.SetDate()
	if id := messageIDPart(ml.MessageID); id != "" {
		msg.SetMessageIDWithValue(id + "@" + m.FromDomain())
	} else {
		msg.SetMessageID()
	}
	msg.SetGenHeader(mail.Header("Auto-Submitted"), "auto-generated")
	if lang := languageTag(ml.Language); lang != "" {
		msg.SetGenHeader(mail.HeaderContentLang, lang)
	}
	msg.SetBodyString(mail.TypeTextPlain, ml.Text)
	msg.AddAlternativeString(mail.TypeTextHTML, ml.HTML)
	return msg, nil
}

// Send sends ml and returns nil once the server accepted it. A failure is
// an *Error; IsPermanent tells whether retrying can help.
func (m *Mailer) Send(ctx context.Context, ml Mail) error {
	msg, err := m.build(ml)
	if err != nil {
		return &Error{Stage: "build", Permanent: true, Err: err}
	}
	c, err := m.client()
	if err != nil {
		return &Error{Stage: "connect", Err: err}
	}
	sc, err := c.DialToSMTPClientWithContext(ctx)
	if err != nil {
		// Connection, greeting, TLS and AUTH failures are about the server
		// or our configuration, not this message: worth retrying.
		return &Error{Stage: "connect", Code: replyCode(err), Err: m.dialError(err)}
	}
	sendErr := c.SendWithSMTPClient(sc, msg)
	closeErr := c.CloseWithSMTPClient(sc)
	if msg.IsDelivered() {
		// The server accepted the message; a failing RSET or QUIT after
		// that does not unsend it.
		return nil
	}
	if sendErr == nil {
		sendErr = errors.Join(errors.New("message not accepted"), closeErr)
	}
	code := replyCode(sendErr)
	permanent := code >= 500 && code <= 599
	var se *mail.SendError
	if errors.As(sendErr, &se) {
		switch se.Reason {
		case mail.ErrGetSender, mail.ErrGetRcpts, mail.ErrNoUnencoded:
			permanent = true
		}
	}
	return &Error{Stage: "send", Code: code, Permanent: permanent, Err: fmt.Errorf("%s: %w", m.cfg.Addr, sendErr)}
}

// Error is a failed Send.
type Error struct {
	// Stage is "build", "connect" or "send".
	Stage string
	// Code is the SMTP reply code that failed it, 0 when there was none.
	Code int
	// Permanent is true when sending the same message again will fail again.
	Permanent bool
	// Err is the cause.
	Err error
}

// Error implements error.
func (e *Error) Error() string {
	kind := "temporary"
	if e.Permanent {
		kind = "permanent"
	}
	return fmt.Sprintf("smtp %s failed (%s): %v", e.Stage, kind, e.Err)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// IsPermanent reports whether err is a Send error that retrying cannot fix.
func IsPermanent(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Permanent
}

// replyCode finds the SMTP reply code in err's chain (0 when none).
func replyCode(err error) int {
	var tp *textproto.Error
	if errors.As(err, &tp) {
		return tp.Code
	}
	var se *mail.SendError
	if errors.As(err, &se) {
		return se.ErrorCode()
	}
	return 0
}

// HeaderText makes s safe for a header: every control character (CR, LF,
// TAB, NUL, the Unicode line and paragraph separators) becomes a space,
// runs of spaces become one, invalid UTF-8 is dropped, and the result is
// cut at limit runes with an ellipsis.
func HeaderText(s string, limit int) string {
	s = strings.ToValidUTF8(s, "")
	var b strings.Builder
	space := false
	for _, r := range s {
		if unicode.IsControl(r) || unicode.IsSpace(r) || r == '\u2028' || r == '\u2029' {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
	}
	out := b.String()
	if utf8.RuneCountInString(out) > limit && limit > 1 {
		out = string([]rune(out)[:limit-1]) + "…"
	}
	return out
}

// messageIDPart keeps the characters of a dot-atom (RFC 5322) in s and
// replaces the others by '-'.
func messageIDPart(s string) string {
	if s == "" {
		return ""
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r)), strings.ContainsRune("!#$%&'*+-/=?^_`{|}~.", r):
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	return strings.Trim(b.String(), ".")
}

// languageTag returns s when it is a plain language tag, else "".
func languageTag(s string) string {
	if s == "" || len(s) > 35 || strings.IndexFunc(s, func(r rune) bool {
		return !(r == '-' || r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r)))
	}) >= 0 {
		return ""
	}
	return s
}

func hasControl(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return unicode.IsControl(r) || r == '\u2028' || r == '\u2029' }) >= 0
}
