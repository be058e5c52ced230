package web

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/audiomill/audiomill/filestorage/internal/store"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/httpapi"
)

// Request headers of uploads.
const (
	// MetaHeaderPrefix carries custom metadata: X-Meta-Foo: bar → {"foo":"bar"}.
	MetaHeaderPrefix  = "X-Meta-"
	maxCustomEntries  = 32
	maxCustomBytes    = 4096
	maxIdempotencyKey = 255
	copyBufferSize    = 256 << 10
)

// fileJSON is a file as the API shows it: the store's metadata, as tagged there.
type fileJSON = store.File

func toJSON(f store.File) fileJSON {
	return f
}

func etag(f store.File) string {
	if f.SHA256 != "" {
		return `"` + f.SHA256 + `"`
	}
	return fmt.Sprintf(`"%s-%d"`, f.ID, f.Size)
}

// put is PUT /v1/buckets/{bucket}/files/{path}: a one-shot streaming upload.
// Who owns the path is checked here, to refuse early, and again by the
// backend in the commit's atomic step (a file stored there meanwhile by
// someone else makes the upload a 409); the quota is reserved by the
// backend before the body is stored (its Content-Length at once).
func (a *API) put(w http.ResponseWriter, r *http.Request, c Caller) error {
	bucket, p := mux.Vars(r)["bucket"], mux.Vars(r)["path"]
	if err := validate(bucket, p); err != nil {
		return err
	}
	req := store.PutRequest{Bucket: bucket, Path: p, Owner: c.Owner, ContentType: contentType(r), SizeHint: max(r.ContentLength, 0),
		MaxSize: a.limits.MaxObjectSize, Quota: a.quota(c), Replace: c.replace()}
	var err error
	if req.SHA256, err = parseContentDigest(r.Header.Values("Content-Digest")); err != nil {
		return err
	}
	switch inm := strings.TrimSpace(r.Header.Get("If-None-Match")); inm {
	case "":
	case "*":
		req.Exclusive = true
	default:
		return errs.E(errs.Invalid, "If-None-Match on an upload must be *")
	}
	if req.Custom, err = customMeta(r.Header); err != nil {
		return err
	}
	if key := r.Header.Get("Idempotency-Key"); key != "" {
		if len(key) > maxIdempotencyKey || strings.ContainsFunc(key, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
			return errs.E(errs.Invalid, "Idempotency-Key must be 1-%d printable ASCII characters", maxIdempotencyKey)
		}
		req.IdempotencyKey = key
		prev, err := a.backend.FindIdempotent(r.Context(), bucket, c.Owner, key)
		switch {
		case err == nil && prev.Path != p:
			return errs.E(errs.Conflict, "Idempotency-Key was used for another path (%s)", prev.Path)
		case err == nil:
			w.Header().Set("Idempotent-Replayed", "true")
			return a.created(w, prev)
		case errs.CodeOf(err) != errs.NotFound:
			return err
		}
	}
	existing, err := a.backend.StatPath(r.Context(), bucket, p)
	switch {
	case err == nil && req.Exclusive:
		return preconditionFailed(bucket, p)
	case err == nil && !c.may(existing):
		return store.ErrPathTaken(bucket, p)
	case err != nil && errs.CodeOf(err) != errs.NotFound:
		return err
	}
	if r.ContentLength > a.limits.MaxObjectSize {
		return tooLarge(a.limits.MaxObjectSize)
	}
	if err := a.claimBucket(r.Context(), c, bucket); err != nil {
		return err
	}
	f, err := a.backend.Put(r.Context(), req, r.Body)
	switch {
	case store.IsQuotaExceeded(err):
		return err
	case errs.CodeOf(err) == errs.TooLarge:
		return tooLarge(a.limits.MaxObjectSize)
	case errs.CodeOf(err) == errs.Conflict && req.Exclusive:
		return preconditionFailed(bucket, p)
	case err != nil:
		return err
	}
	return a.created(w, f)
}

// preconditionFailed is the 412 of If-None-Match: * when the path exists.
func preconditionFailed(bucket, p string) error {
	return withStatus(http.StatusPreconditionFailed, errs.E(errs.Conflict, "%s/%s already exists (If-None-Match: *)", bucket, p))
}

func (a *API) created(w http.ResponseWriter, f store.File) error {
	w.Header().Set("Location", "/v1/files/"+f.ID)
	w.Header().Set("ETag", etag(f))
	httpapi.WriteJSON(w, http.StatusCreated, toJSON(f))
	return nil
}

// quota is the quota c's uploads reserve against: 0 (none) for an admin's
// own files or without a quota.
func (a *API) quota(c Caller) int64 {
	if c.quotaExempt() {
		return 0
	}
	return a.limits.Quota
}

func tooLarge(limit int64) error {
	return errs.E(errs.TooLarge, "the file is larger than the limit of %d bytes", limit)
}

func validate(bucket, p string) error {
	if err := store.ValidateBucket(bucket); err != nil {
		return err
	}
	return store.ValidatePath(p)
}

func contentType(r *http.Request) string {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return "application/octet-stream"
	}
	if _, _, err := mime.ParseMediaType(ct); err != nil {
		return "application/octet-stream"
	}
	return ct
}

