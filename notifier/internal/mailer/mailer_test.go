package mailer

import (
	"errors"
	"fmt"
	"net/textproto"
	"strings"
	"testing"
	"time"
)

func TestHeaderText(t *testing.T) {
	tests := []struct {
		in    string
		limit int
		want  string
	}{
		{"holiday.mp4", 200, "holiday.mp4"},
		{"a\r\nBcc: eve@example.com", 200, "a Bcc: eve@example.com"},
		{"a\rb\nc\td\x00e\x1bf", 200, "a b c d e f"},
		{"line\u2028sep\u2029para\u0085nel", 200, "line sep para nel"},
		{"  lots   of\r\n\r\n  space  ", 200, "lots of space"},
		{"bad\xffutf8", 200, "badutf8"},
		{"假期视频.mp4", 200, "假期视频.mp4"},
		{"abcdefghij", 5, "abcd…"},
		{"假期视频假期视频", 4, "假期视…"},
		{"", 10, ""},
	}
	for _, tt := range tests {
		if got := HeaderText(tt.in, tt.limit); got != tt.want {
			t.Errorf("HeaderText(%q, %d) = %q, want %q", tt.in, tt.limit, got, tt.want)
		}
	}
}

func FuzzHeaderText(f *testing.F) {
	f.Add("a\r\nb")
	f.Fuzz(func(t *testing.T, s string) {
		got := HeaderText(s, 200)
		if strings.ContainsAny(got, "\r\n\x00") || strings.ContainsRune(got, '\u2028') {
			t.Fatalf("HeaderText(%q) = %q keeps a line break", s, got)
		}
	})
}

func TestMessageIDPart(t *testing.T) {
	for in, want := range map[string]string{
		"audiomill.job-1.ready": "audiomill.job-1.ready",
		"job<1>@x y":            "job-1--x-y",
		".job.":                 "job",
		"任务":                    "--",
	} {
		if got := messageIDPart(in); got != want {
			t.Errorf("messageIDPart(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		field string
	}{
		{"ErrAddrNoPort", Config{Addr: "localhost"}, "Addr"},
		{"ErrAddrBadPort", Config{Addr: "localhost:99999"}, "Addr"},
		{"ErrTLS", Config{TLS: "sometimes"}, "TLS"},
		{"ErrAuth", Config{Auth: "cram-md5"}, "Auth"},
		{"ErrPasswordWithoutUser", Config{Password: "x"}, "Password"},
		{"ErrFrom", Config{From: "not an address"}, "From"},
		{"ErrFromInjection", Config{From: "a@b.c\r\nBcc: e@f.g"}, "From"},
		{"ErrCAFileMissing", Config{CAFile: "/nonexistent/ca.pem"}, "CAFile"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			var cerr *ConfigError
			if !errors.As(err, &cerr) || cerr.Field != tt.field {
				t.Fatalf("New(%+v) = %v, want a ConfigError on %s", tt.cfg, err, tt.field)
			}
		})
	}
	m, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if m.cfg.Addr != DefaultAddr || m.cfg.TLS != TLSOpportunistic || m.cfg.Timeout != DefaultTimeout || m.FromDomain() != "audiomill.local" {
		t.Errorf("defaults: %+v", m.cfg)
	}
}

func TestBuildRejectsBadRecipient(t *testing.T) {
	m, err := New(Config{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, to := range []string{"", "x", "Eve <eve@example.com>", "a@b.c\r\nBcc: e@f.g", "a@b.c, e@f.g"} {
		if _, err := m.build(Mail{To: to, Subject: "s", Text: "t", HTML: "h"}); err == nil {
			t.Errorf("build accepted recipient %q", to)
		}
	}
}

func TestReplyCodeAndPermanence(t *testing.T) {
	tests := []struct {
		err  error
		code int
	}{
		{&textproto.Error{Code: 550, Msg: "no such user"}, 550},
		{fmt.Errorf("wrapped: %w", &textproto.Error{Code: 451, Msg: "try later"}), 451},
		{errors.New("dial tcp: connection refused"), 0},
	}
	for _, tt := range tests {
		if got := replyCode(tt.err); got != tt.code {
			t.Errorf("replyCode(%v) = %d, want %d", tt.err, got, tt.code)
		}
	}
	if IsPermanent(errors.New("x")) || IsPermanent(&Error{Stage: "connect"}) || !IsPermanent(fmt.Errorf("w: %w", &Error{Permanent: true, Err: errors.New("x")})) {
		t.Error("IsPermanent")
	}
}

// STARTTLS is mandatory for a server not on loopback, and for every server
// with RequireTLSAlways; opportunistic then means mandatory, and none is
// refused. The local sink on loopback keeps the configured mode.
func TestRequireTLS(t *testing.T) {
	for _, c := range []struct {
		addr, tls, require, want string
	}{
		{"127.0.0.1:1025", TLSOpportunistic, "", TLSOpportunistic},
		{"localhost:1025", TLSNone, RequireTLSAuto, TLSNone},
		{"[::1]:1025", TLSOpportunistic, RequireTLSAuto, TLSOpportunistic},
		{"smtp.example.com:587", TLSOpportunistic, "", TLSMandatory},
		{"192.0.2.10:25", TLSOpportunistic, RequireTLSAuto, TLSMandatory},
		{"smtp.example.com:465", TLSImplicit, RequireTLSAuto, TLSImplicit},
		{"127.0.0.1:1025", TLSOpportunistic, RequireTLSAlways, TLSMandatory},
		{"maildev:1025", TLSOpportunistic, RequireTLSNever, TLSOpportunistic},
		{"maildev:1025", TLSNone, RequireTLSNever, TLSNone},
	} {
		m, err := New(Config{Addr: c.addr, TLS: c.tls, RequireTLS: c.require})
		if err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		if got := m.TLSMode(); got != c.want {
			t.Errorf("%s with TLS %s, require %q: mode %s, want %s", c.addr, c.tls, c.require, got, c.want)
		}
	}
	for _, cfg := range []Config{
		{Addr: "smtp.example.com:25", TLS: TLSNone},
		{Addr: "127.0.0.1:1025", TLS: TLSNone, RequireTLS: RequireTLSAlways},
	} {
		var cerr *ConfigError
		if _, err := New(cfg); !errors.As(err, &cerr) || cerr.Field != "TLS" || !strings.Contains(err.Error(), "clear text") {
			t.Errorf("New(%+v) = %v, want a ConfigError on TLS", cfg, err)
		}
	}
	var cerr *ConfigError
	if _, err := New(Config{RequireTLS: "sometimes"}); !errors.As(err, &cerr) || cerr.Field != "RequireTLS" {
		t.Errorf("RequireTLS sometimes: %v", err)
	}
}
