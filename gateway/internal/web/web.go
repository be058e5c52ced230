// Package web is the gateway's HTTP API:
//
//	POST   /api/v1/videos           upload a video (multipart field "file", or a raw body with X-Filename; optional Idempotency-Key) → 202 the job
//	GET    /api/v1/jobs             the caller's jobs, newest first (?limit=, ?cursor=, ?status=)
//	GET    /api/v1/jobs/events      the caller's job changes, live (text/event-stream; Last-Event-ID resumes)
//	GET    /api/v1/jobs/{id}        one job
//	GET    /api/v1/jobs/{id}/audio  the job's MP3 (Range, If-None-Match … passed through); with ?exp=&sig= a signed link, no token
//	POST   /api/v1/jobs/{id}/link   a signed link to the MP3 → {url, expires_at}
//	DELETE /api/v1/jobs/{id}        the job, its video and its MP3
//	OPTIONS, POST /api/v1/uploads   resumable uploads (tus 1.0.0): create one (Upload-Length, Upload-Metadata filename, filetype) → 201 Location
//	HEAD, PATCH, DELETE /api/v1/uploads/{id}  where it stands, append a part, terminate; the completing PATCH and later HEADs carry Audiomill-Job-Id
//	POST   /api/v1/users, /api/v1/users/verify/resend, /api/v1/token, /api/v1/token/refresh, /api/v1/logout → auth
//	GET    /api/v1/verify?token=    → auth (the verification link)
//
// and the seed clients' routes: POST /login (Basic → the bare JWT),
// POST /upload (exactly one multipart file → "success!"), GET /download?fid=.
package web

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/audiomill/audiomill/gateway/internal/authcall"
	"github.com/audiomill/audiomill/gateway/internal/jobfeed"
	"github.com/audiomill/audiomill/gateway/internal/jobs"
	"github.com/audiomill/audiomill/gateway/internal/links"
	"github.com/audiomill/audiomill/gateway/internal/resumable"
	"github.com/audiomill/audiomill/gateway/internal/storage"
	"github.com/audiomill/audiomill/gateway/internal/uploads"
	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/httpapi"
	"github.com/audiomill/audiomill/platform/ratelimit"
)

// Defaults of Options left zero.
const (
	DefaultMaxUpload = 2 << 30
	// multipartSlack is what a multipart body may hold besides the file
	// (boundaries, part headers, small form fields).
	multipartSlack = 1 << 20
	// DefaultListLimit and MaxListLimit bound a page of GET /api/v1/jobs.
	DefaultListLimit = 20
	MaxListLimit     = 100
)

// BodyLimiter gives a route its own request body limit (httpapi.Server).
type BodyLimiter interface {
	SetBodyLimit(route *mux.Route, limit int64)
}

// AuthBase returns auth's base URL ("http://host:port").
type AuthBase func(ctx context.Context) (string, error)

// Options configure the API.
type Options struct {
	Jobs *jobs.Store
	// Storage and Uploads are nil when the gateway has no service account:
	// uploads, downloads and deletes then answer 503.
	Storage *storage.Storage
	Uploads *uploads.Service
	// Resumable runs the resumable uploads (nil without a service
	// account: they answer 503).
	Resumable *resumable.Service
	// Authenticate verifies the bearer token (authn.Middleware).
	Authenticate func(http.Handler) http.Handler
	// Auth finds auth, for the account routes and /login.
	Auth AuthBase
	// MaxUpload is the largest video, in bytes (DefaultMaxUpload).
	MaxUpload int64
	// UploadLimit bounds each user's uploads per window (none when nil):
	// over it an upload is 429 with Retry-After before its body is read.
	UploadLimit *ratelimit.Limiter
	// Feed wakes the live job streams (GET /api/v1/jobs/events answers 503
	// without it); PingInterval is their keep-alive (DefaultPingInterval).
	Feed         *jobfeed.Hub
	PingInterval time.Duration
	// Links signs the MP3 links of POST /api/v1/jobs/{id}/link (nil: no
	// link key, and links answer 503).
	Links  *links.Signer
	Logger *slog.Logger
	// Registerer takes the API's metrics (none when nil).
	Registerer prometheus.Registerer
}

