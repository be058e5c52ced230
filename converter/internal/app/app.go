// Package app wires the converter on a platform service.App: its
// configuration, ffmpeg, RabbitMQ, its service token, filestorage's client
// and the consumer of video.uploaded (package convert).
package app

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/audiomill/audiomill/converter/internal/convert"
	"github.com/audiomill/audiomill/converter/internal/ffmpeg"
	"github.com/audiomill/audiomill/filestorage/client"
	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/broker"
	"github.com/audiomill/audiomill/platform/config"
	"github.com/audiomill/audiomill/platform/events"
	"github.com/audiomill/audiomill/platform/httpapi"
	"github.com/audiomill/audiomill/platform/service"
)

// Name is the converter's name in Consul and the logs.
const Name = "converter"

// DefaultPort is the converter's port when PORT is unset (it serves only
// /healthz, /readyz and /metrics).
const DefaultPort = 8104

// Smallest values of the bounds ReadConfig accepts: below them no
// conversion could succeed.
const (
	minOutputBytes = 64 << 10
	minMemory      = 256 << 20
)

// Spec returns the converter's service.Spec. Nothing sends it requests
// found through Consul: it only consumes.
func Spec(version string) service.Spec {
	return service.Spec{Name: Name, Version: version, DefaultPort: DefaultPort, Unrouted: true, Wire: Wire}
}

// Config is the converter's own configuration.
type Config struct {
	// Convert is the job's configuration (CONVERTER_*).
	Convert convert.Config
	// Tools are the ffmpeg and ffprobe binaries (FFMPEG_PATH, FFPROBE_PATH).
	Tools ffmpeg.Tools
	// Filestorage is where filestorage is (FILESTORAGE_URL, else found
	// through Consul as FILESTORAGE_SERVICE).
	Filestorage client.Config
	// Account is the converter's service account (SERVICE_CLIENT_ID,
	// SERVICE_CLIENT_SECRET, both required; it needs the scopes of
	// convert.Scope) and where auth is (AUTH_URL, AUTH_SERVICE).
	Account authn.ServiceAccount
}

// ReadConfig reads the converter's variables; problems are recorded in r.
func ReadConfig(r *config.Reader) Config {
	c := Config{
		Tools: ffmpeg.Tools{
			FFmpeg:  r.String("FFMPEG_PATH", "ffmpeg"),
			FFprobe: r.String("FFPROBE_PATH", "ffprobe"),
			Limits: ffmpeg.Limits{
				CPUTime: r.Duration("CONVERTER_FFMPEG_CPU_TIME", ffmpeg.DefaultCPUTime),
				Memory:  r.Int64("CONVERTER_FFMPEG_MEMORY", ffmpeg.DefaultMemory),
			},
		},
		Convert: convert.Config{
			ConsumerConfig: broker.ReadConsumerConfig(r, "CONVERTER", broker.ConsumerDefaults{
				Queue:           convert.DefaultQueue,
				Concurrency:     runtime.NumCPU(),
				RetryDelay:      convert.DefaultRetryDelay,
				MaxRetryDelay:   convert.DefaultMaxRetryDelay,
				MaxAttempts:     convert.DefaultMaxAttempts,
				PrefetchPerSlot: 2,
			}),
			Binding:        r.String("CONVERTER_BINDING", events.TypeVideoUploaded),
			MaxTime:        r.Duration("CONVERTER_MAX_TIME", ffmpeg.DefaultMaxTime),
			MaxDuration:    r.Duration("CONVERTER_MAX_DURATION", ffmpeg.DefaultMaxDuration),
			MaxOutputBytes: r.Int64("CONVERTER_MAX_OUTPUT_BYTES", ffmpeg.DefaultMaxOutputBytes),
			GracePeriod:    r.Duration("CONVERTER_GRACE_PERIOD", convert.DefaultGracePeriod),
			TempDir:        r.String("CONVERTER_TEMP_DIR", os.TempDir()),
			AudioBucket:    r.String("CONVERTER_AUDIO_BUCKET", convert.DefaultAudioBucket),
		},
		Filestorage: client.ConfigFromEnv(r),
		Account:     authn.ReadServiceAccount(r, ""),
	}
	q, err := ffmpeg.ParseQuality(r.String("CONVERTER_MP3_QUALITY", ffmpeg.DefaultQuality))
	if err != nil {
		r.Fail("CONVERTER_MP3_QUALITY", "%v", err)
	}
	c.Convert.Quality = q
	if c.Convert.MaxTime < time.Second {
		r.Fail("CONVERTER_MAX_TIME", "must be at least 1s")
	}
	if c.Convert.MaxDuration < time.Second {
		r.Fail("CONVERTER_MAX_DURATION", "must be at least 1s")
	}
	if c.Convert.MaxOutputBytes < minOutputBytes {
		r.Fail("CONVERTER_MAX_OUTPUT_BYTES", "must be at least %d (64KiB)", minOutputBytes)
	}
	if c.Tools.Limits.CPUTime < time.Second {
		r.Fail("CONVERTER_FFMPEG_CPU_TIME", "must be at least 1s")
	}
	if c.Tools.Limits.Memory < minMemory {
		r.Fail("CONVERTER_FFMPEG_MEMORY", "must be at least %d (256MiB: ffmpeg alone maps about 270 MiB)", minMemory)
	}
	if c.Convert.GracePeriod < 0 {
		r.Fail("CONVERTER_GRACE_PERIOD", "must not be negative")
	}
	if st, err := os.Stat(c.Convert.TempDir); err != nil || !st.IsDir() {
		r.Fail("CONVERTER_TEMP_DIR", "%s is not a directory", c.Convert.TempDir)
	}
	return c
}

