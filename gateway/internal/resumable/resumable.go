// Package resumable is the gateway's resumable uploads, the use case behind
// tus 1.0.0 at /api/v1/uploads (docs/gateway.md, "Resumable uploads"): an
// upload is created for a user's video of a declared length, its bytes are
// appended in parts, streamed to filestorage's own tus upload (at the path
// of the job the upload will become, as the user's file), and once the
// last part makes it whole and filestorage has stored the file, the job is
// recorded with its video.uploaded event and the event published, exactly
// once per upload.
//
// Exactly once: the job's id is chosen when the upload is created, so the
// jobs primary key refuses a second job of one upload whatever retries
// (a repeated last part, HEADs racing each other, two gateways). A gateway
// that dies between filestorage storing the file and the job's record
// leaves the upload unfinished in its table; the next HEAD (or PATCH) finds
// filestorage's upload gone and the file stored, and records the job then.
package resumable

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"time"

	"github.com/audiomill/audiomill/gateway/internal/jobs"
	"github.com/audiomill/audiomill/gateway/internal/pipeline"
	"github.com/audiomill/audiomill/gateway/internal/storage"
	"github.com/audiomill/audiomill/gateway/internal/uploads"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/events"
	"github.com/audiomill/audiomill/platform/pgdb"
)

// Defaults of Options left zero, and the sweep's batch.
const (
	// DefaultCompletedTTL is how long a completed upload still answers
	// HEAD with its job (Audiomill-Job-Id).
	DefaultCompletedTTL = 24 * time.Hour
	// DefaultSweepInterval is how often expired uploads are deleted.
	DefaultSweepInterval = 10 * time.Minute
	// fallbackExpiry is an upload's expiry when filestorage names none.
	fallbackExpiry = 24 * time.Hour
	sweepBatch     = 1000
	// cleanupTimeout bounds terminating the filestorage upload of a
	// creation that failed.
	cleanupTimeout = 15 * time.Second
)

// Options are what a Service works with.
type Options struct {
	Store *Store
	// Storage holds the videos (with the gateway's service token).
	Storage *storage.Storage
	// Pipeline records the jobs with their events and publishes them.
	Pipeline *pipeline.Pipeline
	// MaxSize is the largest video, in bytes.
	MaxSize int64
	// CompletedTTL is how long a completed upload answers HEAD with its
	// job (DefaultCompletedTTL).
	CompletedTTL time.Duration
	Logger       *slog.Logger
}

// Service runs the resumable uploads.
type Service struct {
	opts Options
}

// New returns a Service for opts.
func New(opts Options) *Service {
	if opts.CompletedTTL <= 0 {
		opts.CompletedTTL = DefaultCompletedTTL
	}
	return &Service{opts: opts}
}

// Upload is one resumable upload.
type Upload struct {
	// ID is the upload's public id (32 hex digits).
	ID string
	// Owner is the user's id (their token's subject), OwnerEmail where the
	// result goes, Locale their language, RequestID the creation's request
	// id (the job's correlation id).
	Owner, OwnerEmail, Locale, RequestID string
	// JobID is the id of the job the upload becomes (chosen at creation).
	JobID jobs.ID
	// StorageURL is filestorage's upload.
	StorageURL string
	// Name and ContentType are the video's, as stored (uploads.ValidName,
	// uploads.ValidContentType).
	Name, ContentType string
	// Length is the declared size; Offset how much of it is stored.
	Length, Offset int64
	// Expires is when an unfinished upload is dropped.
	Expires time.Time
	// Completed is set once the upload's job is recorded.
	Completed bool
}

// Request is a user's request for a new upload.
type Request struct {
	// Owner, OwnerEmail, Locale, RequestID: as in Upload.
	Owner, OwnerEmail, Locale, RequestID string
	// Name and ContentType are the client's (tus metadata filename and
	// filetype; ContentType may be empty).
	Name, ContentType string
	// Length is the declared size (Upload-Length).
	Length int64
}

