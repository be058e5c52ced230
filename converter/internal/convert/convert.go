package convert

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/audiomill/audiomill/converter/internal/ffmpeg"
	"github.com/audiomill/audiomill/filestorage/client"
	"github.com/audiomill/audiomill/platform/broker"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/events"
)

// Metadata keys stored with each MP3, which let a redelivered job find and
// announce the MP3 an earlier delivery stored without converting again.
const (
	metaJobID    = "job_id"
	metaVideoID  = "video_id"
	metaOwnerID  = "owner_id"
	metaDuration = "duration_ms"
	metaBitrate  = "bitrate_kbps"
)

// Reasons of audio.failed besides ffmpeg's.
const (
	ReasonVideoMissing = "the uploaded video no longer exists"
	ReasonTooLarge     = "the MP3 is larger than the storage allows"
	// ReasonNotOwner: the event names a video of another user's (a forged
	// or corrupted event); nothing of it is read.
	ReasonNotOwner = "the video does not belong to the job's owner"
)

// retriesExhausted is the reason of audio.failed after the last attempt.
func retriesExhausted(attempts int) string {
	return fmt.Sprintf("the conversion failed %d times because of a temporary problem on our side; please try again later", attempts)
}

// Publisher publishes an event and returns once the broker confirmed it
// (*broker.Conn).
type Publisher interface {
	Publish(ctx context.Context, routingKey string, env broker.Envelope) error
}

// Files is the part of filestorage's client the converter uses (*client.Client).
type Files interface {
	Stat(ctx context.Context, id string) (client.File, error)
	Download(ctx context.Context, id string, r client.Range) (*client.Download, error)
	StatPath(ctx context.Context, bucket, path string) (client.File, error)
	Upload(ctx context.Context, bucket, path string, body io.Reader, opts client.UploadOptions) (client.File, error)
}

// Compile-time checks.
var (
	_ Publisher = (*broker.Conn)(nil)
	_ Files     = (*client.Client)(nil)
)

// Converter handles video.uploaded deliveries.
type Converter struct {
	cfg    Config
	tools  ffmpeg.Tools
	files  Files
	pub    Publisher
	logger *slog.Logger

	// jobs is cancelled GracePeriod after Run's context: the jobs in hand
	// stop then and go back to the queue.
	jobs     context.Context
	stopJobs context.CancelFunc
	metrics  *metrics
	// slots holds one token per running ffmpeg: Concurrency of them.
	slots chan struct{}
}

// Options are what New needs besides the Config.
type Options struct {
	Tools  ffmpeg.Tools
	Files  Files
	Events Publisher
	Logger *slog.Logger
}

// New returns a Converter.
func New(cfg Config, opts Options) (*Converter, error) {
	if opts.Files == nil || opts.Events == nil || opts.Logger == nil {
		return nil, errors.New("convert: files, events and logger are required")
	}
	jobs, stop := context.WithCancel(context.Background())
	return &Converter{cfg: cfg, tools: opts.Tools, files: opts.Files, pub: opts.Events, logger: opts.Logger,
		jobs: jobs, stopJobs: stop, metrics: newMetrics(), slots: make(chan struct{}, max(cfg.Concurrency, 1))}, nil
}

// QueueSpec is the converter's queue.
func (c *Converter) QueueSpec() broker.QueueSpec {
	// One handler per job in hand (Prefetch); ffmpeg runs in Concurrency
	// of them at once (slots).
	spec := c.cfg.Spec(c.cfg.Binding)
	spec.Concurrency = spec.Prefetch
	return spec
}

// Run consumes the queue until ctx is cancelled; call it once. Then it takes no new
// message; the jobs in hand have GracePeriod to finish (and be acked),
// after which they are stopped and handed back to the queue. Run returns
// once they have.
func (c *Converter) Run(ctx context.Context, conn *broker.Conn) error {
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-stopped:
			return
		case <-ctx.Done():
		}
		t := time.NewTimer(c.cfg.GracePeriod)
		defer t.Stop()
		select {
		case <-stopped:
		case <-t.C:
			c.logger.Warn("grace period over; stopping the jobs in hand, which go back to the queue",
				"grace_period", c.cfg.GracePeriod.String())
			c.stopJobs()
		}
	}()
	err := broker.Consume(ctx, conn, c.QueueSpec(), c.Handle)
	c.stopJobs()
	return err
}

