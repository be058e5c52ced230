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

// Options are what a Service works with.
type Options struct {
	// Storage holds the videos (with the gateway's service token).
	Storage *storage.Storage
	// Pipeline records the jobs with their events and publishes them.
	Pipeline *pipeline.Pipeline
	Logger   *slog.Logger
}

// Service accepts uploads.
type Service struct {
	opts Options
}

// New returns a Service for opts.
func New(opts Options) *Service {
	return &Service{opts: opts}
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
func (s *Service) Accept(ctx context.Context, u Upload) (jobs.Job, error) {
	if u.OwnerEmail == "" || events.ValidEmail(u.OwnerEmail) != nil {
		return jobs.Job{}, errs.E(errs.Forbidden, "uploads need a user's token")
	}
	job := jobs.Job{ID: jobs.NewID(), Owner: u.Owner, OwnerEmail: u.OwnerEmail, Locale: u.Locale, RequestID: u.RequestID}
	filePath := ownerDir(u.Owner) + "/" + job.ID.Hex()

	v, err := u.Source.Video()
	if err != nil {
		return jobs.Job{}, err
	}
	if err := s.store(ctx, u.Source, v, filePath, &job); err != nil {
		return jobs.Job{}, err
	}
	if err := u.Source.Rest(); err != nil {
		s.removeVideo(filePath)
		return jobs.Job{}, err
	}
	// The job and its event, in one transaction. An event the contract
	// refuses would never be published: the upload is refused now rather
	// than accepted as a job that cannot be converted.
	ev, err := s.opts.Pipeline.Record(ctx, &job)
	if err != nil {
		s.removeVideo(filePath)
		return jobs.Job{}, err
	}
	// Publish outlives a client that leaves now: the job is accepted.
	if err := s.opts.Pipeline.Publish(context.WithoutCancel(ctx), ev); err != nil {
		s.opts.Logger.WarnContext(ctx, "video.uploaded not confirmed; the relay will publish it",
			"job_id", job.ID.Hex(), "err", err.Error())
	}
	s.opts.Logger.InfoContext(ctx, "video accepted", "job_id", job.ID.Hex(), "owner", job.Owner,
		"size", job.Video.Size, "video_id", job.Video.FileID)
	return job, nil
}

// store streams v into filestorage at filePath and fills job's video.
func (s *Service) store(ctx context.Context, src Source, v Video, filePath string, job *jobs.Job) error {
	// Refused before a byte is stored: nothing to remove, no job.
	name, err := ValidName(v.Name)
	if err != nil {
		return err
	}
	ct, err := ValidContentType(v.ContentType)
	if err != nil {
		return err
	}
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
