package web

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/gorilla/mux"

	"github.com/audiomill/audiomill/gateway/internal/resumable"
	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/httpapi"
	"github.com/audiomill/audiomill/platform/tus"
)

// The gateway's tus 1.0.0: core, creation, checksum (filestorage checks
// the part), termination and expiration.
const (
	tusExtensions = "creation,checksum,termination,expiration"
	tusChecksums  = "sha1,sha256"
	// JobIDHeader carries the job a completed resumable upload became: on
	// the PATCH that completed it and on every HEAD after.
	JobIDHeader = "Audiomill-Job-Id"
	// uploadsPath is the resumable uploads' endpoint.
	uploadsPath = "/api/v1/uploads"
)

// registerTus adds the resumable uploads' routes.
func (a *API) registerTus(r *mux.Router, bl BodyLimiter, authed func(func(http.ResponseWriter, *http.Request, authn.Principal) error) http.Handler) {
	r.Handle(uploadsPath, authed(a.tusOptions)).Methods(http.MethodOptions)
	r.Handle(uploadsPath, authed(a.tusCreate)).Methods(http.MethodPost)
	r.Handle(uploadsPath+"/{id}", authed(a.tusHead)).Methods(http.MethodHead)
	patch := r.Handle(uploadsPath+"/{id}", authed(a.tusPatch)).Methods(http.MethodPatch)
	bl.SetBodyLimit(patch, a.opts.MaxUpload)
	r.Handle(uploadsPath+"/{id}", authed(a.tusDelete)).Methods(http.MethodDelete)
}

// tusPreamble sets the headers of every tus answer and checks the
// request's Tus-Resumable (412 with Tus-Version when it is not 1.0.0), the
// caller's verified address and that resumable uploads are available.
func (a *API) tusPreamble(w http.ResponseWriter, r *http.Request, p authn.Principal) error {
	if err := tus.Begin(w, r); err != nil {
		return err
	}
	if err := requireVerified(p); err != nil {
		a.opts.Logger.InfoContext(r.Context(), "upload refused: email not verified", "sub", p.Subject)
		return err
	}
	if a.opts.Resumable == nil {
		return errs.E(errs.Unavailable, "uploads are unavailable: the gateway has no service account (SERVICE_CLIENT_SECRET)")
	}
	return nil
}

