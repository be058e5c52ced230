package app_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/audiomill/audiomill/notifier/internal/app"
	"github.com/audiomill/audiomill/notifier/internal/mailer"
	"github.com/audiomill/audiomill/notifier/internal/notify"
	"github.com/audiomill/audiomill/platform/config"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestConfigDefaults(t *testing.T) {
	r := config.NewReader(envOf(nil))
	c := app.ReadConfig(r).Notify
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	if c.Queue != "notifier.audio" || !slices.Equal(c.Bindings, []string{"audio.ready", "audio.failed", "account.verify", "account.exists"}) ||
		c.PublicURL != "http://localhost:8080" || c.SMTP.Addr != "127.0.0.1:1025" || c.SMTP.TLS != mailer.TLSOpportunistic ||
		c.RetryDelay != 5*time.Second || c.MaxRetryDelay != 5*time.Minute || c.MaxAttempts != 12 || c.Concurrency != 4 || c.SentTTL != 720*time.Hour {
		t.Errorf("defaults: %+v", c)
	}
	n, err := notify.New(c, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	spec := n.Spec()
	if spec.Name != "notifier.audio" || !slices.Equal(spec.Bindings, []string{"audio.ready", "audio.failed", "account.verify", "account.exists"}) || spec.MaxAttempts != 12 || spec.MaxRetryDelay != 5*time.Minute {
		t.Errorf("spec %+v", spec)
	}
}

func TestConfigValues(t *testing.T) {
	r := config.NewReader(envOf(map[string]string{
		"SMTP_ADDR": "smtp.example.com:465", "SMTP_USERNAME": "u", "SMTP_PASSWORD": "p", "SMTP_AUTH": "login",
		"SMTP_TLS": "implicit", "MAIL_FROM": "Audio <a@example.com>", "SMTP_TIMEOUT": "5s",
		"PUBLIC_URL": "https://audio.example.com", "NOTIFIER_QUEUE": "notifier.audio-2",
		"NOTIFIER_RETRY_DELAY": "1s", "NOTIFIER_MAX_ATTEMPTS": "3", "NOTIFIER_CONCURRENCY": "8", "NOTIFIER_SENT_TTL": "48h",
	}))
	c := app.ReadConfig(r).Notify
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	want := mailer.Config{Addr: "smtp.example.com:465", Username: "u", Password: "p", Auth: "login", TLS: "implicit",
		RequireTLS: "auto", From: "Audio <a@example.com>", Timeout: 5 * time.Second}
	if c.SMTP != want || c.PublicURL != "https://audio.example.com" || c.Queue != "notifier.audio-2" ||
		c.RetryDelay != time.Second || c.MaxAttempts != 3 || c.Concurrency != 8 || c.SentTTL != 48*time.Hour {
		t.Errorf("config %+v", c)
	}
}

// Every invalid variable is named, all in one error.
func TestConfigErrorsNameEveryVariable(t *testing.T) {
	r := config.NewReader(envOf(map[string]string{
		"SMTP_TLS": "sometimes", "SMTP_AUTH": "cram", "PUBLIC_URL": "localhost:8080",
		"NOTIFIER_RETRY_DELAY": "0s", "NOTIFIER_MAX_ATTEMPTS": "0", "NOTIFIER_CONCURRENCY": "many",
		"NOTIFIER_SENT_TTL": "1m", "SMTP_TIMEOUT": "soon",
	}))
	app.ReadConfig(r)
	err := r.Err()
	if err == nil {
		t.Fatal("no error")
	}
	for _, v := range []string{"SMTP_TLS", "SMTP_AUTH", "PUBLIC_URL", "NOTIFIER_RETRY_DELAY", "NOTIFIER_MAX_ATTEMPTS",
		"NOTIFIER_CONCURRENCY", "NOTIFIER_SENT_TTL", "SMTP_TIMEOUT"} {
		if !strings.Contains(err.Error(), v) {
			t.Errorf("error does not name %s: %v", v, err)
		}
	}
	for env, variable := range map[string]string{
		"SMTP_ADDR": "nohost", "MAIL_FROM": "not an address", "SMTP_CA_FILE": "/nonexistent.pem",
	} {
		r := config.NewReader(envOf(map[string]string{env: variable}))
		app.ReadConfig(r)
		if err := r.Err(); err == nil || !strings.Contains(err.Error(), env) {
			t.Errorf("%s=%q: error %v does not name it", env, variable, err)
		}
	}
	r = config.NewReader(envOf(map[string]string{"SMTP_PASSWORD": "secret-value"}))
	app.ReadConfig(r)
	if err := r.Err(); err == nil || !strings.Contains(err.Error(), "SMTP_PASSWORD") || strings.Contains(err.Error(), "secret-value") {
		t.Errorf("password without user: %v", err)
	}
}

// Mail to a relay that is not on loopback is never sent in clear text:
// SMTP_TLS=none with such a relay stops the notifier at start, naming the
// variable; an unknown SMTP_REQUIRE_TLS too. SMTP_REQUIRE_TLS=false lets a
// sink on a private network (compose's MailDev) take plain text.
func TestPlainTextToARelayIsRefused(t *testing.T) {
	for _, c := range []struct {
		env      map[string]string
		variable string
	}{
		{map[string]string{"SMTP_ADDR": "smtp.example.com:25", "SMTP_TLS": "none"}, "SMTP_TLS"},
		{map[string]string{"SMTP_ADDR": "10.0.0.5:25", "SMTP_TLS": "none"}, "SMTP_TLS"},
		{map[string]string{"SMTP_TLS": "none", "SMTP_REQUIRE_TLS": "true"}, "SMTP_TLS"},
		{map[string]string{"SMTP_REQUIRE_TLS": "maybe"}, "SMTP_REQUIRE_TLS"},
	} {
		r := config.NewReader(envOf(c.env))
		app.ReadConfig(r)
		if err := r.Err(); err == nil || !strings.Contains(err.Error(), c.variable) {
			t.Errorf("%v: error %v, want one naming %s", c.env, err, c.variable)
		}
	}
	for _, env := range []map[string]string{
		{"SMTP_ADDR": "127.0.0.1:1025", "SMTP_TLS": "none"},
		{"SMTP_ADDR": "maildev:1025", "SMTP_TLS": "none", "SMTP_REQUIRE_TLS": "false"},
	} {
		r := config.NewReader(envOf(env))
		app.ReadConfig(r)
		if err := r.Err(); err != nil {
			t.Errorf("%v: %v", env, err)
		}
	}
}
