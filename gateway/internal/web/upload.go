package web

import (
	"context"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/audiomill/audiomill/gateway/internal/jobs"
	"github.com/audiomill/audiomill/gateway/internal/pipeline"
	"github.com/audiomill/audiomill/gateway/internal/storage"
	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/events"
	"github.com/audiomill/audiomill/platform/httpapi"
)

// FileNameHeader names the video of a raw (non-multipart) upload; it may be
// percent-encoded.
const FileNameHeader = "X-Filename"

// FileField is the multipart field of the video.
const FileField = "file"

// errTooLarge is what the upload reader returns past the limit.
var errTooLarge = errors.New("upload exceeds the size limit")

// limitedReader counts a video's bytes, refuses more than max, and keeps
// the error its source returned, so the handler can tell a client that went
// away or sent too much from a filestorage failure.
type limitedReader struct {
	r   io.Reader
	n   int64
	max int64
	err error
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	if rem := l.max + 1 - l.n; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := l.r.Read(p)
	l.n += int64(n)
	if l.n > l.max {
		l.err = errTooLarge
		return n, l.err
	}
	if err != nil && err != io.EOF {
		l.err = err
	}
	return n, err
}

// sourceErr maps the error of the request body, if it caused the failure.
func (l *limitedReader) sourceErr(limit int64) error {
	var mbe *http.MaxBytesError
	switch {
	case l.err == nil:
		return nil
	case errors.Is(l.err, errTooLarge) || errors.As(l.err, &mbe):
		return errs.E(errs.TooLarge, "the video is larger than %d bytes", limit)
	}
	return errs.Wrap(l.err, errs.Invalid, "the upload was interrupted")
}

// incoming is a video being received.
type incoming struct {
	name        string
	contentType string
	body        io.Reader
}

// receive streams the request's video into filestorage and records its
// job: the multipart file (exactly one file part; others are refused), or
// the raw body named by FileNameHeader when raw is allowed. Nothing is kept
// when it fails: the partial file is removed and no job is written.
func (a *API) receive(r *http.Request, p authn.Principal, allowRaw bool) (jobs.Job, error) {
	j, err := a.receiveVideo(r, p, allowRaw)
	if err != nil {
		a.uploads.WithLabelValues(string(errs.CodeOf(err))).Inc()
		return j, err
	}
	a.uploads.WithLabelValues("accepted").Inc()
	a.uploadBytes.Add(float64(j.Video.Size))
	return j, nil
}

func (a *API) receiveVideo(r *http.Request, p authn.Principal, allowRaw bool) (jobs.Job, error) {
	if a.opts.Storage == nil {
		return jobs.Job{}, errs.E(errs.Unavailable, "uploads are unavailable: the gateway has no service account (SERVICE_CLIENT_SECRET)")
	}
	if p.Email == "" || events.ValidEmail(p.Email) != nil {
		return jobs.Job{}, errs.E(errs.Forbidden, "uploads need a user's token")
	}
	job := jobs.Job{ID: jobs.NewID(), Owner: p.Subject, OwnerEmail: p.Email,
		Locale: localeOf(r), RequestID: r.Header.Get(httpapi.RequestIDHeader)}
	filePath := ownerDir(p.Subject) + "/" + job.ID.Hex()

	mr, err := r.MultipartReader()
	switch {
	case err == nil:
		err = a.receiveMultipart(r.Context(), mr, filePath, &job)
	case !allowRaw:
		return jobs.Job{}, errs.E(errs.Invalid, "exactly 1 file required")
	case errors.Is(err, http.ErrNotMultipart):
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "multipart/form-data" {
			return jobs.Job{}, errs.E(errs.Invalid, "malformed multipart body: %v", err)
		}
		err = a.receiveRaw(r, filePath, &job)
	default:
		return jobs.Job{}, errs.E(errs.Invalid, "malformed multipart body: %v", err)
	}
	if err != nil {
		return jobs.Job{}, err
	}

	// An event the contract refuses would never be published: refuse the
	// upload now rather than accept a job that cannot be converted.
	ev, err := pipeline.UploadedEvent(job)
	if err != nil {
		a.removeVideo(filePath)
		return jobs.Job{}, err
	}
	// The job and its event, in one transaction.
	if err := a.opts.Jobs.Create(r.Context(), &job, &ev, a.opts.Pipeline.RelayAfter()); err != nil {
		a.removeVideo(filePath)
		return jobs.Job{}, err
	}
	// Publish outlives a client that leaves now: the job is accepted.
	if err := a.opts.Pipeline.Publish(context.WithoutCancel(r.Context()), ev); err != nil {
		a.opts.Logger.WarnContext(r.Context(), "video.uploaded not confirmed; the relay will publish it",
			"job_id", job.ID.Hex(), "err", err.Error())
	}
	a.opts.Logger.InfoContext(r.Context(), "video accepted", "job_id", job.ID.Hex(), "owner", job.Owner,
		"size", job.Video.Size, "video_id", job.Video.FileID)
	return job, nil
}

