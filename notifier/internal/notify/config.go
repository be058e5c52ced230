package notify

import (
	"fmt"
	"time"

	"github.com/audiomill/audiomill/notifier/internal/mailer"
	"github.com/audiomill/audiomill/platform/broker"
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
	// DefaultMailsPerHour bounds the emails one address receives an hour:
	// far above a person's uploads, low enough that the platform cannot
	// be used to flood an inbox.
	DefaultMailsPerHour = 120
	// MaxConcurrency is the largest concurrency accepted.
	MaxConcurrency = 256
	// KeyPrefix starts every Redis key of the notifier.
	KeyPrefix = "notifier:"
)

// DefaultBindings are the routing keys the notifier's queue is bound to.
func DefaultBindings() []string {
	return []string{events.TypeAudioReady, events.TypeAudioFailed, events.TypeAccountVerify, events.TypeAccountExists}
}

// Config is the notifier's configuration (read by the notifier's
// internal/app from its variables).
type Config struct {
	// SMTP is how to reach the mail server (SMTP_* and MAIL_FROM).
	SMTP mailer.Config
	// PublicURL is the edge's public base URL, for the links in the emails.
	PublicURL string
	// ConsumerConfig is the queue consumed (NOTIFIER_QUEUE), with Queue.retry
	// and Queue.dead; how many emails are sent at once
	// (NOTIFIER_CONCURRENCY); how long a message waits before the next
	// attempt after a transient failure (NOTIFIER_RETRY_DELAY), doubling
	// after each failure up to NOTIFIER_MAX_RETRY_DELAY; and the attempts
	// before a message goes to Queue.dead (NOTIFIER_MAX_ATTEMPTS).
	broker.ConsumerConfig
	// Bindings are the routing keys bound to Queue; default DefaultBindings.
	// The envelope's type, not the routing key, says which email to send,
	// so tests bind private keys and leave the real ones alone.
	Bindings []string
	// SentTTL is how long the "sent" mark of a job and outcome is kept
	// (NOTIFIER_SENT_TTL): a copy of the event delivered within it sends nothing.
	SentTTL time.Duration
	// MailsPerHour bounds the emails sent to one address an hour
	// (NOTIFIER_MAILS_PER_HOUR); 0 turns the bound off. An email over it is
	// dropped (logged, counted as "limited"), never retried.
	MailsPerHour int
}

// lockTTL bounds how long one delivery may hold a job's send lock: longer
// than any send can take (connect plus a handful of commands, each bounded
// by the SMTP timeout), so a lock is only ever reclaimed from a crashed sender.
func (c Config) lockTTL() time.Duration {
	return max(2*time.Minute, 8*c.SMTP.Timeout)
}

// String describes c for the logs (no secrets).
func (c Config) String() string {
	return fmt.Sprintf("queue=%s smtp=%s tls=%s retry_delay=%s max_attempts=%d", c.Queue, c.SMTP.Addr, c.SMTP.TLS, c.RetryDelay, c.MaxAttempts)
}
