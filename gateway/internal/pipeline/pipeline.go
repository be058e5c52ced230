// Package pipeline connects the gateway's jobs to RabbitMQ: it publishes
// video.uploaded for new jobs (marking them published only after the
// broker's confirm), relays the jobs whose event was never confirmed, and
// consumes audio.ready, audio.failed and audio.progress into the jobs'
// status.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/audiomill/audiomill/gateway/internal/jobs"
	"github.com/audiomill/audiomill/platform/broker"
	"github.com/audiomill/audiomill/platform/events"
)

// Defaults of Options left zero.
const (
	DefaultStatusQueue   = "gateway.job-status"
	DefaultRelayInterval = 5 * time.Second
	DefaultRelayAfter    = 10 * time.Second
	DefaultPublishLease  = 30 * time.Second
	publishTimeout       = 10 * time.Second
	// LockPrefix prefixes the Redis key that gives one publisher a job:
	// LockPrefix + job id.
	LockPrefix = "gateway:publish:"
)

// Options configure a Pipeline.
type Options struct {
	Jobs *jobs.Store
	Conn *broker.Conn
	// Locks holds the publication locks (SET NX with a TTL): the jobs'
	// lease in MongoDB narrows the candidates, but FerretDB's findAndModify
	// is not atomic between concurrent callers, so Redis decides who
	// publishes a job.
	Locks  *redis.Client
	Logger *slog.Logger
	// StatusQueue is the queue of audio.* events (DefaultStatusQueue).
	StatusQueue string
	// RelayInterval is how often the relay looks for unpublished jobs.
	RelayInterval time.Duration
	// RelayAfter is how long a new job's publication belongs to its upload
	// before the relay may take it over.
	RelayAfter time.Duration
	// PublishLease is how long a relay owns a job it is publishing.
	PublishLease time.Duration
	// Registerer takes the pipeline's metrics (none when nil).
	Registerer prometheus.Registerer
}

// Pipeline publishes and consumes the gateway's events.
type Pipeline struct {
	opts      Options
	published *prometheus.CounterVec
	applied   *prometheus.CounterVec
}

// New returns a Pipeline for opts.
func New(opts Options) *Pipeline {
	if opts.StatusQueue == "" {
		opts.StatusQueue = DefaultStatusQueue
	}
	if opts.RelayInterval <= 0 {
		opts.RelayInterval = DefaultRelayInterval
	}
	if opts.RelayAfter <= 0 {
		opts.RelayAfter = DefaultRelayAfter
	}
	if opts.PublishLease <= 0 {
		opts.PublishLease = DefaultPublishLease
	}
	p := &Pipeline{opts: opts,
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_video_uploaded_published_total",
			Help: "video.uploaded publishes by who published (upload, relay) and result (confirmed, failed).",
		}, []string{"by", "result"}),
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_job_events_total",
			Help: "audio.* events consumed, by type and whether they changed the job.",
		}, []string{"type", "changed"}),
	}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(p.published, p.applied)
	}
	return p
}

// RelayAfter is the publication lease a new job is created with.
func (p *Pipeline) RelayAfter() time.Duration { return p.opts.RelayAfter }

// Publish publishes the video.uploaded of a job just created, unless
// another publisher holds it, and marks it published once the broker
// confirmed. On an error the job stays unpublished and the relay publishes
// it later. A Redis that cannot be reached does not stop it: no relay can
// take the job then either.
func (p *Pipeline) Publish(ctx context.Context, j jobs.Job) error {
	ok, err := p.lock(ctx, j, p.opts.RelayAfter)
	if err != nil {
		p.opts.Logger.Warn("publish lock unavailable; publishing anyway", "job_id", j.ID.Hex(), "err", err.Error())
	} else if !ok {
		return fmt.Errorf("publish job %s: another publisher holds it", j.ID.Hex())
	}
	// Done well before the lock and the job's lease run out, so a relay
	// never publishes the job while this publish is still waiting.
	ctx, cancel := context.WithTimeout(ctx, p.opts.RelayAfter/2)
	defer cancel()
	if err := p.publish(ctx, j); err != nil {
		p.published.WithLabelValues("upload", "failed").Inc()
		p.unlock(j)
		return err
	}
	p.published.WithLabelValues("upload", "confirmed").Inc()
	return nil
}

// unlock releases the job's publication lock after a failed publish, so
// the relay's next pass may try again as soon as the job's lease allows.
func (p *Pipeline) unlock(j jobs.Job) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = p.opts.Locks.Del(ctx, LockPrefix+j.ID.Hex()).Err()
}

// lock takes the job's publication lock for ttl.
func (p *Pipeline) lock(ctx context.Context, j jobs.Job, ttl time.Duration) (bool, error) {
	ok, err := p.opts.Locks.SetNX(ctx, LockPrefix+j.ID.Hex(), broker.NewID(), ttl).Result()
	if err != nil {
		return false, fmt.Errorf("publish lock %s: %w", j.ID.Hex(), err)
	}
	return ok, nil
}