// parseContentDigest reads the sha-256 of an RFC 9530 Content-Digest
// ("sha-256=:<base64>:", possibly among other algorithms). Nil when absent.
func parseContentDigest(values []string) ([]byte, error) {
	for _, v := range values {
		for item := range strings.SplitSeq(v, ",") {
			alg, val, ok := strings.Cut(strings.TrimSpace(item), "=")
			if !ok {
				return nil, errs.E(errs.Invalid, "malformed Content-Digest")
			}
			if !strings.EqualFold(strings.TrimSpace(alg), "sha-256") {
				continue
			}
			val = strings.TrimSpace(val)
			if len(val) < 2 || val[0] != ':' || val[len(val)-1] != ':' {
				return nil, errs.E(errs.Invalid, "Content-Digest sha-256 must be :<base64>:")
			}
			sum, err := base64.StdEncoding.DecodeString(val[1 : len(val)-1])
			if err != nil || len(sum) != 32 {
				return nil, errs.E(errs.Invalid, "Content-Digest sha-256 is not 32 bytes of base64")
			}
			return sum, nil
		}
	}
	return nil, nil
}

func customMeta(h http.Header) (map[string]string, error) {
	var out map[string]string
	size := 0
	for k, vs := range h {
		name, ok := strings.CutPrefix(k, MetaHeaderPrefix)
		if !ok || name == "" {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		name = strings.ToLower(name)
		out[name] = vs[0]
		size += len(name) + len(vs[0])
	}
	if len(out) > maxCustomEntries || size > maxCustomBytes {
		return nil, errs.E(errs.Invalid, "custom metadata is limited to %d entries and %d bytes", maxCustomEntries, maxCustomBytes)
	}
	return out, nil
}

// getByPath is GET/HEAD /v1/buckets/{bucket}/files/{path}.
func (a *API) getByPath(w http.ResponseWriter, r *http.Request, c Caller) error {
	bucket, p := mux.Vars(r)["bucket"], mux.Vars(r)["path"]
	if err := validate(bucket, p); err != nil {
		return err
	}
	f, err := a.fileAtPath(r.Context(), c, bucket, p)
	if err != nil {
		return err
	}
	return a.serve(w, r, f)
}

// getByID is GET/HEAD /v1/files/{id}.
func (a *API) getByID(w http.ResponseWriter, r *http.Request, c Caller) error {
	f, err := a.fileByID(r.Context(), c, mux.Vars(r)["id"])
	if err != nil {
		return err
	}
	return a.serve(w, r, f)
}

// serve answers a download of f, which the caller may read, with
// validators and a single range.
func (a *API) serve(w http.ResponseWriter, r *http.Request, f store.File) error {
	tag := etag(f)
	lastModified := f.Created.UTC().Format(http.TimeFormat)
	h := w.Header()
	h.Set("ETag", tag)
	h.Set("Last-Modified", lastModified)
	h.Set("Accept-Ranges", "bytes")
	setFileHeaders(h, f)
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagListMatches(inm, tag) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	h.Set("Content-Type", f.ContentType)
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": path.Base(f.Path)}))

	start, length, status := int64(0), f.Size, http.StatusOK
	if rh := r.Header.Get("Range"); rh != "" && ifRangeHolds(r.Header.Get("If-Range"), tag, lastModified) {
		rg, err := ParseRange(rh, f.Size)
		switch {
		case errors.Is(err, ErrUnsatisfiable):
			h.Set("Content-Range", fmt.Sprintf("bytes */%d", f.Size))
			h.Del("Content-Disposition")
			return withStatus(http.StatusRequestedRangeNotSatisfiable, errs.E(errs.Invalid, "range not satisfiable: the file has %d bytes", f.Size))
		case err == nil:
			start, length, status = rg.Start, rg.Length, http.StatusPartialContent
			h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", rg.Start, rg.Start+rg.Length-1, f.Size))
		}
		// A malformed or multi-range header is ignored: the whole file.
	}
	h.Set("Content-Length", strconv.FormatInt(length, 10))
	if r.Method == http.MethodHead {
		w.WriteHeader(status)
		return nil
	}
	rc, err := a.backend.Open(r.Context(), f, start, length)
	if err != nil {
		h.Del("Content-Length")
		return err
	}
	defer rc.Close()
	w.WriteHeader(status)
	if _, err := io.CopyBuffer(w, rc, make([]byte, copyBufferSize)); err != nil {
		// The status is sent; all that is left is to cut the response.
		a.logger.WarnContext(r.Context(), "download interrupted", "id", f.ID, "err", err.Error())
		panic(http.ErrAbortHandler)
	}
	return nil
}

// setFileHeaders describes f in response headers, so HEAD is a full stat:
// X-File-Id, X-File-Bucket, X-File-Path (percent-encoded), X-File-Owner,
// X-File-Created (RFC 3339) and X-Meta-<key> for custom metadata.
func setFileHeaders(h http.Header, f store.File) {
	h.Set("X-File-Id", f.ID)
	h.Set("X-File-Bucket", f.Bucket)
	h.Set("X-File-Path", url.PathEscape(f.Path))
	h.Set("X-File-Owner", url.PathEscape(f.Owner))
	h.Set("X-File-Created", f.Created.UTC().Format(time.RFC3339Nano))
	for k, v := range f.Custom {
		h.Set(MetaHeaderPrefix+k, v)
	}
}

// etagListMatches implements If-None-Match's weak comparison.
func etagListMatches(list, tag string) bool {
	for t := range strings.SplitSeq(list, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == tag {
			return true
		}
	}
	return false
}

// ifRangeHolds implements If-Range: the range applies when the header is
// absent, equals the strong ETag, or equals Last-Modified.
func ifRangeHolds(ifRange, tag, lastModified string) bool {
	ifRange = strings.TrimSpace(ifRange)
	switch {
	case ifRange == "":
		return true
	case strings.HasPrefix(ifRange, `"`):
		return ifRange == tag
	case strings.HasPrefix(ifRange, "W/"):
		return false
	}
	t, err := http.ParseTime(ifRange)
	lm, _ := http.ParseTime(lastModified)
	return err == nil && t.Equal(lm)
}
