package config_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/audiomill/audiomill/platform/config"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestDefaults(t *testing.T) {
	r := config.NewReader(envOf(nil))
	if got := r.String("A", "x"); got != "x" {
		t.Errorf("String default = %q", got)
	}
	if got := r.Int("B", 7); got != 7 {
		t.Errorf("Int default = %d", got)
	}
	if got := r.Duration("C", time.Second); got != time.Second {
		t.Errorf("Duration default = %s", got)
	}
	if got := r.Bool("D", true); !got {
		t.Errorf("Bool default = %v", got)
	}
	if got := r.List("E", []string{"a"}); len(got) != 1 || got[0] != "a" {
		t.Errorf("List default = %v", got)
	}
	if err := r.Err(); err != nil {
		t.Fatalf("Err() = %v, want nil", err)
	}
}

func TestValues(t *testing.T) {
	r := config.NewReader(envOf(map[string]string{
		"PORT": "0", "T": " 1.5s ", "B": "yes", "L": "a, b,,c", "S": "2GiB", "U": "amqp://guest:guest@host:5672/", "LV": "warn",
	}))
	if got := r.Port("PORT", 80); got != 0 {
		t.Errorf("Port = %d, want 0", got)
	}
	if got := r.Duration("T", 0); got != 1500*time.Millisecond {
		t.Errorf("Duration = %s", got)
	}
	if !r.Bool("B", false) {
		t.Error("Bool = false")
	}
	if got := strings.Join(r.List("L", nil), "|"); got != "a|b|c" {
		t.Errorf("List = %q", got)
	}
	if got := r.Int64("S", 0); got != 2<<30 {
		t.Errorf("Int64 = %d", got)
	}
	if got := r.URL("U", "", "amqp", "amqps"); got == "" {
		t.Error("URL empty")
	}
	if got := r.Enum("LV", "info", "debug", "info", "warn"); got != "warn" {
		t.Errorf("Enum = %q", got)
	}
	if err := r.Err(); err != nil {
		t.Fatalf("Err() = %v", err)
	}
}

// Every invalid variable is named, all in one error.
func TestErrorsNameEveryVariable(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		read    func(r *config.Reader)
		wantVar string
	}{
		{"ErrRequired", nil, func(r *config.Reader) { r.Required("AMQP_URL") }, "AMQP_URL: is required"},
		{"ErrNotInt", map[string]string{"N": "ten"}, func(r *config.Reader) { r.Int("N", 1) }, `N: "ten" is not an integer`},
		{"ErrPortRange", map[string]string{"PORT": "70000"}, func(r *config.Reader) { r.Port("PORT", 1) }, "PORT: 70000 is not a TCP port"},
		{"ErrDuration", map[string]string{"T": "5"}, func(r *config.Reader) { r.Duration("T", 0) }, "T: \"5\" is not a duration"},
		{"ErrNegativeDuration", map[string]string{"T": "-1s"}, func(r *config.Reader) { r.Duration("T", 0) }, "T: \"-1s\" is not a duration"},
		{"ErrBool", map[string]string{"B": "maybe"}, func(r *config.Reader) { r.Bool("B", false) }, "B: \"maybe\" is not a boolean"},
		{"ErrSize", map[string]string{"S": "2TB"}, func(r *config.Reader) { r.Int64("S", 0) }, "S: \"2TB\" is not a number of bytes"},
		{"ErrURLScheme", map[string]string{"U": "http://x"}, func(r *config.Reader) { r.URL("U", "", "amqp") }, `U: scheme "http" is not one of amqp`},
		{"ErrURLRelative", map[string]string{"U": "not a url"}, func(r *config.Reader) { r.URL("U", "", "amqp") }, "U: is not an absolute URL"},
		{"ErrEnum", map[string]string{"LOG_LEVEL": "loud"}, func(r *config.Reader) { r.Enum("LOG_LEVEL", "info", "info", "debug") }, `LOG_LEVEL: "loud" is not one of info, debug`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := config.NewReader(envOf(tt.env))
			tt.read(r)
			err := r.Err()
			if err == nil {
				t.Fatal("Err() = nil, want an error")
			}
			if !strings.Contains(err.Error(), tt.wantVar) {
				t.Fatalf("Err() = %q, want it to contain %q", err, tt.wantVar)
			}
			var cfgErr *config.Error
			if !errors.As(err, &cfgErr) {
				t.Fatalf("Err() is %T, want *config.Error", err)
			}
		})
	}
}

func TestSeveralProblemsReportedTogether(t *testing.T) {
	r := config.NewReader(envOf(map[string]string{"PORT": "x"}))
	r.Port("PORT", 1)
	r.Required("MONGO_URI")
	err := r.Err()
	if err == nil || !strings.Contains(err.Error(), "PORT") || !strings.Contains(err.Error(), "MONGO_URI") {
		t.Fatalf("Err() = %v, want both PORT and MONGO_URI named", err)
	}
}

// A URL is never echoed in an error: it may carry a password.
func TestURLErrorHidesValue(t *testing.T) {
	r := config.NewReader(envOf(map[string]string{"U": "http://user:s3cret@host/"}))
	r.URL("U", "", "amqp")
	if err := r.Err(); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("Err() = %v, want an error without the password", err)
	}
}

func TestOptionalURL(t *testing.T) {
	r := config.NewReader(envOf(map[string]string{"SET": "http://host:8101", "BAD": "host:8101"}))
	if got := r.OptionalURL("UNSET", "http", "https"); got != "" {
		t.Errorf("unset = %q", got)
	}
	if got := r.OptionalURL("SET", "http", "https"); got != "http://host:8101" {
		t.Errorf("set = %q", got)
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	r.OptionalURL("BAD", "http", "https")
	if err := r.Err(); err == nil || !strings.Contains(err.Error(), "BAD") {
		t.Fatalf("Err() = %v, want one naming BAD", err)
	}
}
