package web

import (
	"net/http"
	"strconv"

	"github.com/gorilla/mux"

	"github.com/audiomill/audiomill/gateway/internal/jobs"
	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/httpapi"
)

// jobPage is the body of GET /api/v1/jobs.
type jobPage struct {
	Jobs []jobView `json:"jobs"`
	// NextCursor, when set, is the cursor of the next (older) page.
	NextCursor string `json:"next_cursor,omitempty"`
}

// listJobs is GET /api/v1/jobs?limit=&cursor=&status=: the caller's jobs,
// newest first, a page at a time (keyset on the jobs' creation time and id:
// a page costs the same at any depth).
func (a *API) listJobs(w http.ResponseWriter, r *http.Request, p authn.Principal) error {
	q := r.URL.Query()
	opts := jobs.ListOptions{Limit: DefaultListLimit}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxListLimit {
			return errs.E(errs.Invalid, "limit must be between 1 and %d", MaxListLimit)
		}
		opts.Limit = n
	}
	if s := q.Get("status"); s != "" {
		st, err := jobs.ParseStatus(s)
		if err != nil {
			return err
		}
		opts.Status = st
	}
	if c := q.Get("cursor"); c != "" {
		cur, err := jobs.ParseCursor(c)
		if err != nil {
			return err
		}
		opts.After = cur
	}
	limit := opts.Limit
	opts.Limit++ // one more tells whether there is a next page
	list, err := a.opts.Jobs.List(r.Context(), p.Subject, opts)
	if err != nil {
		return err
	}
	page := jobPage{Jobs: make([]jobView, 0, len(list))}
	if len(list) > limit {
		list = list[:limit]
		page.NextCursor = jobs.CursorOf(list[limit-1]).String()
	}
	for _, j := range list {
		page.Jobs = append(page.Jobs, viewOf(j))
	}
	httpapi.WriteJSON(w, http.StatusOK, page)
	return nil
}

// job loads the caller's job named in the path: 400 for a malformed id,
// 404 for an unknown one or someone else's.
func (a *API) job(r *http.Request, p authn.Principal) (jobs.Job, error) {
	id, err := jobs.ParseID(mux.Vars(r)["id"])
	if err != nil {
		return jobs.Job{}, err
	}
	return a.opts.Jobs.Get(r.Context(), p.Subject, id)
}

// getJob is GET /api/v1/jobs/{id}.
func (a *API) getJob(w http.ResponseWriter, r *http.Request, p authn.Principal) error {
	j, err := a.job(r, p)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, viewOf(j))
	return nil
}

// getAudio is GET /api/v1/jobs/{id}/audio: the MP3, streamed from filestorage.
func (a *API) getAudio(w http.ResponseWriter, r *http.Request, p authn.Principal) error {
	j, err := a.job(r, p)
	if err != nil {
		return err
	}
	return a.serveAudio(w, r, j)
}

func (a *API) serveAudio(w http.ResponseWriter, r *http.Request, j jobs.Job) error {
	if j.Status != jobs.Done || j.Audio == nil {
		return errs.E(errs.Conflict, "the MP3 is not ready (the job is %s)", j.Status)
	}
	if a.opts.Storage == nil {
		return errs.E(errs.Unavailable, "downloads are unavailable: the gateway has no service account (SERVICE_CLIENT_SECRET)")
	}
	return a.opts.Storage.Serve(w, r, j.Audio.FileID, mp3Name(j.Video.Name))
}

// mp3Name is the download name of a video's MP3: its name with .mp3.
func mp3Name(video string) string {
	for i := len(video) - 1; i > 0; i-- {
		if video[i] == '.' {
			return video[:i] + ".mp3"
		}
	}
	return video + ".mp3"
}

// deleteJob is DELETE /api/v1/jobs/{id}: the files first, then the job, so
// a failure leaves a job that can be deleted again rather than orphans.
func (a *API) deleteJob(w http.ResponseWriter, r *http.Request, p authn.Principal) error {
	j, err := a.job(r, p)
	if err != nil {
		return err
	}
	if a.opts.Storage == nil {
		return errs.E(errs.Unavailable, "deletes are unavailable: the gateway has no service account (SERVICE_CLIENT_SECRET)")
	}
	if err := a.opts.Storage.Delete(r.Context(), j.Video.FileID); err != nil {
		return err
	}
	if j.Audio != nil {
		if err := a.opts.Storage.Delete(r.Context(), j.Audio.FileID); err != nil {
			return err
		}
	}
	if err := a.opts.Jobs.Delete(r.Context(), p.Subject, j.ID); err != nil && errs.CodeOf(err) != errs.NotFound {
		return err
	}
	a.opts.Logger.InfoContext(r.Context(), "job deleted", "job_id", j.ID.Hex())
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// seedDownload is GET /download?fid=<MP3 id>: the caller's MP3 with that id.
func (a *API) seedDownload(w http.ResponseWriter, r *http.Request, p authn.Principal) error {
	fid := r.URL.Query().Get("fid")
	if fid == "" {
		return errs.E(errs.Invalid, "fid is required")
	}
	if len(fid) > 128 {
		return errs.E(errs.Invalid, "malformed fid")
	}
	j, err := a.opts.Jobs.ByAudio(r.Context(), p.Subject, fid)
	if err != nil {
		if errs.CodeOf(err) == errs.NotFound {
			return errs.E(errs.NotFound, "no such MP3")
		}
		return err
	}
	return a.serveAudio(w, r, j)
}