// tusOptions is OPTIONS /api/v1/uploads: what the endpoint supports.
func (a *API) tusOptions(w http.ResponseWriter, _ *http.Request, _ authn.Principal) error {
	h := w.Header()
	h.Set("Tus-Resumable", tus.Version)
	h.Set("Tus-Version", tus.Version)
	h.Set("Tus-Extension", tusExtensions)
	h.Set("Tus-Checksum-Algorithm", tusChecksums)
	h.Set("Tus-Max-Size", strconv.FormatInt(a.opts.MaxUpload, 10))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// tusCreate is POST /api/v1/uploads (tus creation): Upload-Length, and
// Upload-Metadata with filename (required) and filetype. The user's upload
// limit counts the creation; its parts do not count again.
func (a *API) tusCreate(w http.ResponseWriter, r *http.Request, p authn.Principal) error {
	err := a.createUpload(w, r, p)
	if err != nil {
		a.uploads.WithLabelValues(string(errs.CodeOf(err))).Inc()
	}
	return err
}

func (a *API) createUpload(w http.ResponseWriter, r *http.Request, p authn.Principal) error {
	if err := a.tusPreamble(w, r, p); err != nil {
		return err
	}
	if r.Header.Get("Upload-Defer-Length") != "" {
		return errs.E(errs.Invalid, "Upload-Defer-Length is not supported; send Upload-Length")
	}
	if r.ContentLength > 0 {
		return errs.E(errs.Invalid, "creation-with-upload is not supported: send the video with PATCH")
	}
	length, err := parseTusNumber("Upload-Length", r.Header.Values("Upload-Length"))
	if err != nil {
		return err
	}
	if length > a.opts.MaxUpload {
		return tooLarge(a.opts.MaxUpload)
	}
	meta, err := tus.ParseMetadata(r.Header.Get("Upload-Metadata"))
	if err != nil {
		return err
	}
	if meta["filename"] == "" {
		return errs.E(errs.Invalid, "Upload-Metadata must carry the file's name (key \"filename\")")
	}
	if err := a.limitUploads(w, r, p, ""); err != nil {
		return err
	}
	u, err := a.opts.Resumable.Create(r.Context(), resumable.Request{
		Owner: p.Subject, OwnerEmail: p.Email, Locale: localeOf(r), RequestID: r.Header.Get(httpapi.RequestIDHeader),
		Name: meta["filename"], ContentType: meta["filetype"], Length: length,
	})
	if err != nil {
		return err
	}
	w.Header().Set("Location", uploadsPath+"/"+u.ID)
	w.Header().Set("Upload-Expires", u.Expires.UTC().Format(http.TimeFormat))
	w.WriteHeader(http.StatusCreated)
	return nil
}

// tusHead is HEAD /api/v1/uploads/{id}: where to resume, and the job once
// the upload is complete.
func (a *API) tusHead(w http.ResponseWriter, r *http.Request, p authn.Principal) error {
	if err := a.tusPreamble(w, r, p); err != nil {
		return err
	}
	u, err := a.opts.Resumable.Status(r.Context(), p.Subject, mux.Vars(r)["id"])
	if err != nil {
		return err
	}
	setTusState(w, u)
	w.Header().Set("Upload-Length", strconv.FormatInt(u.Length, 10))
	w.WriteHeader(http.StatusOK)
	return nil
}

// tusPatch is PATCH /api/v1/uploads/{id}: the body, streamed to
// filestorage at Upload-Offset; the part that completes the upload
// records its job.
func (a *API) tusPatch(w http.ResponseWriter, r *http.Request, p authn.Principal) error {
	if err := a.tusPreamble(w, r, p); err != nil {
		return err
	}
	if err := tus.CheckPatch(r); err != nil {
		return err
	}
	offset, err := parseTusNumber("Upload-Offset", r.Header.Values("Upload-Offset"))
	if err != nil {
		return err
	}
	body := &limitedReader{r: r.Body, max: a.opts.MaxUpload}
	u, recorded, err := a.opts.Resumable.Append(r.Context(), p.Subject, mux.Vars(r)["id"], offset, body,
		r.ContentLength, r.Header.Get("Upload-Checksum"))
	if err != nil {
		if berr := body.sourceErr(a.opts.MaxUpload); berr != nil && errs.CodeOf(err) != errs.NotFound {
			return berr // the client went away or sent too much: its error, not filestorage's
		}
		return err
	}
	if recorded {
		a.uploads.WithLabelValues("accepted").Inc()
		a.uploadBytes.Add(float64(u.Length))
	}
	setTusState(w, u)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// tusDelete is DELETE /api/v1/uploads/{id} (termination).
func (a *API) tusDelete(w http.ResponseWriter, r *http.Request, p authn.Principal) error {
	if err := a.tusPreamble(w, r, p); err != nil {
		return err
	}
	if err := a.opts.Resumable.Terminate(r.Context(), p.Subject, mux.Vars(r)["id"]); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// setTusState sets Upload-Offset, and Upload-Expires while the upload is
// unfinished or Audiomill-Job-Id once it is complete.
func setTusState(w http.ResponseWriter, u resumable.Upload) {
	h := w.Header()
	h.Set("Upload-Offset", strconv.FormatInt(u.Offset, 10))
	if u.Completed {
		h.Set(JobIDHeader, u.JobID.Hex())
		return
	}
	h.Set("Upload-Expires", u.Expires.UTC().Format(http.TimeFormat))
}

// parseTusNumber reads the one non-negative decimal integer of header name.
func parseTusNumber(name string, values []string) (int64, error) {
	if len(values) != 1 {
		return 0, errs.E(errs.Invalid, "send one %s", name)
	}
	v := strings.TrimSpace(values[0])
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || v == "" || v[0] < '0' || v[0] > '9' {
		return 0, errs.E(errs.Invalid, "%s must be a non-negative integer", name)
	}
	return n, nil
}
