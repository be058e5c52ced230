// Package uploads is the gateway's upload use case: a user's video is
// streamed into filestorage, its job is recorded with the job's
// video.uploaded event, and the event is published. Nothing is kept of an
// upload that fails: its video is removed, and no job is written.
//
// The HTTP layer parses the request and applies the size limits; it hands
// Accept the request as a Source.
package uploads

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/audiomill/audiomill/gateway/internal/jobs"
	"github.com/audiomill/audiomill/gateway/internal/pipeline"
	"github.com/audiomill/audiomill/gateway/internal/storage"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/events"
)

// cleanupTimeout bounds one attempt to remove a failed upload's file; the
// attempts go on, cleanupRetry apart and doubling up to cleanupMaxRetry,
// for cleanupWindow (filestorage or its database may be down: that is often
// why the upload failed).
const (
	cleanupTimeout  = 15 * time.Second
	cleanupRetry    = 2 * time.Second
	cleanupMaxRetry = 30 * time.Second
	cleanupWindow   = 10 * time.Minute
)

// Defaults of the Idempotency-Key options left zero.
const (
	// DefaultKeyTTL is how long an Idempotency-Key answers with its job.
	DefaultKeyTTL = 24 * time.Hour
	// DefaultKeyLease is how long an attempt's claim of its key holds
	// without renewal (the attempt renews it every third of that while it
	// runs): a retry takes over the key of an attempt whose gateway died
	// that long after.
	DefaultKeyLease = time.Minute
	// maxBusyRetry caps the Retry-After of an upload whose key another
	// attempt holds: that attempt may end any moment.
	maxBusyRetry = 5 * time.Second
	// releaseTimeout bounds the release of a failed attempt's key (the
	// claim lapses after its lease when the release fails).
	releaseTimeout = 10 * time.Second
)

// Options are what a Service works with.
type Options struct {
	// Storage holds the videos (with the gateway's service token).
	Storage *storage.Storage
	// Pipeline records the jobs with their events and publishes them.
	Pipeline *pipeline.Pipeline
	// Jobs holds the Idempotency-Keys and the jobs they answer with.
	Jobs *jobs.Store
	// KeyTTL is how long an Idempotency-Key answers with its job
	// (DefaultKeyTTL); KeyLease how long an attempt's claim of its key
	// holds unless renewed (DefaultKeyLease).
	KeyTTL, KeyLease time.Duration
	Logger           *slog.Logger
}

// Service accepts uploads.
type Service struct {
	opts Options
}

// New returns a Service for opts.
func New(opts Options) *Service {
	if opts.KeyTTL <= 0 {
		opts.KeyTTL = DefaultKeyTTL
	}
	if opts.KeyLease <= 0 {
		opts.KeyLease = DefaultKeyLease
	}
	return &Service{opts: opts}
}

// KeyInUseError is the error of an upload whose Idempotency-Key another
// request holds, still uploading: errs.Conflict, to be retried after
// RetryAfter.
type KeyInUseError struct {
	RetryAfter time.Duration
	err        *errs.Error
}

func keyInUse(retryAfter time.Duration) *KeyInUseError {
	return &KeyInUseError{RetryAfter: min(max(retryAfter, time.Second), maxBusyRetry),
		err: errs.E(errs.Conflict, "a request with this Idempotency-Key is still in progress; retry later")}
}

func (e *KeyInUseError) Error() string { return e.err.Error() }

// Unwrap returns the errs.Conflict.
func (e *KeyInUseError) Unwrap() error { return e.err }

// Accepted is what Accept returns: the upload's job, and whether it is the
// job of an earlier request with the same Idempotency-Key.
type Accepted struct {
	jobs.Job
	Replayed bool
}

// Upload is a user's upload being received.
type Upload struct {
	// Owner is the user's id (their token's subject): the video is filed
	// under it. OwnerEmail is where the result goes.
	Owner, OwnerEmail string
	// Locale is the user's language ("" when unknown), for the email.
	Locale string
	// RequestID is the upload request's id: the events' correlation id.
	RequestID string
	// IdempotencyKey, when set (ValidKey), makes a retry of the upload
	// answer with the first one's job instead of storing it again.
	IdempotencyKey string
	// Source is the request the video comes from.
	Source Source
}

// Video is the file of an upload as the request names it.
type Video struct {
	// Name is the client's file name (ValidName: Accept keeps its base name).
	Name string
	// ContentType is the client's (ValidContentType: application/octet-stream
	// when it sent none).
	ContentType string
	// Body is the content, not read yet: Accept streams it into
	// filestorage.
	Body io.Reader
	// DeclaredSize is the video's size as the request declares it before
	// its body (a raw body's Content-Length, a part's own Content-Length),
	// -1 when it declares none: part of an Idempotency-Key's fingerprint.
	DeclaredSize int64
}

