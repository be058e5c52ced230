package convert

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/audiomill/audiomill/platform/httpapi"
)

// Results counted by converter_jobs_total.
const (
	resultReady     = "ready"     // MP3 stored, audio.ready confirmed
	resultAnnounced = "announced" // a redelivery found the MP3 stored and announced it again
	resultFailed    = "failed"    // the video cannot be converted: audio.failed confirmed
	resultRetry     = "retry"     // transient failure: tried again later
	resultExhausted = "exhausted" // transient failure on the last attempt: dead-lettered
	resultInvalid   = "invalid"   // not a valid video.uploaded: dead-lettered
)

type metrics struct {
	jobs     *prometheus.CounterVec
	stage    *prometheus.HistogramVec
	inFlight prometheus.Gauge
	running  prometheus.Gauge
}

func newMetrics() *metrics {
	return &metrics{
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "converter_jobs_total",
			Help: "Deliveries handled, by result (ready, announced, failed, retry, exhausted, invalid).",
		}, []string{"result"}),
		stage: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "converter_stage_seconds",
			Help:    "Time of each stage of a successful conversion (download, slot_wait, ffmpeg, upload_publish).",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 18),
		}, []string{"stage"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "converter_jobs_in_flight",
			Help: "Jobs in hand: downloading, waiting for an ffmpeg slot, converting or uploading.",
		}),
		running: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "converter_ffmpeg_running",
			Help: "ffmpeg processes running (at most CONVERTER_CONCURRENCY).",
		}),
	}
}

// RegisterMetrics registers the converter's metrics (converter_jobs_total,
// converter_stage_seconds, converter_jobs_in_flight,
// converter_ffmpeg_running) with reg.
func (c *Converter) RegisterMetrics(reg prometheus.Registerer) error {
	return httpapi.RegisterMetrics(reg, "converter", c.metrics.jobs, c.metrics.stage, c.metrics.inFlight, c.metrics.running)
}