// Handle is the broker.Handler of video.uploaded. It returns nil once the
// outcome (audio.ready, or audio.failed for a video that cannot be
// converted) is confirmed by the broker; an error for a transient failure
// (after publishing audio.failed when it was the last attempt); a
// broker.Permanent error for a message that is not a valid video.uploaded.
func (c *Converter) Handle(ctx context.Context, d broker.Delivery) error {
	ev, err := decode(d)
	if err != nil {
		c.metrics.jobs.WithLabelValues(resultInvalid).Inc()
		return broker.Permanent(err)
	}
	c.metrics.inFlight.Inc()
	defer c.metrics.inFlight.Dec()
	// The job outlives a shutdown's cancellation of ctx by the grace period.
	work, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(c.jobs, cancel)
	defer stop()

	j := &job{c: c, d: d, ev: ev, logger: c.logger.With("job_id", d.JobID, "video_id", ev.VideoID, "attempt", d.Attempt)}
	result, err := j.run(work)
	if err == nil {
		c.metrics.jobs.WithLabelValues(result).Inc()
		return nil
	}
	var f *ffmpeg.Failure
	if errors.As(err, &f) {
		level := slog.LevelInfo
		if f.Reason == ReasonNotOwner {
			level = slog.LevelWarn // a forged or corrupted event
		}
		j.logger.Log(ctx, level, "video cannot be converted", "reason", f.Reason, "detail", f.Detail, "owner_id", ev.OwnerID)
		if perr := j.failed(work, f.Reason, false); perr != nil {
			c.metrics.jobs.WithLabelValues(resultRetry).Inc()
			return fmt.Errorf("publish audio.failed: %w", perr)
		}
		c.metrics.jobs.WithLabelValues(resultFailed).Inc()
		return nil
	}
	if d.Attempt >= c.cfg.MaxAttempts && ctx.Err() == nil && work.Err() == nil {
		j.logger.ErrorContext(ctx, "last attempt failed; telling the user", "err", err.Error())
		if perr := j.failed(work, retriesExhausted(d.Attempt), true); perr != nil {
			j.logger.ErrorContext(ctx, "could not publish audio.failed", "err", perr.Error())
		}
		c.metrics.jobs.WithLabelValues(resultExhausted).Inc()
		return err
	}
	c.metrics.jobs.WithLabelValues(resultRetry).Inc()
	return err
}

// decode checks that d is a video.uploaded with a job id and valid payload.
func decode(d broker.Delivery) (events.VideoUploaded, error) {
	if d.Type != events.TypeVideoUploaded {
		return events.VideoUploaded{}, fmt.Errorf("unexpected event type %q", d.Type)
	}
	ev, err := events.Decode[events.VideoUploaded](d.Payload)
	if err != nil {
		return ev, err
	}
	if d.JobID == "" {
		return ev, errors.New("video.uploaded without job_id")
	}
	// Both name the MP3's path: <owner_id>/<job_id>.mp3.
	if !pathSafe(d.JobID) {
		return ev, fmt.Errorf("job_id %q cannot be part of a file path", d.JobID)
	}
	if !pathSafe(ev.OwnerID) {
		return ev, fmt.Errorf("owner_id %q cannot be part of a file path", ev.OwnerID)
	}
	return ev, nil
}

// pathSafe reports whether s can be one segment of a filestorage path.
func pathSafe(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\\\x00")
}

// job is one delivery being handled.
type job struct {
	c      *Converter
	d      broker.Delivery
	ev     events.VideoUploaded
	logger *slog.Logger
}

// mp3Path is the MP3's path in the audio bucket: one per job, so every
// delivery of a job writes (or finds) the same file.
func (j *job) mp3Path() string { return j.ev.OwnerID + "/" + j.d.JobID + ".mp3" }

