package notify

import (
	"context"
	"fmt"

	"github.com/audiomill/audiomill/notifier/internal/mailer"
	"github.com/audiomill/audiomill/platform/httpapi"
	"github.com/audiomill/audiomill/platform/service"
)

// Wire builds the notifier on app: Redis, RabbitMQ, the mailer (with its
// "smtp" readiness check) and the consumer, which runs until ctx is
// cancelled; shutdown waits for the emails in flight.
func Wire(ctx context.Context, app *service.App) error {
	cfg := ConfigFromEnv(app.Env)
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
	n, err := New(cfg, m, rdb, app.Logger.With("component", "notifier"))
	if err != nil {
		return fmt.Errorf("notifier: %w", err)
	}
	if err := n.RegisterMetrics(app.Server.Registry()); err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.Run(runCtx, conn)
	}()
	// Registered after the broker, so it runs before the broker closes:
	// the emails in flight finish and are acked.
	app.OnClose("consumer", func(closeCtx context.Context) error {
		cancel()
		select {
		case <-done:
			return nil
		case <-closeCtx.Done():
			return fmt.Errorf("consumer still busy: %w", closeCtx.Err())
		}
	})
	return nil
}