// Create creates an upload for r: it checks what r says of the video as
// POST /api/v1/videos does (errs.Invalid for a file name or content type
// uploads refuses, or an empty video; errs.TooLarge past MaxSize;
// errs.Forbidden without the owner's email), then creates filestorage's
// upload for the video's path (its quota is filestorage's: errs.TooLarge)
// and records the upload.
func (s *Service) Create(ctx context.Context, r Request) (Upload, error) {
	if r.OwnerEmail == "" || events.ValidEmail(r.OwnerEmail) != nil {
		return Upload{}, errs.E(errs.Forbidden, "uploads need a user's token")
	}
	name, err := uploads.ValidName(r.Name)
	if err != nil {
		return Upload{}, err
	}
	ct, err := uploads.ValidContentType(r.ContentType)
	if err != nil {
		return Upload{}, err
	}
	switch {
	case r.Length <= 0:
		return Upload{}, errs.E(errs.Invalid, "the video is empty (Upload-Length 0)")
	case r.Length > s.opts.MaxSize:
		return Upload{}, errs.E(errs.TooLarge, "the video is larger than %d bytes", s.opts.MaxSize)
	}
	u := Upload{ID: newID(), Owner: r.Owner, OwnerEmail: r.OwnerEmail, Locale: r.Locale, RequestID: r.RequestID,
		JobID: jobs.NewID(), Name: name, ContentType: ct, Length: r.Length}
	st, err := s.opts.Storage.CreateUpload(ctx, uploads.VideoPath(u.Owner, u.JobID), u.Owner, u.Length, ct,
		map[string]string{"job_id": u.JobID.Hex()})
	if err != nil {
		return Upload{}, err
	}
	u.StorageURL, u.Expires = st.URL, st.Expires
	if u.Expires.IsZero() {
		u.Expires = time.Now().Add(fallbackExpiry)
	}
	if err := s.opts.Store.insert(ctx, u); err != nil {
		s.terminate(ctx, u)
		return Upload{}, err
	}
	s.opts.Logger.InfoContext(ctx, "resumable upload created", "upload_id", u.ID, "job_id", u.JobID.Hex(),
		"owner", u.Owner, "length", u.Length)
	return u, nil
}

// Status returns owner's upload id with its Offset: the unknown upload,
// someone else's and an expired one are the same errs.NotFound. An upload
// filestorage stored whose job was not recorded (its gateway died between
// the two) gets its job now.
func (s *Service) Status(ctx context.Context, owner, id string) (Upload, error) {
	u, err := s.get(ctx, owner, id)
	if err != nil || u.Completed {
		return u, err
	}
	st, err := s.opts.Storage.UploadStatus(ctx, u.StorageURL, u.Owner)
	if errs.CodeOf(err) == errs.NotFound {
		_, err = s.recover(ctx, &u)
		return u, err
	}
	if err != nil {
		return Upload{}, err
	}
	u.Offset = st.Offset
	if !st.Expires.IsZero() {
		u.Expires = st.Expires
	}
	return u, nil
}

// Append streams body (size bytes, -1 unknown) into owner's upload id at
// offset, checked against checksum (the client's Upload-Checksum, "" for
// none), and returns the upload as it then stands; recorded is true when
// this call recorded the upload's job (the upload became whole). An offset
// that is not the upload's is errs.Conflict; filestorage's refusals are
// storage.AppendUpload's. A repeated empty last part of a completed upload
// answers with it.
func (s *Service) Append(ctx context.Context, owner, id string, offset int64, body io.Reader, size int64, checksum string) (u Upload, recorded bool, err error) {
	u, err = s.get(ctx, owner, id)
	if err != nil {
		return Upload{}, false, err
	}
	if u.Completed {
		if offset == u.Length && size <= 0 {
			return u, false, nil
		}
		return Upload{}, false, errs.E(errs.Conflict, "Upload-Offset is %d; the upload is complete at %d", offset, u.Length)
	}
	st, err := s.opts.Storage.AppendUpload(ctx, u.StorageURL, u.Owner, offset, body, size, checksum)
	if errs.CodeOf(err) == errs.NotFound {
		// Stored by a request whose answer was lost: the client asks
		// again (HEAD) after this conflict and finds it complete.
		if recorded, err = s.recover(ctx, &u); err != nil {
			return Upload{}, false, err
		}
		return Upload{}, recorded, errs.E(errs.Conflict, "Upload-Offset is %d; the upload is complete at %d", offset, u.Length)
	}
	if err != nil {
		return Upload{}, false, err
	}
	u.Offset = st.Offset
	if !st.Expires.IsZero() {
		u.Expires = st.Expires
	}
	switch {
	case st.FileID != "":
		recorded, err = s.record(ctx, &u, st.FileID, u.Length)
		return u, recorded, err
	case st.Offset >= u.Length:
		recorded, err = s.recover(ctx, &u)
		return u, recorded, err
	}
	return u, false, nil
}

// Terminate deletes owner's unfinished upload id and what filestorage
// holds of it: no file is stored, no job recorded. A completed upload is
// errs.Conflict (its job is deleted through the jobs).
func (s *Service) Terminate(ctx context.Context, owner, id string) error {
	u, err := s.get(ctx, owner, id)
	if err != nil {
		return err
	}
	if u.Completed {
		return errs.E(errs.Conflict, "the upload is complete: it is job %s (DELETE /api/v1/jobs/%s)", u.JobID.Hex(), u.JobID.Hex())
	}
	if err := s.opts.Storage.TerminateUpload(ctx, u.StorageURL, u.Owner); err != nil {
		return err
	}
	removed, err := s.opts.Store.remove(ctx, u.ID)
	if err != nil {
		return err
	}
	if !removed {
		return errs.E(errs.Conflict, "the upload completed meanwhile: it is job %s", u.JobID.Hex())
	}
	s.opts.Logger.InfoContext(ctx, "resumable upload terminated", "upload_id", u.ID, "owner", u.Owner)
	return nil
}

