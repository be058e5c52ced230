package web

import (
	"bytes"
	"crypto/sha1" //nolint:gosec // tus's checksum extension requires SHA-1 support; it guards against corruption, not attackers
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"hash"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/audiomill/audiomill/filestorage/internal/store"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/tus"
)

// The tus 1.0.0 protocol: core, creation, creation-with-upload, checksum,
// termination and expiration.
const (
	TusVersion     = tus.Version
	TusExtensions  = "creation,creation-with-upload,checksum,termination,expiration"
	TusChecksums   = "sha1,sha256"
	tusContentType = tus.ContentType
)

// tusOptions is OPTIONS on the uploads endpoint: what the server supports.
func (a *API) tusOptions(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Tus-Resumable", TusVersion)
	h.Set("Tus-Version", TusVersion)
	h.Set("Tus-Extension", TusExtensions)
	h.Set("Tus-Checksum-Algorithm", TusChecksums)
	h.Set("Tus-Max-Size", strconv.FormatInt(a.limits.MaxObjectSize, 10))
	w.WriteHeader(http.StatusNoContent)
}

func parseOffset(name, s string) (int64, error) {
	n, err := parseDigits(strings.TrimSpace(s))
	if err != nil {
		return 0, errs.E(errs.Invalid, "%s must be a non-negative integer", name)
	}
	return n, nil
}

func uploadLocation(u store.Upload) string {
	return "/v1/buckets/" + u.Bucket + "/uploads/" + u.ID
}

func setUploadHeaders(w http.ResponseWriter, u store.Upload) {
	h := w.Header()
	h.Set("Upload-Offset", strconv.FormatInt(u.Offset, 10))
	h.Set("Upload-Expires", u.Expires.UTC().Format(http.TimeFormat))
}

// tusCreate is POST on the uploads endpoint (creation, creation-with-upload).
// Upload-Metadata carries "path" (or "filename") and "contentType" (or
// "filetype"); other keys become custom metadata.
func (a *API) tusCreate(w http.ResponseWriter, r *http.Request, c Caller) error {
	if err := tus.Begin(w, r); err != nil {
		return err
	}
	bucket := mux.Vars(r)["bucket"]
	if err := store.ValidateBucket(bucket); err != nil {
		return err
	}
	if r.Header.Get("Upload-Defer-Length") != "" {
		return errs.E(errs.Invalid, "Upload-Defer-Length is not supported; send Upload-Length")
	}
	length, err := parseOffset("Upload-Length", r.Header.Get("Upload-Length"))
	if err != nil {
		return err
	}
	meta, err := tus.ParseMetadata(r.Header.Get("Upload-Metadata"))
	if err != nil {
		return err
	}
	u := store.Upload{Bucket: bucket, Owner: c.Owner, Length: length}
	u.Path = firstOf(meta, "path", "filename")
	u.ContentType = firstOf(meta, "contentType", "filetype")
	if u.ContentType == "" {
		u.ContentType = "application/octet-stream"
	}
	for k, v := range meta {
		switch k {
		case "path", "filename", "contentType", "filetype":
		default:
			if u.Custom == nil {
				u.Custom = map[string]string{}
			}
			u.Custom[strings.ToLower(k)] = v
		}
	}
	if u.Path == "" {
		return errs.E(errs.Invalid, "Upload-Metadata must carry the file's path (key \"path\")")
	}
	if err := store.ValidatePath(u.Path); err != nil {
		return err
	}
	if existing, err := a.backend.StatPath(r.Context(), bucket, u.Path); err == nil && !c.may(existing) {
		return store.ErrPathTaken(bucket, u.Path)
	}
	if length > a.limits.MaxObjectSize {
		return tooLarge(a.limits.MaxObjectSize)
	}
	if err := a.claimBucket(r.Context(), c, bucket); err != nil {
		return err
	}
	// The backend reserves Upload-Length of the quota (or refuses).
	u.Quota = a.quota(c)
	u, err = a.backend.CreateUpload(r.Context(), u)
	if err != nil {
		return err
	}
	w.Header().Set("Location", uploadLocation(u))
	setUploadHeaders(w, u)
	if r.ContentLength != 0 && r.Header.Get("Content-Type") == tusContentType {
		u, err = a.tusWrite(w, r, c, u, 0)
		if err != nil {
			return err
		}
		setUploadHeaders(w, u)
	} else if length == 0 {
		if _, err := a.complete(w, r, c, u); err != nil {
			return err
		}
	}
	w.WriteHeader(http.StatusCreated)
	return nil
}

func firstOf(m map[string]string, keys ...string) string {
	for _, k := range keys {
		if v := m[k]; v != "" {
			return v
		}
	}
	return ""
}

