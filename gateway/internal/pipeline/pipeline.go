// Package pipeline connects the gateway's jobs to RabbitMQ: it builds the
// video.uploaded event of a new job (written to the outbox with the job),
// publishes it right after the upload (marking it published only after the
// broker's confirm), relays the events whose publication was never
// confirmed, and consumes audio.ready, audio.failed and audio.progress into
// the jobs' status.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/audiomill/audiomill/filestorage/client"
	"github.com/audiomill/audiomill/gateway/internal/jobs"
	"github.com/audiomill/audiomill/platform/broker"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/events"
)

// Defaults of Options left zero.
const (
	DefaultStatusQueue = "gateway.job-status"
	// DefaultConcurrency is how many status events one gateway applies at
	// once: each is one conditional UPDATE, so events of one job may be
	// applied concurrently (by one replica or several) without losing one.
	DefaultConcurrency   = 8
	DefaultRelayInterval = 5 * time.Second
	DefaultRelayAfter    = 10 * time.Second
	DefaultPublishLease  = 30 * time.Second
	// DefaultRetention is how long a published event stays in the outbox.
	DefaultRetention = 7 * 24 * time.Hour
	// DefaultChangeRetention is how long a job's change stays in the
	// change feed (a live stream resumes within it).
	DefaultChangeRetention = 24 * time.Hour
	publishTimeout         = 10 * time.Second
	// relayBatch is how many events one relay claim takes.
	relayBatch = 100
	// relayMaxFailures ends a relay pass after that many publishes in a row
	// failed (the broker is likely down; the next pass tries again).
	relayMaxFailures = 3
	// pruneEvery is how often the relay deletes old published events.
	pruneEvery = time.Hour
	// keySweepBatch and keySweepBatches bound one sweep of expired
	// Idempotency-Keys (each batch one bounded delete).
	keySweepBatch   = 1000
	keySweepBatches = 20
)

// Files is what the pipeline asks filestorage (*storage.Storage): whose
// the MP3 an audio.ready names is.
type Files interface {
	// Stat returns file id's metadata; errs.NotFound when there is none.
	Stat(ctx context.Context, id string) (client.File, error)
}

// Options configure a Pipeline.
type Options struct {
	Jobs   *jobs.Store
	Conn   *broker.Conn
	Logger *slog.Logger
	// Files checks the owner of the MP3 of each audio.ready before it is
	// attached to its job. Without it (the gateway has no service
	// account) audio.ready events are not applied: they are retried, and
	// end in the dead-letter queue.
	Files Files
	// Ready, when not nil, is closed once the jobs' schema is migrated: the
	// relay and the consumer start after it.
	Ready <-chan struct{}
	// StatusQueue is the queue of audio.* events (DefaultStatusQueue).
	StatusQueue string
	// Concurrency is how many status events are applied at once
	// (DefaultConcurrency).
	Concurrency int
	// RelayInterval is how often the relay looks for unpublished events.
	RelayInterval time.Duration
	// RelayAfter is how long a new job's event belongs to its upload before
	// a relay may claim it.
	RelayAfter time.Duration
	// PublishLease is how long a relay owns the events it claimed.
	PublishLease time.Duration
	// Retention is how long published events stay in the outbox
	// (DefaultRetention).
	Retention time.Duration
	// ChangeRetention is how long the jobs' changes stay in the change
	// feed (DefaultChangeRetention).
	ChangeRetention time.Duration
	// Registerer takes the pipeline's metrics (none when nil).
	Registerer prometheus.Registerer
}

// Pipeline publishes and consumes the gateway's events.
type Pipeline struct {
	opts      Options
	published *prometheus.CounterVec
	applied   *prometheus.CounterVec
	rejected  *prometheus.CounterVec
}

