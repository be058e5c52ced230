// Package config reads a service's environment once into a struct.
//
// A Reader collects every problem it meets (a required variable missing, a
// number that is not one) so start-up fails with one message naming each
// offending variable, instead of failing on the first and hiding the rest:
//
//	r := config.NewReader(os.Getenv)
//	cfg := Config{
//		Port:    r.Int("PORT", defaultPort),
//		Timeout: r.Duration("SHUTDOWN_TIMEOUT", 15*time.Second),
//		URL:     r.Required("AMQP_URL"),
//	}
//	if err := r.Err(); err != nil { ... }
package config

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Reader reads typed values from an environment and remembers what was wrong.
// It is not safe for concurrent use; a service reads its configuration once.
type Reader struct {
	lookup func(string) string
	errs   []error
}

// NewReader returns a Reader over lookup, usually os.Getenv.
func NewReader(lookup func(string) string) *Reader {
	return &Reader{lookup: lookup}
}

// Error is an invalid configuration: every problem found, each naming its variable.
type Error struct {
	Problems []error
}

// Error implements error.
func (e *Error) Error() string {
	msgs := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		msgs[i] = p.Error()
	}
	return "invalid configuration: " + strings.Join(msgs, "; ")
}

// Unwrap returns the problems.
func (e *Error) Unwrap() []error { return e.Problems }

// Err returns every problem met so far as an *Error, or nil when the
// configuration is valid.
func (r *Reader) Err() error {
	if len(r.errs) == 0 {
		return nil
	}
	return &Error{Problems: append([]error(nil), r.errs...)}
}

// Fail records a problem found by the caller's own validation, naming the variable.
func (r *Reader) Fail(name, format string, args ...any) {
	r.errs = append(r.errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
}

func (r *Reader) raw(name string) (string, bool) {
	v := strings.TrimSpace(r.lookup(name))
	return v, v != ""
}

// String returns the variable, or def when it is unset or empty.
func (r *Reader) String(name, def string) string {
	if v, ok := r.raw(name); ok {
		return v
	}
	return def
}

// Required returns the variable and records an error naming it when it is unset or empty.
func (r *Reader) Required(name string) string {
	v, ok := r.raw(name)
	if !ok {
		r.Fail(name, "is required but not set")
	}
	return v
}

// Int returns the variable as an integer, or def when unset.
func (r *Reader) Int(name string, def int) int {
	v, ok := r.raw(name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		r.Fail(name, "%q is not an integer", v)
		return def
	}
	return n
}

// Port returns the variable as a TCP port (0 means an ephemeral port), or def when unset.
func (r *Reader) Port(name string, def int) int {
	n := r.Int(name, def)
	if n < 0 || n > 65535 {
		r.Fail(name, "%d is not a TCP port (0-65535)", n)
		return def
	}
	return n
}

// Int64 returns the variable as a 64-bit integer, or def when unset.
// It accepts the suffixes KiB, MiB and GiB for byte sizes.
func (r *Reader) Int64(name string, def int64) int64 {
	v, ok := r.raw(name)
	if !ok {
		return def
	}
	n, err := parseSize(v)
	if err != nil {
		r.Fail(name, "%q is not a number of bytes (e.g. 1048576 or 2GiB)", v)
		return def
	}
	return n
}

// Bool returns the variable as a boolean (1/0, true/false, yes/no), or def when unset.
func (r *Reader) Bool(name string, def bool) bool {
	v, ok := r.raw(name)
	if !ok {
		return def
	}
	switch strings.ToLower(v) {
	case "1", "true", "yes", "on":
		return true
	case "0", "false", "no", "off":
		return false
	}
	r.Fail(name, "%q is not a boolean (true/false)", v)
	return def
}

// Duration returns the variable as a time.Duration ("1.5s", "2m"), or def when unset.
func (r *Reader) Duration(name string, def time.Duration) time.Duration {
	v, ok := r.raw(name)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		r.Fail(name, "%q is not a duration (e.g. 500ms, 15s, 2m)", v)
		return def
	}
	return d
}

// List returns the variable split on commas with blanks removed, or def when unset.
func (r *Reader) List(name string, def []string) []string {
	v, ok := r.raw(name)
	if !ok {
		return def
	}
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// URL returns the variable parsed as an absolute URL whose scheme is one of
// schemes, or def when unset. An invalid URL is recorded without echoing it,
// since URLs may carry passwords.
func (r *Reader) URL(name, def string, schemes ...string) string {
	v := r.String(name, def)
	u, err := url.Parse(v)
	if err != nil || u.Host == "" {
		r.Fail(name, "is not an absolute URL")
		return v
	}
	for _, s := range schemes {
		if u.Scheme == s {
			return v
		}
	}
	r.Fail(name, "scheme %q is not one of %s", u.Scheme, strings.Join(schemes, ", "))
	return v
}

// OptionalURL is URL for a variable that may be unset: it returns "" then
// (a service reads FILESTORAGE_URL or AUTH_URL so, and finds the service
// through Consul when it is "").
func (r *Reader) OptionalURL(name string, schemes ...string) string {
	if r.String(name, "") == "" {
		return ""
	}
	return r.URL(name, "", schemes...)
}

// Enum returns the variable when it is one of allowed, or def when unset.
func (r *Reader) Enum(name, def string, allowed ...string) string {
	v := r.String(name, def)
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	r.Fail(name, "%q is not one of %s", v, strings.Join(allowed, ", "))
	return def
}

func parseSize(v string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if strings.HasSuffix(v, u.suffix) {
			v, mult = strings.TrimSpace(strings.TrimSuffix(v, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("bad size %q", v)
	}
	return n * mult, nil
}