// run does the job and returns its result (resultReady or
// resultAnnounced); a *ffmpeg.Failure is permanent, other errors transient.
func (j *job) run(ctx context.Context) (string, error) {
	start := time.Now()
	bucket, path := j.c.cfg.AudioBucket, j.mp3Path()
	// A previous delivery may have stored the MP3 and died before its
	// event was confirmed: announce that one.
	existing, err := j.c.files.StatPath(ctx, bucket, path)
	switch {
	case err == nil && existing.Custom[metaJobID] == j.d.JobID && existing.Owner == j.ev.OwnerID:
		j.logger.InfoContext(ctx, "MP3 already stored by an earlier delivery; announcing it", "audio_id", existing.ID)
		dur, _ := strconv.ParseInt(existing.Custom[metaDuration], 10, 64)
		kbps, _ := strconv.Atoi(existing.Custom[metaBitrate])
		return resultAnnounced, j.ready(ctx, existing, time.Duration(dur)*time.Millisecond, kbps)
	case err != nil && errs.CodeOf(err) != errs.NotFound:
		return "", fmt.Errorf("stat %s/%s: %w", bucket, path, err)
	}

	dir, err := os.MkdirTemp(j.c.cfg.TempDir, tempPrefix+"*")
	if err != nil {
		return "", fmt.Errorf("temporary directory: %w", err)
	}
	defer func() {
		if err := os.RemoveAll(dir); err != nil {
			j.logger.Warn("could not remove temporary files", "dir", dir, "err", err.Error())
		}
	}()
	in, out := filepath.Join(dir, "video"), filepath.Join(dir, "audio.mp3")
	if err := j.download(ctx, in); err != nil {
		return "", err
	}
	downloaded := time.Now()

	res, started, err := j.convert(ctx, in, out)
	if err != nil {
		return "", err
	}
	converted := time.Now()
	// The video is no longer needed: free the disk before the upload.
	_ = os.Remove(in)

	f, err := j.upload(ctx, out, res)
	if err != nil {
		return "", err
	}
	if err := j.ready(ctx, f, res.Duration, res.BitrateKbps); err != nil {
		return "", err
	}
	done := time.Now()
	j.c.metrics.stage.WithLabelValues("download").Observe(downloaded.Sub(start).Seconds())
	j.c.metrics.stage.WithLabelValues("slot_wait").Observe(started.Sub(downloaded).Seconds())
	j.c.metrics.stage.WithLabelValues("ffmpeg").Observe(converted.Sub(started).Seconds())
	j.c.metrics.stage.WithLabelValues("upload_publish").Observe(done.Sub(converted).Seconds())
	j.logger.InfoContext(ctx, "converted", "audio_id", f.ID, "size", f.Size, "duration", res.Duration.String(),
		"download", downloaded.Sub(start).String(), "slot_wait", started.Sub(downloaded).String(), "ffmpeg", converted.Sub(started).String(),
		"upload_publish", done.Sub(converted).String())
	return resultReady, nil
}

// convert runs ffmpeg on in once one of the Concurrency slots is free,
// and returns when it started.
func (j *job) convert(ctx context.Context, in, out string) (ffmpeg.Result, time.Time, error) {
	select {
	case j.c.slots <- struct{}{}:
	case <-ctx.Done():
		return ffmpeg.Result{}, time.Time{}, fmt.Errorf("wait for an ffmpeg slot: %w", ctx.Err())
	}
	defer func() { <-j.c.slots }()
	started := time.Now()
	j.c.metrics.running.Inc()
	defer j.c.metrics.running.Dec()
	progress := j.progress(ctx)
	defer progress.stop()
	_, res, err := j.c.tools.ToMP3(ctx, in, out, ffmpeg.ConvertOptions{
		Quality: j.c.cfg.Quality, MaxTime: j.c.cfg.MaxTime, MaxDuration: j.c.cfg.MaxDuration,
		MaxOutputBytes: j.c.cfg.MaxOutputBytes, OnProgress: progress.report,
	})
	return res, started, err
}

// download streams the video into the file at path, once filestorage said
// it is the job's owner's: the converter's token reads anyone's video
// (scope storage:read:videos), so the event alone must not decide
// whose video is converted (and whose MP3 that becomes).
func (j *job) download(ctx context.Context, path string) error {
	st, err := j.c.files.Stat(ctx, j.ev.VideoID)
	if errs.CodeOf(err) == errs.NotFound {
		return &ffmpeg.Failure{Reason: ReasonVideoMissing, Detail: "filestorage has no file " + j.ev.VideoID}
	}
	if err != nil {
		return fmt.Errorf("stat video %s: %w", j.ev.VideoID, err)
	}
	if err := j.owned(st); err != nil {
		return err
	}
	dl, err := j.c.files.Download(ctx, j.ev.VideoID, client.Range{})
	if errs.CodeOf(err) == errs.NotFound {
		return &ffmpeg.Failure{Reason: ReasonVideoMissing, Detail: "filestorage has no file " + j.ev.VideoID}
	}
	if err != nil {
		return fmt.Errorf("download video %s: %w", j.ev.VideoID, err)
	}
	defer dl.Close()
	if err := j.owned(dl.File); err != nil { // the answer names the owner too
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	n, err := io.Copy(f, dl)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("download video %s: %w", j.ev.VideoID, err)
	}
	if dl.Length > 0 && n != dl.Length {
		return fmt.Errorf("download video %s: got %d of %d bytes", j.ev.VideoID, n, dl.Length)
	}
	return nil
}

// owned returns a Failure with ReasonNotOwner unless f is the job's
// owner's.
func (j *job) owned(f client.File) error {
	if f.Owner == j.ev.OwnerID {
		return nil
	}
	return &ffmpeg.Failure{Reason: ReasonNotOwner,
		Detail: fmt.Sprintf("video %s belongs to %q, the job's owner is %q", j.ev.VideoID, f.Owner, j.ev.OwnerID)}
}

