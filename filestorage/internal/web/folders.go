package web

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/gorilla/mux"

	"github.com/audiomill/audiomill/filestorage/internal/store"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/httpapi"
)

// cursor is what the opaque list cursor carries. It is bound to the
// listing it came from.
type cursor struct {
	After     string `json:"a"`
	Prefix    string `json:"p"`
	Delimiter string `json:"d"`
}

func encodeCursor(c cursor) string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s, prefix, delimiter string) (string, error) {
	bad := errs.E(errs.Invalid, "malformed cursor; pass back next_cursor unchanged")
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return "", bad
	}
	var c cursor
	if err := json.Unmarshal(raw, &c); err != nil || c.After == "" {
		return "", bad
	}
	if c.Prefix != prefix || c.Delimiter != delimiter {
		return "", errs.E(errs.Invalid, "the cursor belongs to another listing (prefix or delimiter differ)")
	}
	return c.After, nil
}

type listJSON struct {
	Files      []fileJSON `json:"files"`
	Prefixes   []string   `json:"prefixes"`
	NextCursor string     `json:"next_cursor,omitempty"`
}

// list is GET /v1/buckets/{bucket}/files: the folder view.
func (a *API) list(w http.ResponseWriter, r *http.Request, c Caller) error {
	bucket := mux.Vars(r)["bucket"]
	if err := store.ValidateBucket(bucket); err != nil {
		return err
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return errs.E(errs.Invalid, "malformed query string")
	}
	opts := store.ListOptions{Prefix: q.Get("prefix"), Delimiter: q.Get("delimiter")}
	if !c.every(bucket) {
		opts.Owner = c.Owner
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return errs.E(errs.Invalid, "limit must be a positive integer (at most %d)", store.MaxListLimit)
		}
		opts.Limit = n
	}
	if s := q.Get("cursor"); s != "" {
		after, err := decodeCursor(s, opts.Prefix, opts.Delimiter)
		if err != nil {
			return err
		}
		opts.After = after
	}
	sees, err := a.seesBucket(r.Context(), c, bucket)
	if err != nil {
		return err
	}
	if !sees {
		return noBucket(bucket)
	}
	page, err := a.backend.List(r.Context(), bucket, opts)
	if err != nil {
		return err
	}
	out := listJSON{Files: []fileJSON{}, Prefixes: []string{}}
	for _, e := range page.Entries {
		if e.File != nil {
			out.Files = append(out.Files, toJSON(*e.File))
		} else {
			out.Prefixes = append(out.Prefixes, e.Prefix)
		}
	}
	if page.More && len(page.Entries) > 0 {
		out.NextCursor = encodeCursor(cursor{After: page.Entries[len(page.Entries)-1].Key(), Prefix: opts.Prefix, Delimiter: opts.Delimiter})
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

// buckets is GET /v1/buckets: every bucket for an admin; for anyone else
// the buckets they hold files in, with their own files' counts.
func (a *API) buckets(w http.ResponseWriter, r *http.Request, c Caller) error {
	owner := c.Owner
	if c.Admin {
		owner = ""
	}
	all, err := a.backend.Buckets(r.Context(), owner)
	if err != nil {
		return err
	}
	stats := make([]store.BucketStats, 0, len(all))
	for _, s := range all {
		if c.Admin || s.Files > 0 {
			stats = append(stats, s)
		}
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"buckets": stats})
	return nil
}

type moveRequest struct {
	From      string `json:"from"`
	To        string `json:"to"`
	Overwrite bool   `json:"overwrite"`
}

