// Package storage is the gateway's side of filestorage: uploads of videos,
// deletes, and downloads streamed straight to the client with the range and
// validator headers passed through. The gateway acts with its service
// token (Scope: it writes and deletes videos, reads and deletes MP3s);
// which user owns what is the jobs' business.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/audiomill/audiomill/filestorage/client"
	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/errs"
)

// Buckets the gateway uses.
const (
	VideoBucket = "videos"
	AudioBucket = "audio"
)

// Scope is what the gateway's service token needs of filestorage, and all
// it asks auth for: store users' videos (for the owner it names), see one
// stored (a resumable upload whose job a crash kept from being recorded)
// and delete them, read the MP3s the converter stored and delete them with
// their job.
func Scope() string {
	return strings.Join([]string{
		authn.StorageBucketScope(authn.StorageWrite, VideoBucket),
		authn.StorageBucketScope(authn.StorageRead, VideoBucket),
		authn.StorageBucketScope(authn.StorageDelete, VideoBucket),
		authn.StorageBucketScope(authn.StorageRead, AudioBucket),
		authn.StorageBucketScope(authn.StorageDelete, AudioBucket),
	}, " ")
}

// Storage talks to filestorage.
type Storage struct {
	c *client.Client
}

// New returns a Storage on c, a client with the gateway's service token.
func New(c *client.Client) *Storage {
	return &Storage{c: c}
}

// Upload streams body into bucket/path as owner's file (it counts against
// owner's quota) and returns the stored file.
func (s *Storage) Upload(ctx context.Context, bucket, path, owner string, body io.Reader, contentType string, meta map[string]string) (client.File, error) {
	f, err := s.c.Upload(ctx, bucket, path, body, client.UploadOptions{ContentType: contentType, Metadata: meta, Owner: owner})
	if err != nil {
		return client.File{}, refused(err, "upload to "+bucket)
	}
	return f, nil
}

// Stat returns the metadata of file id (its owner among them); a missing
// file is errs.NotFound.
func (s *Storage) Stat(ctx context.Context, id string) (client.File, error) {
	f, err := s.c.Stat(ctx, id)
	if err != nil {
		return client.File{}, refused(err, "stat file "+id)
	}
	return f, nil
}

// DeletePath deletes bucket/path if it exists (the partial of a failed upload).
func (s *Storage) DeletePath(ctx context.Context, bucket, path string) error {
	if _, err := s.c.DeletePath(ctx, bucket, path, false); err != nil && errs.CodeOf(err) != errs.NotFound {
		return refused(err, "delete "+bucket+"/"+path)
	}
	return nil
}

// Delete deletes the file id; a file already gone is not an error.
func (s *Storage) Delete(ctx context.Context, id string) error {
	if id == "" {
		return nil
	}
	if err := s.c.Delete(ctx, id); err != nil && errs.CodeOf(err) != errs.NotFound {
		return refused(err, "delete file "+id)
	}
	return nil
}

// passedRequest are the headers of a download request passed to filestorage.
var passedRequest = []string{"Range", "If-Range", "If-None-Match", "If-Match", "If-Modified-Since", "If-Unmodified-Since"}

// passedResponse are the headers of filestorage's answer passed to the client.
var passedResponse = []string{"Content-Type", "Content-Length", "Content-Range", "Accept-Ranges", "ETag", "Last-Modified", "Cache-Control"}

// Serve streams file id to w as filestorage answers it (200, 206, 304, 412,
// 416), passing r's range and validator headers through and naming the
// download name. A missing file is errs.NotFound; nothing is written then.
func (s *Storage) Serve(w http.ResponseWriter, r *http.Request, id, name string) error {
	method := http.MethodGet
	if r.Method == http.MethodHead {
		method = http.MethodHead
	}
	hdr := http.Header{}
	for _, h := range passedRequest {
		if v := r.Header.Values(h); len(v) > 0 {
			hdr[h] = v
		}
	}
	resp, err := s.c.Fetch(r.Context(), method, id, hdr)
	if err != nil {
		return errs.Wrap(err, errs.Unavailable, "file storage is unavailable")
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK, http.StatusPartialContent, http.StatusNotModified, http.StatusPreconditionFailed, http.StatusRequestedRangeNotSatisfiable:
	case http.StatusNotFound, http.StatusGone:
		return errs.E(errs.NotFound, "the MP3 is gone")
	case http.StatusUnauthorized:
		return errs.E(errs.Unavailable, "file storage refused the gateway's token; try again")
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		return errs.E(errs.Unavailable, "file storage is unavailable")
	default:
		return fmt.Errorf("storage: download %s: filestorage answered %d", id, resp.StatusCode)
	}
	for _, h := range passedResponse {
		if v := resp.Header.Values(h); len(v) > 0 {
			w.Header()[h] = v
		}
	}
	if name != "" {
		w.Header().Set("Content-Disposition", contentDisposition(name))
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body) // a client that goes away mid-download is not an error to report
	return nil
}

func contentDisposition(name string) string {
	ascii := strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return '_'
		}
		return r
	}, name)
	return fmt.Sprintf(`attachment; filename="%s"; filename*=UTF-8''%s`, ascii, url.PathEscape(name))
}

// refused keeps the code the client gave err, except when filestorage
// refused the request itself: the gateway asks with its own service token
// about paths it made, so that is no fault of the user's. A refused token
// (the client has had it dropped already) is worth a retry; any other
// refusal (invalid, forbidden, conflict) is the gateway's internal error.
func refused(err error, what string) error {
	var se *client.StatusError
	if !errors.As(err, &se) {
		return err
	}
	switch errs.CodeOf(err) {
	case errs.Unauthorized:
		return errs.Wrap(err, errs.Unavailable, "file storage refused the gateway's token; try again")
	case errs.Invalid, errs.Forbidden, errs.Conflict:
		return errs.Wrap(err, errs.Internal, "storage: %s", what)
	}
	return err
}
