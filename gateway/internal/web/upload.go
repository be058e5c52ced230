package web

import (
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/audiomill/audiomill/gateway/internal/jobs"
	"github.com/audiomill/audiomill/gateway/internal/uploads"
	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/errs"
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
		return tooLarge(limit)
	}
	return errs.Wrap(l.err, errs.Invalid, "the upload was interrupted")
}

func tooLarge(limit int64) error {
	return errs.E(errs.TooLarge, "the video is larger than %d bytes", limit)
}

// receive accepts the request's video (uploads.Accept) under key (its
// Idempotency-Key, "" when none) and counts the result.
func (a *API) receive(r *http.Request, p authn.Principal, allowRaw bool, key string) (uploads.Accepted, error) {
	j, err := a.receiveVideo(r, p, allowRaw, key)
	switch {
	case err != nil:
		a.uploads.WithLabelValues(string(errs.CodeOf(err))).Inc()
		return j, err
	case j.Replayed:
		a.uploads.WithLabelValues("replayed").Inc()
		return j, nil
	}
	a.uploads.WithLabelValues("accepted").Inc()
	a.uploadBytes.Add(float64(j.Video.Size))
	return j, nil
}

func (a *API) receiveVideo(r *http.Request, p authn.Principal, allowRaw bool, key string) (uploads.Accepted, error) {
	if err := requireVerified(p); err != nil {
		a.opts.Logger.InfoContext(r.Context(), "upload refused: email not verified", "sub", p.Subject)
		return uploads.Accepted{}, err
	}
	if a.opts.Uploads == nil {
		return uploads.Accepted{}, errs.E(errs.Unavailable, "uploads are unavailable: the gateway has no service account (SERVICE_CLIENT_SECRET)")
	}
	return a.opts.Uploads.Accept(r.Context(), uploads.Upload{
		Owner: p.Subject, OwnerEmail: p.Email, Locale: localeOf(r), RequestID: r.Header.Get(httpapi.RequestIDHeader),
		IdempotencyKey: key, Source: &request{r: r, allowRaw: allowRaw, max: a.opts.MaxUpload},
	})
}

// IdempotencyKeyHeader makes a retried POST /api/v1/videos answer with the
// first one's job; ReplayedHeader marks such an answer.
const (
	IdempotencyKeyHeader = "Idempotency-Key"
	ReplayedHeader       = "Idempotent-Replayed"
)

// idempotencyKey returns the request's Idempotency-Key ("" when it sends
// none); one that is empty, repeated or not 1-255 printable ASCII
// characters is errs.Invalid.
func idempotencyKey(r *http.Request) (string, error) {
	values := r.Header.Values(IdempotencyKeyHeader)
	switch len(values) {
	case 0:
		return "", nil
	case 1:
		return values[0], jobs.ValidKey(values[0])
	}
	return "", errs.E(errs.Invalid, "send one Idempotency-Key")
}

// requireVerified refuses a user whose token does not say the email
// address is verified (claim email_verified): the gateway is where that is
// decided, since every email sent on a user's behalf follows an upload.
// Service accounts upload on nobody's behalf.
func requireVerified(p authn.Principal) error {
	if p.IsService() || p.EmailVerified {
		return nil
	}
	return errs.E(errs.EmailUnverified, "verify your email address before uploading: open the link in the email we sent you, "+
		"then log in again or refresh your token (a new link: POST /api/v1/users/verify/resend)")
}

// request is an upload request as an uploads.Source: its multipart file
// (exactly one file part; form fields are read past, other files refused),
// or its raw body named by FileNameHeader when raw is allowed. The video is
// read through a limitedReader of max bytes.
type request struct {
	r        *http.Request
	allowRaw bool
	max      int64
	mr       *multipart.Reader // nil for a raw body
	body     *limitedReader
}

// Video implements uploads.Source.
func (q *request) Video() (uploads.Video, error) {
	mr, err := q.r.MultipartReader()
	switch {
	case err == nil:
		q.mr = mr
		part, err := q.nextFile()
		if err != nil {
			return uploads.Video{}, err
		}
		if part == nil {
			return uploads.Video{}, errs.E(errs.Invalid, "exactly 1 file required")
		}
		return q.video(part.FileName(), part.Header.Get("Content-Type"), part, partSize(part)), nil
	case !q.allowRaw:
		return uploads.Video{}, errs.E(errs.Invalid, "exactly 1 file required")
	case errors.Is(err, http.ErrNotMultipart):
		if mt, _, _ := mime.ParseMediaType(q.r.Header.Get("Content-Type")); mt == "multipart/form-data" {
			return uploads.Video{}, errs.E(errs.Invalid, "malformed multipart body: %v", err)
		}
		return q.raw()
	default:
		return uploads.Video{}, errs.E(errs.Invalid, "malformed multipart body: %v", err)
	}
}