// New returns a Pipeline for opts.
func New(opts Options) *Pipeline {
	if opts.StatusQueue == "" {
		opts.StatusQueue = DefaultStatusQueue
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = DefaultConcurrency
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
	if opts.Retention <= 0 {
		opts.Retention = DefaultRetention
	}
	if opts.ChangeRetention <= 0 {
		opts.ChangeRetention = DefaultChangeRetention
	}
	p := &Pipeline{opts: opts,
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_video_uploaded_published_total",
			Help: "video.uploaded publishes by who published (upload, relay) and result (confirmed, failed, dead).",
		}, []string{"by", "result"}),
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_job_events_total",
			Help: "audio.* events consumed, by type and whether they changed the job.",
		}, []string{"type", "changed"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_job_events_rejected_total",
			Help: "audio.* events refused and dead-lettered, by type and reason (not_owner: an audio.ready naming an MP3 that is not the job owner's; no_file: one naming no file).",
		}, []string{"type", "reason"}),
	}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(p.published, p.applied, p.rejected)
	}
	return p
}

// Record records j, queued, with its video.uploaded event in the outbox, in
// one transaction, and returns the event for Publish. The event is claimed
// for RelayAfter, so that no relay takes it before the Publish that
// follows. A job whose event the contract refuses is errs.Invalid, naming
// the field, and nothing is written. j.ID must be set; Record sets j's
// Status, CreatedAt and UpdatedAt. key, when not nil, is the upload's
// Idempotency-Key: it gets j as its job in the same transaction, and a key
// another attempt took over is errs.Conflict (jobs.Store.CreateClaimed).
func (p *Pipeline) Record(ctx context.Context, j *jobs.Job, key *jobs.KeyClaim) (jobs.Event, error) {
	ev, err := UploadedEvent(*j)
	if err != nil {
		return jobs.Event{}, err
	}
	if err := p.opts.Jobs.CreateClaimed(ctx, j, &ev, p.opts.RelayAfter, key); err != nil {
		return jobs.Event{}, err
	}
	return ev, nil
}

// UploadedEvent returns the outbox event of j's video.uploaded. A job whose
// event could never be published (a field the contract refuses) is
// errs.Invalid, naming the field.
func UploadedEvent(j jobs.Job) (jobs.Event, error) {
	payload := uploadedPayload(j)
	if err := payload.Validate(); err != nil {
		return jobs.Event{}, errs.Wrap(err, errs.Invalid, "the upload cannot be converted: %s", err.Error())
	}
	return envelopeOf(j, payload)
}

// UnvalidatedUploadedEvent is UploadedEvent without the payload's
// validation: for jobs recorded before (the relay discards what cannot be
// published).
func UnvalidatedUploadedEvent(j jobs.Job) (jobs.Event, error) {
	return envelopeOf(j, uploadedPayload(j))
}

func uploadedPayload(j jobs.Job) events.VideoUploaded {
	return events.VideoUploaded{
		VideoID: j.Video.FileID, OwnerID: j.Owner, OwnerEmail: j.OwnerEmail, Locale: j.Locale,
		FileName: j.Video.Name, ContentType: j.Video.ContentType, Size: j.Video.Size,
	}
}

func envelopeOf(j jobs.Job, payload events.VideoUploaded) (jobs.Event, error) {
	env, err := broker.NewEnvelope(events.TypeVideoUploaded, j.ID.Hex(), j.RequestID, payload)
	if err != nil {
		return jobs.Event{}, fmt.Errorf("event of job %s: %w", j.ID.Hex(), err)
	}
	body, err := env.Encode()
	if err != nil {
		return jobs.Event{}, fmt.Errorf("event of job %s: %w", j.ID.Hex(), err)
	}
	return jobs.Event{JobID: j.ID, Type: events.TypeVideoUploaded, Envelope: body}, nil
}

