// Package convert is the converter's job: it consumes video.uploaded,
// streams the video out of filestorage into a temporary file, converts it
// to an MP3 with ffmpeg, stores the MP3 in filestorage and publishes
// audio.ready or audio.failed (and audio.progress on the way).
package convert

import (
	"strings"
	"time"

	"github.com/audiomill/audiomill/converter/internal/ffmpeg"
	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/broker"
)

// VideoBucket is the bucket the gateway stores users' videos in; events
// name a video by id, and the converter reads only from this bucket.
const VideoBucket = "videos"

// Scope is what the converter's service token needs of filestorage for
// cfg, and all it asks auth for: read the videos, store the MP3s into
// cfg.AudioBucket for the video's owner, and read them back (a redelivered
// job finds the MP3 it stored before).
func Scope(cfg Config) string {
	return strings.Join([]string{
		authn.StorageBucketScope(authn.StorageRead, VideoBucket),
		authn.StorageBucketScope(authn.StorageRead, cfg.AudioBucket),
		authn.StorageBucketScope(authn.StorageWrite, cfg.AudioBucket),
	}, " ")
}

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

// Config is the converter's job configuration (read by the converter's
// internal/app from its CONVERTER_* variables).
type Config struct {
	// ConsumerConfig is the queue consumed (CONVERTER_QUEUE; tests use their
	// own), how many ffmpeg processes run at once (CONVERTER_CONCURRENCY,
	// default the number of CPU cores), how many jobs one converter holds at
	// once, each a message the broker handed over unacked
	// (CONVERTER_PREFETCH, default twice the concurrency: the jobs past the
	// concurrency download their video or upload their MP3 while the others
	// convert, so the cores never wait on the network) and the retries:
	// RetryDelay doubles after each transient failure up to MaxRetryDelay;
	// MaxAttempts bounds the attempts before the message is dead-lettered.
	broker.ConsumerConfig
	// Binding is the routing key bound to Queue (CONVERTER_BINDING); tests
	// use their own, so that they never see other video.uploaded events.
	Binding string
	// Quality of the MP3s (CONVERTER_MP3_QUALITY).
	Quality ffmpeg.Quality
	// MaxTime caps one conversion (CONVERTER_MAX_TIME).
	MaxTime time.Duration
	// MaxDuration is the longest video converted (CONVERTER_MAX_DURATION).
	MaxDuration time.Duration
	// MaxOutputBytes is the largest MP3 made (CONVERTER_MAX_OUTPUT_BYTES).
	MaxOutputBytes int64
	// GracePeriod: see DefaultGracePeriod (CONVERTER_GRACE_PERIOD).
	GracePeriod time.Duration
	// TempDir holds the jobs' temporary files (CONVERTER_TEMP_DIR).
	TempDir string
	// AudioBucket is where the MP3s go (CONVERTER_AUDIO_BUCKET).
	AudioBucket string
}