// upload stores the MP3 at its job's path with the job's idempotency key.
func (j *job) upload(ctx context.Context, path string, res ffmpeg.Result) (client.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return client.File{}, fmt.Errorf("open the MP3: %w", err)
	}
	defer f.Close()
	sum, err := client.SHA256(f)
	if err != nil {
		return client.File{}, fmt.Errorf("hash the MP3: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return client.File{}, fmt.Errorf("rewind the MP3: %w", err)
	}
	stored, err := j.c.files.Upload(ctx, j.c.cfg.AudioBucket, j.mp3Path(), f, client.UploadOptions{
		ContentType: "audio/mpeg", Size: res.Size, SHA256: sum, Owner: j.ev.OwnerID,
		IdempotencyKey: "mp3:" + j.d.JobID,
		Metadata: map[string]string{
			metaJobID: j.d.JobID, metaVideoID: j.ev.VideoID, metaOwnerID: j.ev.OwnerID,
			metaDuration: strconv.FormatInt(res.Duration.Milliseconds(), 10),
			metaBitrate:  strconv.Itoa(res.BitrateKbps),
		},
	})
	if errs.CodeOf(err) == errs.TooLarge {
		return client.File{}, &ffmpeg.Failure{Reason: ReasonTooLarge, Detail: err.Error()}
	}
	if err != nil {
		return client.File{}, fmt.Errorf("upload the MP3: %w", err)
	}
	return stored, nil
}

// ready publishes audio.ready for the stored MP3 f.
func (j *job) ready(ctx context.Context, f client.File, duration time.Duration, kbps int) error {
	return j.publish(ctx, events.AudioReady{
		VideoID: j.ev.VideoID, AudioID: f.ID, OwnerID: j.ev.OwnerID, OwnerEmail: j.ev.OwnerEmail,
		Locale: j.ev.Locale, FileName: j.ev.FileName, Size: f.Size,
		DurationSeconds: duration.Seconds(), BitrateKbps: kbps,
	})
}

// failed publishes audio.failed with reason.
func (j *job) failed(ctx context.Context, reason string, retryable bool) error {
	return j.publish(ctx, events.AudioFailed{
		VideoID: j.ev.VideoID, OwnerID: j.ev.OwnerID, OwnerEmail: j.ev.OwnerEmail,
		Locale: j.ev.Locale, FileName: j.ev.FileName, Reason: reason, Retryable: retryable,
	})
}

func (j *job) publish(ctx context.Context, p events.Payload) error {
	if err := p.Validate(); err != nil {
		return fmt.Errorf("%s: %w", p.EventType(), err)
	}
	env, err := broker.NewEnvelope(p.EventType(), j.d.JobID, j.d.CorrelationID, p)
	if err != nil {
		return fmt.Errorf("%s envelope: %w", p.EventType(), err)
	}
	if err := j.c.pub.Publish(ctx, p.EventType(), env); err != nil {
		return fmt.Errorf("publish %s: %w", p.EventType(), err)
	}
	return nil
}

// progressReporter publishes audio.progress from its own goroutine, so a
// slow broker never stalls ffmpeg's output; only the latest percentage
// waits. ffmpeg's reports are a second apart already; the reporter keeps
// the published events a second apart too, whatever the broker's latency.
type progressReporter struct {
	latest   chan int
	stopping chan struct{}
	done     sync.WaitGroup
	cancel   context.CancelFunc
}

func (j *job) progress(ctx context.Context) *progressReporter {
	ctx, cancel := context.WithCancel(ctx)
	p := &progressReporter{latest: make(chan int, 1), stopping: make(chan struct{}), cancel: cancel}
	p.done.Go(func() {
		var last time.Time
		for pct := range p.latest {
			if wait := ffmpeg.DefaultProgressEvery - time.Since(last); !last.IsZero() && wait > 0 {
				select {
				case <-time.After(wait):
				case <-p.stopping:
					return // the outcome event follows at once: a late report adds nothing
				}
				select {
				case newer, ok := <-p.latest:
					if ok {
						pct = newer
					}
				default:
				}
			}
			last = time.Now()
			pctx, cancel := context.WithTimeout(ctx, DefaultProgressTimeout)
			err := j.publish(pctx, events.AudioProgress{VideoID: j.ev.VideoID, Percent: pct})
			cancel()
			if err != nil {
				j.logger.Debug("progress event not published", "percent", pct, "err", err.Error())
			}
		}
	})
	return p
}

// report hands pct to the publishing goroutine, replacing one not yet sent.
func (p *progressReporter) report(pct int) {
	for {
		select {
		case p.latest <- pct:
			return
		default:
		}
		select {
		case <-p.latest:
		default:
		}
	}
}

// stop waits until the reporter is done: a report that can be published
// at once is, one that would have to wait is dropped.
func (p *progressReporter) stop() {
	close(p.stopping)
	close(p.latest)
	p.done.Wait()
	p.cancel()
}