// Publish publishes ev, the event of a job just recorded (its outbox row is
// claimed for RelayAfter by Record), and marks it published once the
// broker confirmed. On an error the event stays unpublished and a relay
// publishes it once the claim runs out.
//
// This publish and the relays do not both publish an event in the common
// case: the publish is bounded by half the claim, and a relay only takes
// rows whose claim ran out. In a rare race they may (the gateway paused
// past the claim; the database lost between the confirm and
// MarkPublished): the envelope is the same, with the same event id and job
// id, and every consumer is idempotent per job (the converter's MP3 and the
// notifier's email are keyed by the job id), so a second delivery changes
// nothing.
func (p *Pipeline) Publish(ctx context.Context, ev jobs.Event) error {
	ctx, cancel := context.WithTimeout(ctx, p.opts.RelayAfter/2)
	defer cancel()
	if err := p.publish(ctx, ev); err != nil {
		p.published.WithLabelValues("upload", "failed").Inc()
		return err
	}
	p.published.WithLabelValues("upload", "confirmed").Inc()
	return nil
}

// Announce publishes ev, the video.uploaded of j that Record just wrote,
// beyond a client that leaves now (the job is accepted), and logs j as
// accepted with attrs; an event not confirmed is left to the relay.
func (p *Pipeline) Announce(ctx context.Context, j jobs.Job, ev jobs.Event, attrs ...any) {
	if err := p.Publish(context.WithoutCancel(ctx), ev); err != nil {
		p.opts.Logger.WarnContext(ctx, "video.uploaded not confirmed; the relay will publish it",
			"job_id", j.ID.Hex(), "err", err.Error())
	}
	p.opts.Logger.InfoContext(ctx, "video accepted", append([]any{"job_id", j.ID.Hex(), "owner", j.Owner,
		"size", j.Video.Size, "video_id", j.Video.FileID}, attrs...)...)
}

// unpublishable is the error of an event that can never be published: its
// envelope or its payload breaks the contract (cause says how).
type unpublishable struct {
	ev    jobs.Event
	cause error
}

func (u *unpublishable) Error() string {
	return fmt.Sprintf("event %d of job %s cannot be published: %v", u.ev.ID, u.ev.JobID.Hex(), u.cause)
}

func (u *unpublishable) Unwrap() error { return u.cause }

func (p *Pipeline) publish(ctx context.Context, ev jobs.Event) error {
	env, err := broker.DecodeEnvelope(ev.Envelope)
	if err != nil {
		return &unpublishable{ev: ev, cause: err}
	}
	if ev.Type == events.TypeVideoUploaded {
		if _, err := events.Decode[events.VideoUploaded](env.Payload); err != nil {
			return &unpublishable{ev: ev, cause: err}
		}
	}
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	if err := p.opts.Conn.Publish(pctx, ev.Type, env); err != nil {
		return fmt.Errorf("publish job %s: %w", ev.JobID.Hex(), err)
	}
	if err := p.opts.Jobs.MarkPublished(context.WithoutCancel(ctx), ev.ID); err != nil {
		// The event is out; a relay will send it once more, which the
		// consumers' idempotency absorbs.
		return fmt.Errorf("publish job %s: %w", ev.JobID.Hex(), err)
	}
	return nil
}

// waitReady waits for the schema; false when ctx ended first.
func (p *Pipeline) waitReady(ctx context.Context) bool {
	if p.opts.Ready == nil {
		return true
	}
	select {
	case <-p.opts.Ready:
		return true
	case <-ctx.Done():
		return false
	}
}