// move is POST /v1/buckets/{bucket}/move: a file, or every file of the
// caller's under a folder (someone else's files there are not the
// caller's to see or move). A folder move checks every target first;
// interrupted halfway, it completes when run again (the files already
// moved are no longer under from).
//
// The checks here answer early; the backend is the authority: each file's
// move checks again, in the same atomic step as its rename, that the file
// is still the caller's and that a file it replaces is too (unless the
// caller is an admin), so a file stored at either path after these checks
// is never taken over.
func (a *API) move(w http.ResponseWriter, r *http.Request, c Caller) error {
	bucket := mux.Vars(r)["bucket"]
	if err := store.ValidateBucket(bucket); err != nil {
		return err
	}
	var req moveRequest
	if err := httpapi.DecodeJSON(r, &req); err != nil {
		return err
	}
	req.From, req.To = strings.TrimSuffix(req.From, "/"), strings.TrimSuffix(req.To, "/")
	for name, p := range map[string]string{"from": req.From, "to": req.To} {
		if err := store.ValidatePath(p); err != nil {
			return errs.Wrap(err, errs.Invalid, "%s: %s", name, errs.MessageOf(err))
		}
	}
	if req.From == req.To || store.IsUnder(req.To, req.From) {
		return errs.E(errs.Invalid, "cannot move %q into itself", req.From)
	}
	moveReq := func(from, to string) store.MoveRequest {
		return store.MoveRequest{Bucket: bucket, From: from, To: to, Overwrite: req.Overwrite, Owner: c.Owner, Replace: c.replace()}
	}
	_, err := a.fileAtPath(r.Context(), c, bucket, req.From)
	switch {
	case err == nil:
		if target, err := a.backend.StatPath(r.Context(), bucket, req.To); err == nil && !c.may(target) {
			return store.ErrPathTaken(bucket, req.To)
		}
		moved, err := a.backend.Move(r.Context(), moveReq(req.From, req.To))
		if errs.CodeOf(err) == errs.NotFound {
			// The file stopped being the caller's after the check above.
			return noFilePath(bucket, req.From)
		}
		if err != nil {
			return err
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"moved": 1, "file": toJSON(moved)})
		return nil
	case errs.CodeOf(err) != errs.NotFound:
		return err
	}
	files, err := a.folder(r, bucket, req.From, c)
	if err != nil {
		return err
	}
	for _, f := range files {
		to := store.MovedPath(f.Path, req.From, req.To)
		target, err := a.backend.StatPath(r.Context(), bucket, to)
		switch {
		case err == nil && !c.may(target):
			return errs.E(errs.Conflict, "%s/%s is taken; nothing was moved", bucket, to)
		case err == nil && !req.Overwrite:
			return errs.E(errs.Conflict, "%s/%s already exists; nothing was moved", bucket, to)
		case err != nil && errs.CodeOf(err) != errs.NotFound:
			return err
		}
	}
	moved := 0
	for _, f := range files {
		_, err := a.backend.Move(r.Context(), moveReq(f.Path, store.MovedPath(f.Path, req.From, req.To)))
		switch {
		case errs.CodeOf(err) == errs.NotFound:
			// Deleted, or no longer the caller's, since the listing: no
			// longer a file of the caller's folder.
		case err != nil && moved > 0 && errs.CodeOf(err) == errs.Conflict:
			return errs.Wrap(err, errs.Conflict, "%s; %d of the folder's %d files were moved before it, the rest stay",
				errs.MessageOf(err), moved, len(files))
		case err != nil:
			return err
		default:
			moved++
		}
	}
	if moved == 0 {
		return noFolder(bucket, req.From)
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"moved": moved})
	return nil
}

// folder returns the files under folder that c may see: all of them for
// an admin, the caller's own for anyone else (a folder is, to each caller,
// their files under it). errs.NotFound when there is none.
func (a *API) folder(r *http.Request, bucket, folder string, c Caller) ([]store.File, error) {
	var files []store.File
	opts := store.ListOptions{Prefix: folder + "/", Limit: store.MaxListLimit}
	if !c.every(bucket) {
		opts.Owner = c.Owner
	}
	for {
		page, err := a.backend.List(r.Context(), bucket, opts)
		if err != nil {
			return nil, err
		}
		for _, e := range page.Entries {
			if c.may(*e.File) {
				files = append(files, *e.File)
			}
		}
		if !page.More {
			break
		}
		opts.After = page.Entries[len(page.Entries)-1].Key()
	}
	if len(files) == 0 {
		return nil, noFolder(bucket, folder)
	}
	return files, nil
}

// deleteByID is DELETE /v1/files/{id}.
func (a *API) deleteByID(w http.ResponseWriter, r *http.Request, c Caller) error {
	f, err := a.fileByID(r.Context(), c, mux.Vars(r)["id"])
	if err != nil {
		return err
	}
	if err := a.backend.Delete(r.Context(), f.ID); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// deleteByPath is DELETE /v1/buckets/{bucket}/files/{path}; a folder needs
// ?recursive=true and deletes the files of it the caller may see (for
// anyone but an admin, their own: someone else's stay, unnamed).
func (a *API) deleteByPath(w http.ResponseWriter, r *http.Request, c Caller) error {
	bucket, p := mux.Vars(r)["bucket"], strings.TrimSuffix(mux.Vars(r)["path"], "/")
	if err := validate(bucket, p); err != nil {
		return err
	}
	recursive := false
	if s := r.URL.Query().Get("recursive"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return errs.E(errs.Invalid, "recursive must be true or false")
		}
		recursive = b
	}
	f, err := a.fileAtPath(r.Context(), c, bucket, p)
	switch {
	case err == nil:
		if err := a.backend.Delete(r.Context(), f.ID); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	case errs.CodeOf(err) != errs.NotFound:
		return err
	}
	files, err := a.folder(r, bucket, p, c)
	if err != nil {
		return err
	}
	if !recursive {
		return errs.E(errs.Conflict, "%s/%s is a folder of %d or more files; delete it with ?recursive=true", bucket, p, len(files))
	}
	for _, f := range files {
		if err := a.backend.Delete(r.Context(), f.ID); err != nil && errs.CodeOf(err) != errs.NotFound {
			return err
		}
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"deleted": len(files)})
	return nil
}
