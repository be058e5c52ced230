package convert

import (
	"context"
	"fmt"
	"time"

	"github.com/audiomill/audiomill/converter/internal/ffmpeg"
	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/consul"
	"github.com/audiomill/audiomill/platform/httpapi"
	"github.com/audiomill/audiomill/platform/service"
)

// closeMargin is added to the grace period for the jobs to hand their
// messages back after they were stopped.
const closeMargin = 10 * time.Second

// Wire builds the converter on app: ffmpeg (readiness check "ffmpeg"),
// RabbitMQ, the service token from auth, filestorage's client and the
// consumer, which runs until ctx is cancelled; shutdown then waits up to
// the grace period for the jobs in hand.
func Wire(ctx context.Context, app *service.App) error {
	tools := ffmpeg.Tools{
		FFmpeg:  app.Env.String("FFMPEG_PATH", "ffmpeg"),
		FFprobe: app.Env.String("FFPROBE_PATH", "ffprobe"),
	}
	cfg := ConfigFromEnv(app.Env)
	authService := authn.ConfigFromEnv(app.Env).Service
	if err := app.Env.Err(); err != nil {
		return err
	}
	app.Server.AddCheck(httpapi.Check{Name: "ffmpeg", Ping: tools.Check})
	conn, err := app.Broker(ctx)
	if err != nil {
		return err
	}
	resolver := consul.NewResolver(app.Consul, app.Logger)
	app.OnClose("resolver", func(context.Context) error { return resolver.Close() })
	tokens, err := authn.NewTokenSource(authn.TokenSourceOptions{
		ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret,
		BaseURL: cfg.AuthURL, Resolver: resolver, Service: authService,
	})
	if err != nil {
		return fmt.Errorf("service token: %w", err)
	}
	files, err := cfg.Filestorage.New(resolver.Picker(cfg.Filestorage.Service), tokens)
	if err != nil {
		return fmt.Errorf("filestorage client: %w", err)
	}
	conv, err := New(cfg, Options{Tools: tools, Files: files, Events: conn,
		Logger: app.Logger.With("component", "converter")})
	if err != nil {
		return err
	}
	if err := conv.RegisterMetrics(app.Server.Registry()); err != nil {
		return err
	}
	// Job directories of a converter killed mid-job (kill -9, OOM): no job
	// of any replica sharing the directory lives this long.
	if n, err := SweepTemp(cfg.TempDir, 2*cfg.MaxTime+time.Hour, time.Now()); err != nil {
		app.Logger.Warn("could not sweep old temporary files", "err", err.Error())
	} else if n > 0 {
		app.Logger.Info("removed temporary files of interrupted jobs", "directories", n)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := conv.Run(runCtx, conn); err != nil {
			app.Logger.Error("consumer stopped", "err", err.Error())
		}
	}()
	// Registered after the broker, so it runs before the broker closes. It
	// waits for the grace period, not the closers' usual bound: a job that
	// finishes in it is acked, one that does not is handed back.
	app.OnClose("consumer", func(context.Context) error {
		cancel()
		select {
		case <-done:
			return nil
		case <-time.After(cfg.GracePeriod + closeMargin):
			return fmt.Errorf("consumer still busy %s after the grace period", closeMargin)
		}
	})
	return nil
}