// Relay publishes, every RelayInterval until ctx ends (starting once the
// schema is ready), the events whose publication was never confirmed, and
// prunes published events older than Retention (and sweeps expired
// Idempotency-Keys, and prunes job changes older than ChangeRetention) once
// an hour.
func (p *Pipeline) Relay(ctx context.Context) {
	if !p.waitReady(ctx) {
		return
	}
	t := time.NewTicker(p.opts.RelayInterval)
	defer t.Stop()
	var pruned time.Time
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
			p.opts.Logger.Info("relay: published unconfirmed events", "count", n)
		}
		if time.Since(pruned) >= pruneEvery {
			pruned = time.Now()
			if c, err := p.opts.Jobs.Prune(ctx, p.opts.Retention); err != nil && ctx.Err() == nil {
				p.opts.Logger.Warn("relay: pruning published events failed", "err", err.Error())
			} else if c > 0 {
				p.opts.Logger.Info("relay: pruned published events", "count", c)
			}
			p.sweepKeys(ctx)
			if c, err := p.opts.Jobs.PruneChanges(ctx, p.opts.ChangeRetention); err != nil && ctx.Err() == nil {
				p.opts.Logger.Warn("relay: pruning job changes failed", "err", err.Error())
			} else if c > 0 {
				p.opts.Logger.Info("relay: pruned job changes", "count", c)
			}
		}
	}
}

// sweepKeys deletes the expired Idempotency-Keys, keySweepBatch at a time
// and at most keySweepBatches batches a pass (an expired key is ignored
// by the uploads anyway: the sweep only bounds the table).
func (p *Pipeline) sweepKeys(ctx context.Context) {
	var total int64
	for range keySweepBatches {
		n, err := p.opts.Jobs.SweepKeys(ctx, keySweepBatch)
		if err != nil {
			if ctx.Err() == nil {
				p.opts.Logger.Warn("relay: sweeping expired idempotency keys failed", "err", err.Error())
			}
			break
		}
		total += n
		if n < keySweepBatch {
			break
		}
	}
	if total > 0 {
		p.opts.Logger.Info("relay: swept expired idempotency keys", "count", total)
	}
}

// RelayOnce claims the unpublished events whose claim ran out, a batch at a
// time, publishes them and returns how many it published. An event that can
// never be published (its envelope or payload is invalid) is discarded: set
// aside as dead with the reason, and its job failed, so it never holds up
// the others. A failed publish gives the event back, claimable again after
// RelayInterval (behind the others: claims are taken oldest first); after
// relayMaxFailures failures in a row the pass ends and gives back the rest.
func (p *Pipeline) RelayOnce(ctx context.Context) (int, error) {
	n := 0
	for ctx.Err() == nil {
		batch, err := p.opts.Jobs.Claim(ctx, relayBatch, p.opts.PublishLease)
		if err != nil {
			return n, err
		}
		failures := 0
		var lastErr error
		for i, ev := range batch {
			if ctx.Err() != nil || failures >= relayMaxFailures {
				rest := make([]int64, 0, len(batch)-i)
				for _, r := range batch[i:] {
					rest = append(rest, r.ID)
				}
				if err := p.opts.Jobs.Release(context.WithoutCancel(ctx), rest, 0); err != nil {
					p.opts.Logger.Warn("relay: could not give back claimed events", "count", len(rest), "err", err.Error())
				}
				return n, lastErr
			}
			err := p.publish(ctx, ev)
			var bad *unpublishable
			switch {
			case errors.As(err, &bad):
				p.discard(ctx, bad)
			case err != nil:
				failures++
				lastErr = err
				p.published.WithLabelValues("relay", "failed").Inc()
				if rerr := p.opts.Jobs.Release(context.WithoutCancel(ctx), []int64{ev.ID}, p.opts.RelayInterval); rerr != nil {
					p.opts.Logger.Warn("relay: could not give back an event", "job_id", ev.JobID.Hex(), "err", rerr.Error())
				}
			default:
				failures = 0
				n++
				p.published.WithLabelValues("relay", "confirmed").Inc()
				p.opts.Logger.Info("relay: published", "job_id", ev.JobID.Hex(), "attempt", ev.Attempts)
			}
		}
		if failures > 0 {
			return n, lastErr
		}
		if len(batch) < relayBatch {
			break
		}
	}
	return n, nil
}