// Source is an upload's request, parsed and limited by the HTTP layer.
// Accept calls Video once, reads the video's body, then calls Rest.
type Source interface {
	// Video parses the request up to its video and returns it; an error
	// refuses the upload.
	Video() (Video, error)
	// BodyErr says why reading the video's body failed when the client
	// caused it (it sent too much, or went away): the upload's error
	// then, rather than filestorage's. Nil when the client did not.
	BodyErr() error
	// Rest parses the request past the video, once it is stored; an error
	// refuses the upload.
	Rest() error
}

// Accept receives u: it stores the video in filestorage (bucket videos,
// at <owner>/<job id>), records its job, queued, with the job's
// video.uploaded event, and publishes the event, and returns the job. An
// upload without the owner's email is errs.Forbidden; a refused request
// (no video, an empty one, a file name or content type ValidName or
// ValidContentType refuses) errs.Invalid; the Source's errors are returned as they are, and
// filestorage's and the database's keep their codes (errs.Unavailable when
// either is down). A failed upload leaves nothing: its video is removed
// and no job is written. A publish that is not confirmed fails nothing:
// the job is accepted, and the pipeline's relay publishes the event later.
//
// With an Idempotency-Key (u.IdempotencyKey) the upload is done once per
// owner and key: a retry after the job was recorded returns that job
// (Replayed) without reading the video; one while another request with
// the key still uploads is a *KeyInUseError (errs.Conflict); one naming
// another file (name, content type or declared size) than the first is
// errs.IdempotencyMismatch, and nothing is stored. A failed attempt frees
// its key for the next.
func (s *Service) Accept(ctx context.Context, u Upload) (Accepted, error) {
	if u.OwnerEmail == "" || events.ValidEmail(u.OwnerEmail) != nil {
		return Accepted{}, errs.E(errs.Forbidden, "uploads need a user's token")
	}
	job := jobs.Job{ID: jobs.NewID(), Owner: u.Owner, OwnerEmail: u.OwnerEmail, Locale: u.Locale, RequestID: u.RequestID}
	filePath := VideoPath(u.Owner, job.ID)

	v, err := u.Source.Video()
	if err != nil {
		return Accepted{}, err
	}
	// Refused before a byte is stored: nothing to remove, no job.
	name, err := ValidName(v.Name)
	if err != nil {
		return Accepted{}, err
	}
	ct, err := ValidContentType(v.ContentType)
	if err != nil {
		return Accepted{}, err
	}
	var key *jobs.KeyClaim
	if u.IdempotencyKey != "" && s.opts.Jobs == nil {
		return Accepted{}, errs.E(errs.Internal, "uploads: an Idempotency-Key needs Options.Jobs")
	}
	if u.IdempotencyKey != "" {
		key = &jobs.KeyClaim{Owner: u.Owner, Key: u.IdempotencyKey, Fingerprint: fingerprint(name, ct, v.DeclaredSize),
			Attempt: job.ID, Lease: s.opts.KeyLease, TTL: s.opts.KeyTTL}
		if prev, done, err := s.claim(ctx, key); done || err != nil {
			return prev, err
		}
		stop := s.holdKey(ctx, key)
		defer stop()
	}
	recorded := false
	defer func() {
		if key != nil && !recorded {
			s.releaseKey(ctx, key)
		}
	}()

	if err := s.store(ctx, u.Source, v, name, ct, filePath, &job); err != nil {
		return Accepted{}, err
	}
	if err := u.Source.Rest(); err != nil {
		s.removeVideo(filePath)
		return Accepted{}, err
	}
	// The job and its event (and its key's completion), in one
	// transaction. An event the contract refuses would never be published:
	// the upload is refused now rather than accepted as a job that cannot
	// be converted.
	ev, err := s.opts.Pipeline.Record(ctx, &job, key)
	if err != nil {
		s.removeVideo(filePath)
		if key != nil && errs.CodeOf(err) == errs.Conflict {
			// Another attempt took the key over after this one's claim
			// lapsed: its job is the key's.
			return Accepted{}, keyInUse(time.Second)
		}
		return Accepted{}, err
	}
	recorded = true
	s.opts.Pipeline.Announce(ctx, job, ev)
	return Accepted{Job: job}, nil
}