// tusUpload loads the upload the URL names, as c may see it: a missing,
// expired or misplaced upload and someone else's are the same
// errs.NotFound.
func (a *API) tusUpload(r *http.Request, c Caller) (store.Upload, error) {
	bucket, id := mux.Vars(r)["bucket"], mux.Vars(r)["id"]
	u, err := a.backend.GetUpload(r.Context(), id)
	switch {
	case err != nil && errs.CodeOf(err) != errs.NotFound:
		return store.Upload{}, err
	case err != nil || u.Bucket != bucket || u.Expires.Before(time.Now()) || !c.Admin && u.Owner != c.Owner:
		return store.Upload{}, noUpload(id)
	}
	return u, nil
}

// tusHead is HEAD on an upload: where to resume.
func (a *API) tusHead(w http.ResponseWriter, r *http.Request, c Caller) error {
	if err := tus.Begin(w, r); err != nil {
		return err
	}
	u, err := a.tusUpload(r, c)
	if err != nil {
		return err
	}
	setUploadHeaders(w, u)
	w.Header().Set("Upload-Length", strconv.FormatInt(u.Length, 10))
	w.WriteHeader(http.StatusOK)
	return nil
}

// tusPatch is PATCH on an upload: append at Upload-Offset.
func (a *API) tusPatch(w http.ResponseWriter, r *http.Request, c Caller) error {
	if err := tus.Begin(w, r); err != nil {
		return err
	}
	if err := tus.CheckPatch(r); err != nil {
		return err
	}
	offset, err := parseOffset("Upload-Offset", r.Header.Get("Upload-Offset"))
	if err != nil {
		return err
	}
	u, err := a.tusUpload(r, c)
	if err != nil {
		return err
	}
	if offset != u.Offset {
		return errs.E(errs.Conflict, "Upload-Offset is %d; the upload is at %d", offset, u.Offset)
	}
	u, err = a.tusWrite(w, r, c, u, offset)
	if err != nil {
		return err
	}
	setUploadHeaders(w, u)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// tusWrite appends the request body at offset, verifying Upload-Checksum
// when given (a mismatch discards the part: 460), and completes the upload
// when it is whole.
func (a *API) tusWrite(w http.ResponseWriter, r *http.Request, c Caller, u store.Upload, offset int64) (store.Upload, error) {
	sum, want, err := parseUploadChecksum(r.Header.Get("Upload-Checksum"))
	if err != nil {
		return u, err
	}
	if r.ContentLength > u.Length-offset {
		return u, errs.E(errs.TooLarge, "the part goes past Upload-Length %d", u.Length)
	}
	body := io.Reader(r.Body)
	var verify func() error
	if sum != nil {
		body = io.TeeReader(r.Body, sum)
		verify = func() error {
			if !bytes.Equal(sum.Sum(nil), want) {
				return withStatus(tus.StatusChecksumMismatch, errs.E(errs.Invalid, "Upload-Checksum does not match the part; it was discarded"))
			}
			return nil
		}
	}
	u, err = a.backend.AppendUpload(r.Context(), u.ID, offset, body, verify)
	if errors.Is(err, store.ErrUploadLocked) {
		return u, withStatus(http.StatusLocked, store.ErrUploadLocked)
	}
	if err != nil {
		return u, err
	}
	if u.Offset == u.Length {
		if _, err := a.complete(w, r, c, u); err != nil {
			return u, err
		}
	}
	return u, nil
}

// complete commits u as c: the backend checks, in the commit's atomic step,
// that the path holds no other owner's file (unless c is an admin).
func (a *API) complete(w http.ResponseWriter, r *http.Request, c Caller, u store.Upload) (store.File, error) {
	f, err := a.backend.CompleteUpload(r.Context(), u.ID, c.replace())
	if err != nil {
		return f, err
	}
	w.Header().Set("X-File-Id", f.ID)
	w.Header().Set("ETag", etag(f))
	return f, nil
}

// parseUploadChecksum reads "Upload-Checksum: <algorithm> <base64>".
func parseUploadChecksum(v string) (hash.Hash, []byte, error) {
	if v == "" {
		return nil, nil, nil
	}
	alg, val, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok {
		return nil, nil, errs.E(errs.Invalid, "malformed Upload-Checksum")
	}
	want, err := base64.StdEncoding.DecodeString(strings.TrimSpace(val))
	if err != nil {
		return nil, nil, errs.E(errs.Invalid, "Upload-Checksum value is not base64")
	}
	var h hash.Hash
	switch alg {
	case "sha1":
		h = sha1.New() //nolint:gosec // see import
	case "sha256":
		h = sha256.New()
	default:
		return nil, nil, errs.E(errs.Invalid, "Upload-Checksum algorithm %q is not one of %s", alg, TusChecksums)
	}
	if len(want) != h.Size() {
		return nil, nil, errs.E(errs.Invalid, "Upload-Checksum %s must be %d bytes", alg, h.Size())
	}
	return h, want, nil
}

// tusDelete is DELETE on an upload (termination).
func (a *API) tusDelete(w http.ResponseWriter, r *http.Request, c Caller) error {
	if err := tus.Begin(w, r); err != nil {
		return err
	}
	u, err := a.tusUpload(r, c)
	if err != nil {
		return err
	}
	if err := a.backend.DeleteUpload(r.Context(), u.ID); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
