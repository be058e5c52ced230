package web

import (
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/gorilla/mux"

	"github.com/audiomill/audiomill/gateway/internal/jobs"
	"github.com/audiomill/audiomill/gateway/internal/links"
	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/httpapi"
)

// linkView is the body of POST /api/v1/jobs/{id}/link.
type linkView struct {
	URL       string    `json:"url"`
	ExpiresAt time.Time `json:"expires_at"`
}

// postLink is POST /api/v1/jobs/{id}/link: a signed link to the caller's
// done job's MP3 that works without a bearer token until it expires.
func (a *API) postLink(w http.ResponseWriter, r *http.Request, p authn.Principal) error {
	if a.opts.Links == nil {
		return errs.E(errs.Unavailable, "links are unavailable: the gateway has no link key (GATEWAY_LINK_KEY_FILE)")
	}
	j, err := a.job(r, p)
	if err != nil {
		return err
	}
	if j.Status != jobs.Done || j.Audio == nil {
		return errs.E(errs.Conflict, "the MP3 is not ready (the job is %s)", j.Status)
	}
	exp, e, sig := a.opts.Links.Sign(j.ID.Hex(), j.Owner, time.Now())
	q := url.Values{"exp": {e}, "sig": {sig}}
	w.Header().Set("Cache-Control", "no-store")
	httpapi.WriteJSON(w, http.StatusOK, linkView{URL: jobURL(j) + "/audio?" + q.Encode(), ExpiresAt: exp.UTC()})
	return nil
}

// audio is GET/HEAD /api/v1/jobs/{id}/audio: with sig, a signed link (no
// bearer token); otherwise the bearer token's own job.
func (a *API) audio(authed http.Handler) http.Handler {
	signed := httpapi.ErrorHandler(a.opts.Logger, a.signedAudio)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Has("sig") || q.Has("exp") {
			signed.ServeHTTP(w, r)
			return
		}
		authed.ServeHTTP(w, r)
	})
}

// signedAudio serves the MP3 of a signed link. Every refusal (malformed,
// tampered, another job's, expired, a job since deleted) is 403
// link_invalid or link_expired: the link names no one to tell apart.
func (a *API) signedAudio(w http.ResponseWriter, r *http.Request) error {
	if a.opts.Links == nil {
		return errs.E(errs.Unavailable, "links are unavailable: the gateway has no link key (GATEWAY_LINK_KEY_FILE)")
	}
	q := r.URL.Query()
	if len(q["exp"]) != 1 || len(q["sig"]) != 1 {
		return errs.E(errs.LinkInvalid, "a link needs exactly one exp and one sig")
	}
	refused := func(err error) error {
		if errors.Is(err, links.ErrExpired) {
			return errs.Wrap(err, errs.LinkExpired, "the link has expired; ask for a new one")
		}
		return errs.Wrap(err, errs.LinkInvalid, "the link is not valid")
	}
	id, err := jobs.ParseID(mux.Vars(r)["id"])
	if err != nil {
		return refused(err)
	}
	now := time.Now()
	// The shape and the expiry first: a made-up or stale link costs no read.
	if err := links.Precheck(q.Get("exp"), q.Get("sig"), now); err != nil {
		return refused(err)
	}
	j, err := a.opts.Jobs.ByID(r.Context(), id)
	if err != nil {
		if errs.CodeOf(err) == errs.NotFound {
			return refused(err)
		}
		return err
	}
	if err := a.opts.Links.Check(j.ID.Hex(), j.Owner, q.Get("exp"), q.Get("sig"), now); err != nil {
		return refused(err)
	}
	// The URL is the credential: it must not sit in shared caches.
	w.Header().Set("Cache-Control", "private, no-store")
	return a.serveAudio(w, r, j)
}