// claim claims key for its attempt. done is true when the upload is
// answered without it: with the key's job (a replay), or with the error
// of a key in use or used for another upload.
func (s *Service) claim(ctx context.Context, key *jobs.KeyClaim) (prev Accepted, done bool, err error) {
	st, err := s.opts.Jobs.ClaimKey(ctx, *key)
	if err != nil {
		return Accepted{}, true, err
	}
	switch st.State {
	case jobs.KeyClaimed:
		return Accepted{}, false, nil
	case jobs.KeyDone:
		j, err := s.opts.Jobs.Get(ctx, key.Owner, st.JobID)
		if err != nil {
			return Accepted{}, true, err
		}
		s.opts.Logger.InfoContext(ctx, "upload replayed (Idempotency-Key)", "job_id", j.ID.Hex(), "owner", j.Owner)
		return Accepted{Job: j, Replayed: true}, true, nil
	case jobs.KeyMismatch:
		return Accepted{}, true, errs.E(errs.IdempotencyMismatch,
			"this Idempotency-Key was used for another upload (file name, content type or size); use a new key")
	}
	return Accepted{}, true, keyInUse(st.RetryAfter)
}

// holdKey renews key's claim every third of its lease until the returned
// stop is called: a long upload keeps its key, and a retry meanwhile is
// told to wait.
func (s *Service) holdKey(ctx context.Context, key *jobs.KeyClaim) (stop func()) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(key.Lease / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if held, err := s.opts.Jobs.RenewKey(ctx, *key); err != nil && ctx.Err() == nil {
				s.opts.Logger.WarnContext(ctx, "could not renew an upload's Idempotency-Key claim", "err", err.Error())
			} else if err == nil && !held {
				return
			}
		}
	}()
	return func() { cancel(); <-done }
}

// releaseKey frees the key of a failed attempt (the client may be gone:
// the release does not depend on its request).
func (s *Service) releaseKey(ctx context.Context, key *jobs.KeyClaim) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	if err := s.opts.Jobs.ReleaseKey(ctx, *key); err != nil {
		s.opts.Logger.WarnContext(ctx, "could not release a failed upload's Idempotency-Key; it frees itself when its claim lapses",
			"err", err.Error(), "lease", key.Lease.String())
	}
}

// fingerprint names the upload an Idempotency-Key is used for, from what
// the request says before the video's bytes: its file name, content type
// and declared size (-1: none).
func fingerprint(name, contentType string, size int64) string {
	h := sha256.New()
	fmt.Fprintf(h, "%d:%s\x00%d:%s\x00%d", len(name), name, len(contentType), contentType, size)
	return hex.EncodeToString(h.Sum(nil))
}

// store streams v (named name, of content type ct) into filestorage at
// filePath and fills job's video.
func (s *Service) store(ctx context.Context, src Source, v Video, name, ct, filePath string, job *jobs.Job) error {
	f, err := s.opts.Storage.Upload(ctx, storage.VideoBucket, filePath, job.Owner, v.Body, ct,
		map[string]string{"job_id": job.ID.Hex()})
	if err != nil {
		s.removeVideo(filePath)
		if serr := src.BodyErr(); serr != nil {
			return serr
		}
		if ctx.Err() != nil {
			return errs.Wrap(ctx.Err(), errs.Invalid, "the upload was interrupted")
		}
		return err
	}
	if f.Size == 0 {
		s.removeVideo(filePath)
		return errs.E(errs.Invalid, "the video is empty")
	}
	job.Video = jobs.Video{FileID: f.ID, Name: name, ContentType: ct, Size: f.Size}
	return nil
}

// removeVideo deletes what a failed upload left at filePath: now, and again
// from a moment later until a delete succeeds or cleanupWindow passes.
// filestorage may still be finishing the aborted request when the first
// delete arrives, or it may not reach its database; a file left behind would
// be a video without a job in the user's folder.
func (s *Service) removeVideo(filePath string) {
	del := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		err := s.opts.Storage.DeletePath(ctx, storage.VideoBucket, filePath)
		if err != nil {
			s.opts.Logger.Warn("could not remove a failed upload; will retry", "path", filePath, "err", err.Error())
		}
		return err
	}
	_ = del()
	go func() {
		deadline := time.Now().Add(cleanupWindow)
		for wait := cleanupRetry; ; wait = min(2*wait, cleanupMaxRetry) {
			time.Sleep(wait)
			if del() == nil {
				return
			}
			if time.Now().After(deadline) {
				s.opts.Logger.Error("gave up removing a failed upload", "path", filePath, "after", cleanupWindow.String())
				return
			}
		}
	}()
}

// VideoPath is where job id's video is stored in the videos bucket:
// <owner's folder>/<job id>.
func VideoPath(owner string, id jobs.ID) string { return ownerDir(owner) + "/" + id.Hex() }

// ownerDir is the folder of an owner's videos: the subject with anything
// but [A-Za-z0-9_-] replaced.
func ownerDir(subject string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, subject)
}