func (q *request) raw() (uploads.Video, error) {
	name, err := url.PathUnescape(q.r.Header.Get(FileNameHeader))
	if err != nil || strings.TrimSpace(name) == "" {
		return uploads.Video{}, errs.E(errs.Invalid, "a raw upload needs the %s header (or send multipart/form-data with a %q file)", FileNameHeader, FileField)
	}
	if q.r.ContentLength > q.max {
		return uploads.Video{}, tooLarge(q.max)
	}
	return q.video(name, q.r.Header.Get("Content-Type"), q.r.Body, max(q.r.ContentLength, -1)), nil
}

func (q *request) video(name, contentType string, body io.Reader, declared int64) uploads.Video {
	q.body = &limitedReader{r: body, max: q.max}
	return uploads.Video{Name: name, ContentType: contentType, Body: q.body, DeclaredSize: declared}
}

// partSize is the size a file part declares in its own Content-Length
// header (clients seldom send one), -1 when none.
func partSize(part *multipart.Part) int64 {
	n, err := strconv.ParseInt(part.Header.Get("Content-Length"), 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// BodyErr implements uploads.Source.
func (q *request) BodyErr() error {
	if q.body == nil {
		return nil
	}
	return q.body.sourceErr(q.max)
}

// Rest implements uploads.Source: the parts after the file may be form
// fields only.
func (q *request) Rest() error {
	if q.mr == nil {
		return nil
	}
	part, err := q.nextFile()
	if err != nil {
		return err
	}
	if part != nil {
		_ = part.Close()
		return errs.E(errs.Invalid, "exactly 1 file required")
	}
	return nil
}

// nextFile reads past form fields to the next file part (nil at the end of
// the body).
func (q *request) nextFile() (*multipart.Part, error) {
	for {
		part, err := q.mr.NextPart()
		if err == io.EOF {
			return nil, nil
		}
		if err != nil {
			return nil, q.partErr(err)
		}
		if part.FileName() != "" {
			return part, nil
		}
		// A form field: read past it (the route's body limit bounds it).
		_, _ = io.Copy(io.Discard, part)
	}
}

// partErr maps the error of reading the next part.
func (q *request) partErr(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return tooLarge(q.max)
	}
	return errs.E(errs.Invalid, "malformed multipart body: %v", err)
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

// limitUploads counts the upload against its user's limit: under its
// Idempotency-Key when it has one (key), so that retries of one upload
// count once, else under an id of its own (a client's X-Request-Id could
// repeat, and count once). Over the limit it is errs.RateLimited with
// Retry-After set, before a byte of the body is read.
func (a *API) limitUploads(w http.ResponseWriter, r *http.Request, p authn.Principal, key string) error {
	if a.opts.UploadLimit == nil {
		return nil
	}
	id := jobs.NewID().Hex()
	if key != "" {
		id = "key:" + key
	}
	wait, err := a.opts.UploadLimit.Take(r.Context(), p.Subject, id)
	if err != nil {
		return errs.Wrap(err, errs.Unavailable, "uploads are unavailable")
	}
	if wait > 0 {
		secs := int64((wait + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
		a.uploads.WithLabelValues(string(errs.RateLimited)).Inc()
		a.opts.Logger.WarnContext(r.Context(), "upload rate limited", "owner", p.Subject,
			"limit", a.opts.UploadLimit.Limit(), "retry_after_s", secs)
		return errs.E(errs.RateLimited, "too many uploads: at most %d a minute; retry in %d s", a.opts.UploadLimit.Limit(), secs)
	}
	return nil
}

// postVideo is POST /api/v1/videos. With an Idempotency-Key a retry
// answers like the first request (202, the same Location, the job as it is
// now) with Idempotent-Replayed: true; one while the first still uploads
// is 409 with Retry-After.
func (a *API) postVideo(w http.ResponseWriter, r *http.Request, p authn.Principal) error {
	key, err := idempotencyKey(r)
	if err != nil {
		return err
	}
	if err := a.limitUploads(w, r, p, key); err != nil {
		return err
	}
	job, err := a.receive(r, p, true, key)
	var inUse *uploads.KeyInUseError
	if errors.As(err, &inUse) {
		w.Header().Set("Retry-After", strconv.FormatInt(int64((inUse.RetryAfter+time.Second-1)/time.Second), 10))
	}
	if err != nil {
		return err
	}
	if job.Replayed {
		w.Header().Set(ReplayedHeader, "true")
	}
	w.Header().Set("Location", jobURL(job.Job))
	httpapi.WriteJSON(w, http.StatusAccepted, viewOf(job.Job))
	return nil
}

// seedUpload is POST /upload for the seed clients: exactly one multipart
// file → 200 "success!"; errors as plain text, like the seed.
func (a *API) seedUpload(w http.ResponseWriter, r *http.Request) {
	p, _ := authn.FromContext(r.Context())
	err := a.limitUploads(w, r, p, "")
	if err == nil {
		_, err = a.receive(r, p, false, "")
	}
	if err != nil {
		if errs.CodeOf(err) == errs.Internal {
			a.opts.Logger.ErrorContext(r.Context(), "seed upload failed", "err", err.Error())
		}
		http.Error(w, errs.MessageOf(err), httpapi.Status(errs.CodeOf(err)))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "success!")
}