// API serves the routes.
type API struct {
	opts        Options
	proxy       http.Handler
	auth        authcall.Caller
	uploads     *prometheus.CounterVec
	uploadBytes prometheus.Counter
}

// Register adds the API's routes to r and their body limits to bl.
func Register(r *mux.Router, bl BodyLimiter, opts Options) *API {
	if opts.MaxUpload <= 0 {
		opts.MaxUpload = DefaultMaxUpload
	}
	a := &API{opts: opts, auth: authcall.New(opts.Auth),
		uploads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_uploads_total",
			Help: "Video uploads by result: accepted, or the error code that refused them.",
		}, []string{"result"}),
		uploadBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_upload_bytes_total",
			Help: "Bytes of accepted videos.",
		}),
	}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(a.uploads, a.uploadBytes)
	}
	a.proxy = a.authProxy()

	authed := func(f func(http.ResponseWriter, *http.Request, authn.Principal) error) http.Handler {
		return opts.Authenticate(httpapi.ErrorHandler(opts.Logger, func(w http.ResponseWriter, r *http.Request) error {
			p, ok := authn.FromContext(r.Context())
			if !ok {
				return errs.E(errs.Unauthorized, "a bearer token is required")
			}
			return f(w, r, p)
		}))
	}
	upload := r.Handle("/api/v1/videos", authed(a.postVideo)).Methods(http.MethodPost)
	bl.SetBodyLimit(upload, opts.MaxUpload+multipartSlack)
	r.Handle("/api/v1/jobs", authed(a.listJobs)).Methods(http.MethodGet)
	r.Handle("/api/v1/jobs/events", authed(a.jobEvents)).Methods(http.MethodGet) // before {id}
	r.Handle("/api/v1/jobs/{id}", authed(a.getJob)).Methods(http.MethodGet)
	r.Handle("/api/v1/jobs/{id}", authed(a.deleteJob)).Methods(http.MethodDelete)
	r.Handle("/api/v1/jobs/{id}/audio", a.audio(authed(a.getAudio))).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/api/v1/jobs/{id}/link", authed(a.postLink)).Methods(http.MethodPost)
	a.registerTus(r, bl, authed)

	for _, p := range []string{"/api/v1/users", "/api/v1/users/verify/resend", "/api/v1/token", "/api/v1/token/refresh", "/api/v1/logout"} {
		r.Handle(p, a.proxy).Methods(http.MethodPost)
	}
	r.Handle("/api/v1/verify", a.proxy).Methods(http.MethodGet)

	r.Handle("/login", httpapi.ErrorHandler(opts.Logger, a.seedLogin)).Methods(http.MethodPost)
	seedUpload := r.Handle("/upload", opts.Authenticate(http.HandlerFunc(a.seedUpload))).Methods(http.MethodPost)
	bl.SetBodyLimit(seedUpload, opts.MaxUpload+multipartSlack)
	r.Handle("/download", authed(a.seedDownload)).Methods(http.MethodGet, http.MethodHead)
	return a
}

// jobView is a job as the API shows it.
type jobView struct {
	ID        string      `json:"id"`
	Status    jobs.Status `json:"status"`
	Progress  *int        `json:"progress,omitempty"`
	Video     jobs.Video  `json:"video"`
	Audio     *jobs.Audio `json:"audio,omitempty"`
	AudioURL  string      `json:"audio_url,omitempty"`
	Reason    string      `json:"reason,omitempty"`
	Retryable *bool       `json:"retryable,omitempty"`
	CreatedAt time.Time   `json:"created_at"`
	UpdatedAt time.Time   `json:"updated_at"`
}

func viewOf(j jobs.Job) jobView {
	v := jobView{ID: j.ID.Hex(), Status: j.Status, Video: j.Video, CreatedAt: j.CreatedAt, UpdatedAt: j.UpdatedAt}
	switch j.Status {
	case jobs.Converting:
		p := j.Progress
		v.Progress = &p
	case jobs.Done:
		v.Audio = j.Audio
		v.AudioURL = jobURL(j) + "/audio"
	case jobs.Failed:
		v.Reason = j.Reason
		r := j.Retryable
		v.Retryable = &r
	}
	return v
}

func jobURL(j jobs.Job) string { return "/api/v1/jobs/" + j.ID.Hex() }