func (p *Pipeline) publish(ctx context.Context, j jobs.Job) error {
	payload := events.VideoUploaded{
		VideoID: j.Video.FileID, OwnerID: j.Owner, OwnerEmail: j.OwnerEmail, Locale: j.Locale,
		FileName: j.Video.Name, ContentType: j.Video.ContentType, Size: j.Video.Size,
	}
	if err := payload.Validate(); err != nil {
		return fmt.Errorf("publish job %s: %w", j.ID.Hex(), err)
	}
	env, err := broker.NewEnvelope(events.TypeVideoUploaded, j.ID.Hex(), j.RequestID, payload)
	if err != nil {
		return fmt.Errorf("publish job %s: %w", j.ID.Hex(), err)
	}
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	if err := p.opts.Conn.Publish(ctx, events.TypeVideoUploaded, env); err != nil {
		return fmt.Errorf("publish job %s: %w", j.ID.Hex(), err)
	}
	if err := p.opts.Jobs.MarkPublished(ctx, j.ID); err != nil {
		// The event is out; a relay will send it once more, which the
		// converter's idempotency absorbs.
		return fmt.Errorf("publish job %s: %w", j.ID.Hex(), err)
	}
	return nil
}

// Relay republishes, every RelayInterval until ctx ends, the jobs whose
// video.uploaded was never confirmed. Each job is claimed with a lease
// first, so several gateway replicas never publish one job at once.
func (p *Pipeline) Relay(ctx context.Context) {
	t := time.NewTicker(p.opts.RelayInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := p.RelayOnce(ctx)
		if err != nil && ctx.Err() == nil {
			p.opts.Logger.Warn("relay: pass failed", "err", err.Error(), "published", n)
		} else if n > 0 {
			p.opts.Logger.Info("relay: published unconfirmed jobs", "count", n)
		}
	}
}

// relayBatch is how many unpublished jobs one relay pass reads at a time.
const relayBatch = 100

// RelayOnce publishes every unpublished job whose lease ran out and whose
// lock it gets, and returns how many it published. It stops at the first
// failure to publish (the broker is likely down; the next pass tries
// again).
func (p *Pipeline) RelayOnce(ctx context.Context) (int, error) {
	list, err := p.opts.Jobs.Unpublished(ctx, relayBatch)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, j := range list {
		if ctx.Err() != nil {
			break
		}
		locked, err := p.lock(ctx, j, p.opts.PublishLease)
		if err != nil {
			return n, err
		}
		if !locked {
			continue // another replica (or the upload) publishes it
		}
		if err := p.publish(ctx, j); err != nil {
			if errors.Is(err, events.ErrInvalidPayload) {
				// Never publishable: the lock stays, so it is retried only
				// once per PublishLease, loudly.
				p.opts.Logger.Error("relay: job cannot be published", "job_id", j.ID.Hex(), "err", err.Error())
				continue
			}
			p.published.WithLabelValues("relay", "failed").Inc()
			p.unlock(j)
			return n, err
		}
		p.published.WithLabelValues("relay", "confirmed").Inc()
		p.opts.Logger.Info("relay: published", "job_id", j.ID.Hex(), "request_id", j.RequestID)
		n++
	}
	return n, nil
}

// Consume consumes audio.ready, audio.failed and audio.progress into the
// jobs' status until ctx ends. It blocks.
func (p *Pipeline) Consume(ctx context.Context) error {
	return broker.Consume(ctx, p.opts.Conn, broker.QueueSpec{
		Name:     p.opts.StatusQueue,
		Bindings: []string{events.TypeAudioReady, events.TypeAudioFailed, events.TypeAudioProgress},
		Prefetch: 16,
		// One at a time, in queue order: FerretDB 1.24 applies an update as
		// a read followed by a whole-document write, so two updates of one
		// job at once (its last progress and its ready) could lose one.
		// MongoDB's updates are atomic per document; the status filters
		// make every update idempotent either way.
		Concurrency: 1,
	}, p.Handle)
}

// Handle applies one audio.* event to its job. Events for a job that does
// not exist (deleted, or another deployment's) are acknowledged and
// dropped; a malformed one goes to the dead-letter queue.
func (p *Pipeline) Handle(ctx context.Context, d broker.Delivery) error {
	id, err := jobs.ParseID(d.JobID)
	if err != nil {
		return broker.Permanent(fmt.Errorf("%s: job id %q: %w", d.Type, d.JobID, err))
	}
	var changed bool
	switch d.Type {
	case events.TypeAudioReady:
		ev, err := events.Decode[events.AudioReady](d.Payload)
		if err != nil {
			return broker.Permanent(err)
		}
		changed, err = p.opts.Jobs.SetDone(ctx, id, jobs.Audio{FileID: ev.AudioID, Size: ev.Size,
			DurationSeconds: ev.DurationSeconds, BitrateKbps: ev.BitrateKbps})
		if err != nil {
			return err
		}
	case events.TypeAudioFailed:
		ev, err := events.Decode[events.AudioFailed](d.Payload)
		if err != nil {
			return broker.Permanent(err)
		}
		if changed, err = p.opts.Jobs.SetFailed(ctx, id, ev.Reason, ev.Retryable); err != nil {
			return err
		}
	case events.TypeAudioProgress:
		ev, err := events.Decode[events.AudioProgress](d.Payload)
		if err != nil {
			return broker.Permanent(err)
		}
		if changed, err = p.opts.Jobs.SetProgress(ctx, id, ev.Percent); err != nil {
			return err
		}
	default:
		return broker.Permanent(fmt.Errorf("unexpected event type %q", d.Type))
	}
	p.applied.WithLabelValues(d.Type, strconv.FormatBool(changed)).Inc()
	p.opts.Logger.Debug("job status event", "job_id", d.JobID, "type", d.Type, "changed", changed,
		"request_id", d.CorrelationID)
	return nil
}