// discard sets aside an event that can never be published and fails its
// job, with the contract's complaint as the reason.
func (p *Pipeline) discard(ctx context.Context, bad *unpublishable) {
	p.published.WithLabelValues("relay", "dead").Inc()
	p.opts.Logger.Error("relay: event cannot be published; its job fails", "job_id", bad.ev.JobID.Hex(),
		"event", bad.ev.ID, "err", bad.Error())
	reason := "the upload could not be queued for conversion: " + bad.cause.Error()
	if err := p.opts.Jobs.Discard(context.WithoutCancel(ctx), bad.ev, bad.Error(), reason); err != nil {
		p.opts.Logger.Warn("relay: could not set aside an unpublishable event", "job_id", bad.ev.JobID.Hex(), "err", err.Error())
	}
}

// Consume consumes audio.ready, audio.failed and audio.progress into the
// jobs' status until ctx ends, Concurrency at a time, once the schema is
// ready. It blocks.
func (p *Pipeline) Consume(ctx context.Context) error {
	if !p.waitReady(ctx) {
		return nil
	}
	return broker.Consume(ctx, p.opts.Conn, broker.QueueSpec{
		Name:        p.opts.StatusQueue,
		Bindings:    []string{events.TypeAudioReady, events.TypeAudioFailed, events.TypeAudioProgress},
		Prefetch:    2 * p.opts.Concurrency,
		Concurrency: p.opts.Concurrency,
	}, p.Handle)
}

// Handle applies one audio.* event to its job. Events for a job that does
// not exist (deleted, or another deployment's) are acknowledged and
// dropped; a malformed one goes to the dead-letter queue, and so does an
// audio.ready whose MP3 is not the job owner's file in filestorage (a
// forged or corrupted event: logged, and the job is left as it is).
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
		if err := p.checkAudio(ctx, d, id, ev); err != nil {
			return err
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

// checkAudio makes sure the MP3 ev names is the file of job id's owner
// before it is attached to the job: the gateway serves a done job's MP3
// with its storage:admin token, so an event naming another user's file
// would hand that file out. A missing or done job needs no check (the
// event changes nothing); an MP3 that does not exist or is not the
// owner's is a broker.Permanent error; filestorage unavailable, or no
// Files, a transient one.
func (p *Pipeline) checkAudio(ctx context.Context, d broker.Delivery, id jobs.ID, ev events.AudioReady) error {
	j, err := p.opts.Jobs.ByID(ctx, id)
	if errs.CodeOf(err) == errs.NotFound {
		return nil
	}
	if err != nil {
		return err
	}
	if j.Status == jobs.Done {
		return nil
	}
	if p.opts.Files == nil {
		return errs.E(errs.Unavailable, "audio.ready of job %s: no filestorage client to check the MP3's owner with (SERVICE_CLIENT_SECRET)", d.JobID)
	}
	f, err := p.opts.Files.Stat(ctx, ev.AudioID)
	switch {
	case errs.CodeOf(err) == errs.NotFound:
		return p.reject(ctx, d, "no_file", fmt.Errorf("audio.ready of job %s names file %s, which does not exist", d.JobID, ev.AudioID))
	case err != nil:
		return fmt.Errorf("audio.ready of job %s: stat the MP3 %s: %w", d.JobID, ev.AudioID, err)
	case f.Owner != j.Owner:
		return p.reject(ctx, d, "not_owner", fmt.Errorf("audio.ready of job %s names file %s of owner %q, not the job owner's (%q)",
			d.JobID, ev.AudioID, f.Owner, j.Owner))
	}
	return nil
}

// reject logs an event that is refused and returns it as a
// broker.Permanent error: it goes to the dead-letter queue.
func (p *Pipeline) reject(ctx context.Context, d broker.Delivery, reason string, err error) error {
	p.rejected.WithLabelValues(d.Type, reason).Inc()
	p.opts.Logger.WarnContext(ctx, "job status event refused; the job is left as it is", "job_id", d.JobID, "type", d.Type,
		"reason", reason, "err", err.Error(), "request_id", d.CorrelationID)
	return broker.Permanent(err)
}