// Sweep deletes the expired uploads every interval (DefaultSweepInterval
// when 0) until ctx ends. filestorage sweeps its own.
func (s *Service) Sweep(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultSweepInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for {
			n, err := s.opts.Store.Sweep(ctx, sweepBatch)
			if err != nil {
				if ctx.Err() == nil {
					s.opts.Logger.Warn("sweep of expired resumable uploads failed", "err", err.Error())
				}
				break
			}
			if n > 0 {
				s.opts.Logger.Info("expired resumable uploads deleted", "count", n)
			}
			if n < sweepBatch {
				break
			}
		}
	}
}

// get loads owner's upload id (a malformed id is as unknown as any).
func (s *Service) get(ctx context.Context, owner, id string) (Upload, error) {
	if !validID(id) {
		return Upload{}, errNoUpload()
	}
	u, err := s.opts.Store.get(ctx, owner, id)
	if err == nil && u.Completed {
		u.Offset = u.Length
	}
	return u, err
}

// recover finishes u when filestorage no longer has its upload: a video
// stored at its path, the owner's and whole, becomes its job; otherwise the
// upload is gone (expired or terminated) and errs.NotFound.
func (s *Service) recover(ctx context.Context, u *Upload) (bool, error) {
	f, err := s.opts.Storage.StatPath(ctx, uploads.VideoPath(u.Owner, u.JobID))
	switch {
	case errs.CodeOf(err) == errs.NotFound:
		if _, err := s.opts.Store.remove(ctx, u.ID); err != nil {
			s.opts.Logger.WarnContext(ctx, "could not delete a gone upload", "upload_id", u.ID, "err", err.Error())
		}
		return false, errNoUpload()
	case err != nil:
		return false, err
	case f.Owner != u.Owner || f.Size != u.Length:
		s.opts.Logger.WarnContext(ctx, "resumable upload's path holds another file", "upload_id", u.ID,
			"file_id", f.ID, "size", f.Size)
		return false, errNoUpload()
	}
	s.opts.Logger.InfoContext(ctx, "resumable upload stored without its job; recording it", "upload_id", u.ID,
		"job_id", u.JobID.Hex())
	return s.record(ctx, u, f.ID, f.Size)
}

// record records u's job (its video is fileID, size bytes) with its
// video.uploaded event, marks u completed and publishes the event.
// recorded is false when the job was recorded before (a retry): the jobs
// primary key refuses it a second time. The record outlives a client that
// leaves now: the video is stored.
func (s *Service) record(ctx context.Context, u *Upload, fileID string, size int64) (recorded bool, err error) {
	ctx = context.WithoutCancel(ctx)
	job := jobs.Job{ID: u.JobID, Owner: u.Owner, OwnerEmail: u.OwnerEmail, Locale: u.Locale, RequestID: u.RequestID,
		Video: jobs.Video{FileID: fileID, Name: u.Name, ContentType: u.ContentType, Size: size}}
	ev, err := s.opts.Pipeline.Record(ctx, &job, nil)
	switch {
	case pgdb.IsUniqueViolation(err, "jobs_pkey"):
	case err != nil:
		return false, err
	default:
		recorded = true
	}
	if err := s.opts.Store.complete(ctx, u.ID, s.opts.CompletedTTL); err != nil {
		// The jobs primary key still guards against a second job.
		s.opts.Logger.WarnContext(ctx, "could not mark a resumable upload complete", "upload_id", u.ID, "err", err.Error())
	}
	u.Completed, u.Offset = true, u.Length
	if !recorded {
		return false, nil
	}
	s.opts.Pipeline.Announce(ctx, job, ev, "upload_id", u.ID)
	return true, nil
}

// terminate drops filestorage's upload of a creation that failed.
func (s *Service) terminate(ctx context.Context, u Upload) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if err := s.opts.Storage.TerminateUpload(ctx, u.StorageURL, u.Owner); err != nil {
		s.opts.Logger.WarnContext(ctx, "could not terminate the filestorage upload of a failed creation; filestorage's sweep will",
			"url", u.StorageURL, "err", err.Error())
	}
}

// newID returns a fresh upload id: 128 random bits as 32 hex digits.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}

// validID reports whether id may be an upload's id.
func validID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if (id[i] < '0' || id[i] > '9') && (id[i] < 'a' || id[i] > 'f') {
			return false
		}
	}
	return true
}