func (a *API) receiveRaw(r *http.Request, filePath string, job *jobs.Job) error {
	name, err := url.PathUnescape(r.Header.Get(FileNameHeader))
	if err != nil || strings.TrimSpace(name) == "" {
		return errs.E(errs.Invalid, "a raw upload needs the %s header (or send multipart/form-data with a %q file)", FileNameHeader, FileField)
	}
	if r.ContentLength > a.opts.MaxUpload {
		return errs.E(errs.TooLarge, "the video is larger than %d bytes", a.opts.MaxUpload)
	}
	return a.store(r.Context(), incoming{name: name, contentType: r.Header.Get("Content-Type"), body: r.Body}, filePath, job)
}

func (a *API) receiveMultipart(ctx context.Context, mr *multipart.Reader, filePath string, job *jobs.Job) error {
	stored := false
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			if stored {
				a.removeVideo(filePath)
			}
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return errs.E(errs.TooLarge, "the video is larger than %d bytes", a.opts.MaxUpload)
			}
			return errs.E(errs.Invalid, "malformed multipart body: %v", err)
		}
		if part.FileName() == "" {
			// A form field: read past it (the route's body limit bounds it).
			_, _ = io.Copy(io.Discard, part)
			continue
		}
		if stored {
			_ = part.Close()
			a.removeVideo(filePath)
			return errs.E(errs.Invalid, "exactly 1 file required")
		}
		if err := a.store(ctx, incoming{name: part.FileName(), contentType: part.Header.Get("Content-Type"), body: part}, filePath, job); err != nil {
			return err
		}
		stored = true
	}
	if !stored {
		return errs.E(errs.Invalid, "exactly 1 file required")
	}
	return nil
}

// store streams in into filestorage at filePath and fills job's video.
func (a *API) store(ctx context.Context, in incoming, filePath string, job *jobs.Job) error {
	name := cleanName(in.name)
	if name == "" {
		return errs.E(errs.Invalid, "the file name is empty or not valid UTF-8")
	}
	ct := in.contentType
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt == "" {
		ct = "application/octet-stream"
	}
	if len(ct) > events.MaxIDLength {
		// Refused before a byte is stored: video.uploaded carries it.
		return errs.E(errs.Invalid, "the content type is longer than %d bytes", events.MaxIDLength)
	}
	lr := &limitedReader{r: in.body, max: a.opts.MaxUpload}
	f, err := a.opts.Storage.Upload(ctx, storage.VideoBucket, filePath, job.Owner, lr, ct,
		map[string]string{"job_id": job.ID.Hex()})
	if err != nil {
		a.removeVideo(filePath)
		if serr := lr.sourceErr(a.opts.MaxUpload); serr != nil {
			return serr
		}
		if ctx.Err() != nil {
			return errs.Wrap(ctx.Err(), errs.Invalid, "the upload was interrupted")
		}
		return err
	}
	if f.Size == 0 {
		a.removeVideo(filePath)
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
func (a *API) removeVideo(filePath string) {
	del := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		err := a.opts.Storage.DeletePath(ctx, storage.VideoBucket, filePath)
		if err != nil {
			a.opts.Logger.Warn("could not remove a failed upload; will retry", "path", filePath, "err", err.Error())
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
				a.opts.Logger.Error("gave up removing a failed upload", "path", filePath, "after", cleanupWindow.String())
				return
			}
		}
	}()
}

// cleanName keeps the base name of a client's file name, without control
// characters, at most events.MaxFileNameLength bytes.
func cleanName(name string) string {
	if !utf8.ValidString(name) {
		return ""
	}
	name = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, name)
	name = strings.TrimSpace(path.Base(strings.ReplaceAll(name, "\\", "/")))
	if name == "." || name == "/" {
		return ""
	}
	for len(name) > events.MaxFileNameLength {
		_, size := utf8.DecodeLastRuneInString(name)
		name = name[:len(name)-size]
	}
	return name
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

// localeOf is the first language of Accept-Language ("" when none).
func localeOf(r *http.Request) string {
	first, _, _ := strings.Cut(r.Header.Get("Accept-Language"), ",")
	first, _, _ = strings.Cut(first, ";")
	first = strings.TrimSpace(first)
	if len(first) > 35 || first == "*" {
		return ""
	}
	return first
}

// postVideo is POST /api/v1/videos.
func (a *API) postVideo(w http.ResponseWriter, r *http.Request, p authn.Principal) error {
	job, err := a.receive(r, p, true)
	if err != nil {
		return err
	}
	w.Header().Set("Location", jobURL(job))
	httpapi.WriteJSON(w, http.StatusAccepted, viewOf(job))
	return nil
}

// seedUpload is POST /upload for the seed clients: exactly one multipart
// file → 200 "success!"; errors as plain text, like the seed.
func (a *API) seedUpload(w http.ResponseWriter, r *http.Request) {
	p, _ := authn.FromContext(r.Context())
	if _, err := a.receive(r, p, false); err != nil {
		if errs.CodeOf(err) == errs.Internal {
			a.opts.Logger.ErrorContext(r.Context(), "seed upload failed", "err", err.Error())
		}
		http.Error(w, errs.MessageOf(err), httpapi.Status(errs.CodeOf(err)))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "success!")
}