// Wire builds the converter on app: ffmpeg (readiness check "ffmpeg"),
// RabbitMQ, the service token from auth, filestorage's client and the
// consumer, which runs until ctx is cancelled; shutdown then waits up to
// the grace period for the jobs in hand.
func Wire(ctx context.Context, app *service.App) error {
	cfg := ReadConfig(app.Env)
	if err := app.Env.Err(); err != nil {
		return err
	}
	app.Server.AddCheck(httpapi.Check{Name: "ffmpeg", Ping: cfg.Tools.Check})
	conn, err := app.Broker(ctx)
	if err != nil {
		return err
	}
	account := cfg.Account
	account.Scope = convert.Scope(cfg.Convert)
	tokens, err := account.TokenSource(app.Resolver())
	if err != nil {
		return fmt.Errorf("service token: %w", err)
	}
	files, err := cfg.Filestorage.New(app.Resolver().Picker(cfg.Filestorage.Service), tokens)
	if err != nil {
		return fmt.Errorf("filestorage client: %w", err)
	}
	conv, err := convert.New(cfg.Convert, convert.Options{Tools: cfg.Tools, Files: files, Events: conn,
		Logger: app.Logger.With("component", "converter")})
	if err != nil {
		return err
	}
	if err := conv.RegisterMetrics(app.Server.Registry()); err != nil {
		return err
	}
	// Job directories of a converter killed mid-job (kill -9, OOM): no job
	// of any replica sharing the directory lives this long.
	if n, err := convert.SweepTemp(cfg.Convert.TempDir, 2*cfg.Convert.MaxTime+time.Hour, time.Now()); err != nil {
		app.Logger.Warn("could not sweep old temporary files", "err", err.Error())
	} else if n > 0 {
		app.Logger.Info("removed temporary files of interrupted jobs", "directories", n)
	}
	// Started after the broker, so it stops before the broker closes. It
	// waits for the grace period, not the closers' usual bound: a job that
	// finishes in it is acked, one that does not is handed back.
	app.GoWithGrace(ctx, "consumer", cfg.Convert.GracePeriod, func(ctx context.Context) {
		if err := conv.Run(ctx, conn); err != nil {
			app.Logger.Error("consumer stopped", "err", err.Error())
		}
	})
	return nil
}
