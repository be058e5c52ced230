package notify

import (
	"errors"
	"fmt"
	"time"

	"github.com/audiomill/audiomill/notifier/internal/mailer"
	"github.com/audiomill/audiomill/platform/config"
	"github.com/audiomill/audiomill/platform/events"
)

// Defaults of the notifier's configuration.
const (
	DefaultQueue         = "notifier.audio"
	DefaultPublicURL     = "http://localhost:8080"
	DefaultRetryDelay    = 5 * time.Second
	DefaultMaxRetryDelay = 5 * time.Minute
	DefaultMaxAttempts   = 12
	DefaultConcurrency   = 4
	DefaultSentTTL       = 30 * 24 * time.Hour
	// KeyPrefix starts every Redis key of the notifier.
	KeyPrefix = "notifier:"
)

// DefaultBindings are the routing keys the notifier's queue is bound to.
func DefaultBindings() []string { return []string{events.TypeAudioReady, events.TypeAudioFailed} }

// Config is the notifier's configuration.
type Config struct {
	// SMTP is how to reach the mail server (SMTP_* and MAIL_FROM).
	SMTP mailer.Config
	// PublicURL is the edge's public base URL, for the links in the emails.
	PublicURL string
	// Queue is the queue consumed (NOTIFIER_QUEUE), with Queue.retry and Queue.dead.
	Queue string
	// Bindings are the routing keys bound to Queue; default DefaultBindings.
	// The envelope's type, not the routing key, says which email to send,
	// so tests bind private keys and leave the real ones alone.
	Bindings []string
	// RetryDelay is how long a message waits before the next attempt
	// after a transient failure (NOTIFIER_RETRY_DELAY).
	RetryDelay time.Duration
	// MaxRetryDelay caps the delay, which doubles after each failure
	// (NOTIFIER_MAX_RETRY_DELAY); zero keeps it at RetryDelay.
	MaxRetryDelay time.Duration
	// MaxAttempts bounds the attempts before a message goes to Queue.dead
	// (NOTIFIER_MAX_ATTEMPTS).
	MaxAttempts int
	// Concurrency is how many emails are sent at once (NOTIFIER_CONCURRENCY).
	Concurrency int
	// SentTTL is how long the "sent" mark of a job and outcome is kept
	// (NOTIFIER_SENT_TTL): a copy of the event delivered within it sends nothing.
	SentTTL time.Duration
}

// ConfigFromEnv reads the notifier's variables; problems are recorded in r.
func ConfigFromEnv(r *config.Reader) Config {
	c := Config{
		SMTP: mailer.Config{
			Addr:     r.String("SMTP_ADDR", mailer.DefaultAddr),
			Username: r.String("SMTP_USERNAME", ""),
			Password: r.String("SMTP_PASSWORD", ""),
			Auth:     r.Enum("SMTP_AUTH", mailer.AuthAuto, mailer.AuthAuto, mailer.AuthPlain, mailer.AuthLogin),
			TLS: r.Enum("SMTP_TLS", mailer.TLSOpportunistic,
				mailer.TLSOpportunistic, mailer.TLSMandatory, mailer.TLSImplicit, mailer.TLSNone),
			CAFile:  r.String("SMTP_CA_FILE", ""),
			From:    r.String("MAIL_FROM", mailer.DefaultFrom),
			Timeout: r.Duration("SMTP_TIMEOUT", mailer.DefaultTimeout),
		},
		PublicURL:     r.URL("PUBLIC_URL", DefaultPublicURL, "http", "https"),
		Queue:         r.String("NOTIFIER_QUEUE", DefaultQueue),
		Bindings:      DefaultBindings(),
		RetryDelay:    r.Duration("NOTIFIER_RETRY_DELAY", DefaultRetryDelay),
		MaxRetryDelay: r.Duration("NOTIFIER_MAX_RETRY_DELAY", DefaultMaxRetryDelay),
		MaxAttempts:   r.Int("NOTIFIER_MAX_ATTEMPTS", DefaultMaxAttempts),
		Concurrency:   r.Int("NOTIFIER_CONCURRENCY", DefaultConcurrency),
		SentTTL:       r.Duration("NOTIFIER_SENT_TTL", DefaultSentTTL),
	}
	if c.SMTP.Timeout <= 0 {
		r.Fail("SMTP_TIMEOUT", "must be positive")
	}
	if c.RetryDelay <= 0 {
		r.Fail("NOTIFIER_RETRY_DELAY", "must be positive")
	}
	if c.MaxRetryDelay < c.RetryDelay {
		r.Fail("NOTIFIER_MAX_RETRY_DELAY", "must not be shorter than NOTIFIER_RETRY_DELAY")
	}
	if c.MaxAttempts < 1 {
		r.Fail("NOTIFIER_MAX_ATTEMPTS", "must be at least 1")
	}
	if c.Concurrency < 1 || c.Concurrency > 256 {
		r.Fail("NOTIFIER_CONCURRENCY", "must be between 1 and 256")
	}
	if c.SentTTL < time.Hour {
		r.Fail("NOTIFIER_SENT_TTL", "must be at least 1h")
	}
	if c.Queue == "" {
		r.Fail("NOTIFIER_QUEUE", "must not be empty")
	}
	// The mailer validates the SMTP settings; name the variable at fault.
	if _, err := mailer.New(c.SMTP); err != nil {
		variable := "SMTP_ADDR"
		var cerr *mailer.ConfigError
		if errors.As(err, &cerr) {
			variable = map[string]string{
				"Addr": "SMTP_ADDR", "TLS": "SMTP_TLS", "Auth": "SMTP_AUTH", "Password": "SMTP_PASSWORD",
				"From": "MAIL_FROM", "CAFile": "SMTP_CA_FILE",
			}[cerr.Field]
		}
		r.Fail(variable, "%v", err)
	}
	return c
}

// lockTTL bounds how long one delivery may hold a job's send lock: longer
// than any send can take (connect plus a handful of commands, each bounded
// by the SMTP timeout), so a lock is only ever reclaimed from a crashed sender.
func (c Config) lockTTL() time.Duration {
	return max(2*time.Minute, 8*c.SMTP.Timeout)
}

func (c Config) String() string {
	return fmt.Sprintf("queue=%s smtp=%s tls=%s retry_delay=%s max_attempts=%d", c.Queue, c.SMTP.Addr, c.SMTP.TLS, c.RetryDelay, c.MaxAttempts)
}
