// Package convert is the converter's job: it consumes video.uploaded,
// streams the video out of filestorage into a temporary file, converts it
// to an MP3 with ffmpeg, stores the MP3 in filestorage and publishes
// audio.ready or audio.failed (and audio.progress on the way).
package convert

import (
	"os"
	"runtime"
	"time"

	"github.com/audiomill/audiomill/converter/internal/ffmpeg"
	"github.com/audiomill/audiomill/filestorage/client"
	"github.com/audiomill/audiomill/platform/config"
	"github.com/audiomill/audiomill/platform/events"
)

// Defaults of Config.
const (
	DefaultQueue         = "converter.video-uploaded"
	DefaultAudioBucket   = "audio"
	DefaultRetryDelay    = 10 * time.Second
	DefaultMaxRetryDelay = 5 * time.Minute
	DefaultMaxAttempts   = 5
	// DefaultGracePeriod is how long a job in hand may go on after SIGTERM
	// before it is stopped and handed back to the queue.
	DefaultGracePeriod = 20 * time.Second
	// DefaultProgressTimeout bounds the publish of one progress event.
	DefaultProgressTimeout = 5 * time.Second
)

// Config is the converter's configuration.
type Config struct {
	// Queue is consumed (CONVERTER_QUEUE); tests use their own.
	Queue string
	// Binding is the routing key bound to Queue (CONVERTER_BINDING); tests
	// use their own, so that they never see other video.uploaded events.
	Binding string
	// Concurrency is how many ffmpeg processes run at once
	// (CONVERTER_CONCURRENCY, default the number of CPU cores). Prefetch is
	// how many jobs one converter holds at once, each a message the broker
	// handed over unacked (CONVERTER_PREFETCH, default twice Concurrency):
	// the jobs past Concurrency download their video or upload their MP3
	// while the others convert, so the cores never wait on the network.
	Concurrency, Prefetch int
	// RetryDelay doubles after each transient failure up to MaxRetryDelay;
	// MaxAttempts bounds the attempts before the message is dead-lettered.
	RetryDelay, MaxRetryDelay time.Duration
	MaxAttempts               int
	// Quality of the MP3s (CONVERTER_MP3_QUALITY).
	Quality ffmpeg.Quality
	// MaxTime caps one conversion (CONVERTER_MAX_TIME).
	MaxTime time.Duration
	// GracePeriod: see DefaultGracePeriod (CONVERTER_GRACE_PERIOD).
	GracePeriod time.Duration
	// TempDir holds the jobs' temporary files (CONVERTER_TEMP_DIR).
	TempDir string
	// AudioBucket is where the MP3s go (CONVERTER_AUDIO_BUCKET).
	AudioBucket string
	// Filestorage is where filestorage is (FILESTORAGE_URL, else found
	// through Consul as FILESTORAGE_SERVICE).
	Filestorage client.Config
	// AuthURL, when set, is auth's base URL for the service token; else auth
	// is found through Consul under AUTH_SERVICE (AUTH_URL).
	AuthURL string
	// ClientID and ClientSecret are the converter's service account
	// (SERVICE_CLIENT_ID, SERVICE_CLIENT_SECRET), which needs the scope
	// storage:admin.
	ClientID, ClientSecret string
}

// ConfigFromEnv reads the Config; problems are reported by r.Err.
func ConfigFromEnv(r *config.Reader) Config {
	c := Config{
		Queue:         r.String("CONVERTER_QUEUE", DefaultQueue),
		Binding:       r.String("CONVERTER_BINDING", events.TypeVideoUploaded),
		Concurrency:   r.Int("CONVERTER_CONCURRENCY", runtime.NumCPU()),
		RetryDelay:    r.Duration("CONVERTER_RETRY_DELAY", DefaultRetryDelay),
		MaxRetryDelay: r.Duration("CONVERTER_MAX_RETRY_DELAY", DefaultMaxRetryDelay),
		MaxAttempts:   r.Int("CONVERTER_MAX_ATTEMPTS", DefaultMaxAttempts),
		MaxTime:       r.Duration("CONVERTER_MAX_TIME", ffmpeg.DefaultMaxTime),
		GracePeriod:   r.Duration("CONVERTER_GRACE_PERIOD", DefaultGracePeriod),
		TempDir:       r.String("CONVERTER_TEMP_DIR", os.TempDir()),
		AudioBucket:   r.String("CONVERTER_AUDIO_BUCKET", DefaultAudioBucket),
		Filestorage:   client.ConfigFromEnv(r),
		AuthURL:       optionalURL(r, "AUTH_URL"),
		ClientID:      r.Required("SERVICE_CLIENT_ID"),
		ClientSecret:  r.Required("SERVICE_CLIENT_SECRET"),
	}
	c.Prefetch = r.Int("CONVERTER_PREFETCH", 2*c.Concurrency)
	q, err := ffmpeg.ParseQuality(r.String("CONVERTER_MP3_QUALITY", ffmpeg.DefaultQuality))
	if err != nil {
		r.Fail("CONVERTER_MP3_QUALITY", "%v", err)
	}
	c.Quality = q
	if c.Concurrency < 1 {
		r.Fail("CONVERTER_CONCURRENCY", "must be at least 1")
	}
	if c.Prefetch < c.Concurrency {
		r.Fail("CONVERTER_PREFETCH", "must be at least CONVERTER_CONCURRENCY (%d)", c.Concurrency)
	}
	if c.MaxAttempts < 1 {
		r.Fail("CONVERTER_MAX_ATTEMPTS", "must be at least 1")
	}
	if c.RetryDelay <= 0 || c.MaxRetryDelay < c.RetryDelay {
		r.Fail("CONVERTER_RETRY_DELAY", "must be positive and at most CONVERTER_MAX_RETRY_DELAY")
	}
	if c.MaxTime < time.Second {
		r.Fail("CONVERTER_MAX_TIME", "must be at least 1s")
	}
	if c.GracePeriod < 0 {
		r.Fail("CONVERTER_GRACE_PERIOD", "must not be negative")
	}
	if st, err := os.Stat(c.TempDir); err != nil || !st.IsDir() {
		r.Fail("CONVERTER_TEMP_DIR", "%s is not a directory", c.TempDir)
	}
	return c
}

// optionalURL reads an http(s) URL that may be unset.
func optionalURL(r *config.Reader, name string) string {
	if r.String(name, "") == "" {
		return ""
	}
	return r.URL(name, "", "http", "https")
}
