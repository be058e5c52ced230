// Package app wires the notifier on a platform service.App: its
// configuration, Redis, RabbitMQ, the mailer and the consumer of audio.ready
// and audio.failed (package notify).
package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/audiomill/audiomill/notifier/internal/mailer"
	"github.com/audiomill/audiomill/notifier/internal/notify"
	"github.com/audiomill/audiomill/platform/broker"
	"github.com/audiomill/audiomill/platform/config"
	"github.com/audiomill/audiomill/platform/httpapi"
	"github.com/audiomill/audiomill/platform/service"
)

// Name is the notifier's name in Consul and the logs.
const Name = "notifier"

// DefaultPort is the notifier's port when PORT is unset (it serves only
// /healthz, /readyz and /metrics).
const DefaultPort = 8105

// Spec returns the notifier's service.Spec. Nothing sends it requests
// found through Consul: it only consumes.
func Spec(version string) service.Spec {
	return service.Spec{Name: Name, Version: version, DefaultPort: DefaultPort, Unrouted: true, Wire: Wire}
}

// Config is the notifier's own configuration.
type Config struct {
	// Notify is the consumer's configuration: SMTP, the links' base URL,
	// the queue and its retries (SMTP_*, MAIL_FROM, PUBLIC_URL, NOTIFIER_*).
	Notify notify.Config
}

// ReadConfig reads the notifier's variables; problems are recorded in r.
func ReadConfig(r *config.Reader) Config {
	c := notify.Config{
		SMTP: mailer.Config{
			Addr:     r.String("SMTP_ADDR", mailer.DefaultAddr),
			Username: r.String("SMTP_USERNAME", ""),
			Password: r.String("SMTP_PASSWORD", ""),
			Auth:     r.Enum("SMTP_AUTH", mailer.AuthAuto, mailer.AuthAuto, mailer.AuthPlain, mailer.AuthLogin),
			TLS: r.Enum("SMTP_TLS", mailer.TLSOpportunistic,
				mailer.TLSOpportunistic, mailer.TLSMandatory, mailer.TLSImplicit, mailer.TLSNone),
			RequireTLS: r.Enum("SMTP_REQUIRE_TLS", mailer.RequireTLSAuto,
				mailer.RequireTLSAuto, mailer.RequireTLSAlways, mailer.RequireTLSNever),
			CAFile:  r.String("SMTP_CA_FILE", ""),
			From:    r.String("MAIL_FROM", mailer.DefaultFrom),
			Timeout: r.Duration("SMTP_TIMEOUT", mailer.DefaultTimeout),
		},
		PublicURL: r.URL("PUBLIC_URL", notify.DefaultPublicURL, "http", "https"),
		ConsumerConfig: broker.ReadConsumerConfig(r, "NOTIFIER", broker.ConsumerDefaults{
			Queue:          notify.DefaultQueue,
			Concurrency:    notify.DefaultConcurrency,
			MaxConcurrency: notify.MaxConcurrency,
			RetryDelay:     notify.DefaultRetryDelay,
			MaxRetryDelay:  notify.DefaultMaxRetryDelay,
			MaxAttempts:    notify.DefaultMaxAttempts,
		}),
		Bindings:     notify.DefaultBindings(),
		SentTTL:      r.Duration("NOTIFIER_SENT_TTL", notify.DefaultSentTTL),
		MailsPerHour: r.Int("NOTIFIER_MAILS_PER_HOUR", notify.DefaultMailsPerHour),
	}
	if c.MailsPerHour < 0 {
		r.Fail("NOTIFIER_MAILS_PER_HOUR", "must be 0 (no limit) or more")
	}
	if c.SMTP.Timeout <= 0 {
		r.Fail("SMTP_TIMEOUT", "must be positive")
	}
	if c.SentTTL < time.Hour {
		r.Fail("NOTIFIER_SENT_TTL", "must be at least 1h")
	}
	// The mailer validates the SMTP settings; name the variable at fault.
	if _, err := mailer.New(c.SMTP); err != nil {
		variable := "SMTP_ADDR"
		var cerr *mailer.ConfigError
		if errors.As(err, &cerr) {
			variable = map[string]string{
				"Addr": "SMTP_ADDR", "TLS": "SMTP_TLS", "Auth": "SMTP_AUTH", "Password": "SMTP_PASSWORD",
				"From": "MAIL_FROM", "CAFile": "SMTP_CA_FILE", "RequireTLS": "SMTP_REQUIRE_TLS",
			}[cerr.Field]
		}
		r.Fail(variable, "%v", err)
	}
	return Config{Notify: c}
}

// Wire builds the notifier on app: Redis, RabbitMQ, the mailer (with its
// "smtp" readiness check) and the consumer, which runs until ctx is
// cancelled; shutdown waits for the emails in flight.
func Wire(ctx context.Context, app *service.App) error {
	cfg := ReadConfig(app.Env).Notify
	rdb := app.Redis()
	conn, err := app.Broker(ctx)
	if err != nil {
		return err
	}
	if err := app.Env.Err(); err != nil {
		return err
	}
	m, err := mailer.New(cfg.SMTP)
	if err != nil {
		return fmt.Errorf("mailer: %w", err)
	}
	app.Server.AddCheck(httpapi.Check{Name: "smtp", Ping: m.Ping})
	n, err := notify.New(cfg, m, rdb, app.Logger.With("component", "notifier"))
	if err != nil {
		return fmt.Errorf("notifier: %w", err)
	}
	if err := n.RegisterMetrics(app.Server.Registry()); err != nil {
		return err
	}
	// Started after the broker, so it stops before the broker closes: the
	// emails in flight finish and are acked.
	app.Go(ctx, "consumer", func(ctx context.Context) { n.Run(ctx, conn) })
	return nil
}
