package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Defaults of ResumableOptions.
const (
	DefaultPartSize   = 16 << 20
	DefaultMaxRetries = 8
)

// ResumableOptions tune UploadResumable.
type ResumableOptions struct {
	ContentType string
	Metadata    map[string]string
	// PartSize is the most bytes one PATCH carries (DefaultPartSize).
	PartSize int64
	// MaxRetries is how many failures in a row are tolerated before giving
	// up (DefaultMaxRetries); progress resets the count.
	MaxRetries int
	// UploadURL resumes an upload begun earlier (Upload.URL) instead of
	// creating one.
	UploadURL string
	// OnCreate is told the new upload's URL, to resume it in another process.
	OnCreate func(uploadURL string)
}

// UploadResumable uploads size bytes of r to bucket/path with the tus
// protocol. A dropped connection or a failing instance does not lose the
// upload: it asks the service where it stands and resumes from there,
// seeking r back. Every part carries a SHA-256 checksum.
func (c *Client) UploadResumable(ctx context.Context, bucket, path string, r io.ReadSeeker, size int64, opts ResumableOptions) (File, error) {
	if opts.PartSize <= 0 {
		opts.PartSize = DefaultPartSize
	}
	if opts.MaxRetries <= 0 {
		opts.MaxRetries = DefaultMaxRetries
	}
	loc := opts.UploadURL
	if loc == "" {
		var id string
		var err error
		if loc, id, err = c.tusCreate(ctx, bucket, path, size, opts); err != nil {
			return File{}, err
		}
		if id != "" { // an empty file is stored at once
			return c.Stat(ctx, id)
		}
		if opts.OnCreate != nil {
			opts.OnCreate(loc)
		}
	}
	failures := 0
	offset := int64(-1)
	buf := make([]byte, min(opts.PartSize, max(size, 1)))
	for {
		if offset < 0 {
			o, err := c.tusOffset(ctx, loc)
			if err != nil {
				if !retryable(err) || failures >= opts.MaxRetries {
					return File{}, err
				}
				failures++
				if err := sleep(ctx, failures); err != nil {
					return File{}, err
				}
				continue
			}
			offset = o
		}
		if offset == size && size > 0 {
			return File{}, fmt.Errorf("filestorage client: upload %s is whole but not stored", loc)
		}
		if _, err := r.Seek(offset, io.SeekStart); err != nil {
			return File{}, fmt.Errorf("filestorage client: seek to %d: %w", offset, err)
		}
		n, err := io.ReadFull(r, buf[:min(int64(len(buf)), size-offset)])
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !(errors.Is(err, io.EOF) && size == 0) {
			return File{}, fmt.Errorf("filestorage client: read at %d: %w", offset, err)
		}
		newOffset, id, err := c.tusPatch(ctx, loc, offset, buf[:n])
		switch {
		case err == nil:
			failures = 0
			offset = newOffset
			if id != "" {
				return c.Stat(ctx, id)
			}
		case retryable(err) && failures < opts.MaxRetries:
			failures++
			offset = -1 // ask the service
			if err := sleep(ctx, failures); err != nil {
				return File{}, err
			}
		default:
			return File{}, err
		}
	}
}

// retryable: a transport failure, a conflict over the offset, or the
// service being unavailable.
func retryable(err error) bool {
	var e *StatusError
	if errors.As(err, &e) {
		return e.Status == http.StatusConflict || e.Status == http.StatusLocked || e.Status >= 500 || e.Status == 460 // tus.StatusChecksumMismatch (the client stays free of the servers' packages)
	}
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

func sleep(ctx context.Context, failures int) error {
	d := min(time.Duration(1<<min(failures, 6))*100*time.Millisecond, 5*time.Second)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// TusUpload is where a resumable (tus) upload stands, as the service
// answers it.
type TusUpload struct {
	// URL is the upload's path on the service (its creation's Location),
	// valid on every instance.
	URL string
	// Offset is how many bytes the service holds; Length the upload's
	// declared size (-1 when the answer did not say).
	Offset, Length int64
	// Expires is when the service drops the unfinished upload (zero when
	// the answer did not say).
	Expires time.Time
	// FileID is the stored file's id, once the upload is whole and stored.
	FileID string
}

// TusCreateOptions describe a resumable upload to CreateUpload.
type TusCreateOptions struct {
	// Length is the upload's size in bytes.
	Length      int64
	ContentType string
	// Metadata is stored with the file (keys are lowercased).
	Metadata map[string]string
	// Owner, with a token that may name owners, makes the file that
	// owner's (X-Owner); the requests on the upload must name it too.
	Owner string
}

func tusHeaders(req *http.Request, owner string) {
	req.Header.Set("Tus-Resumable", "1.0.0")
	if owner != "" {
		req.Header.Set("X-Owner", owner)
	}
}

// tusState reads an answer's Upload-Offset, Upload-Length, Upload-Expires
// and X-File-Id.
func tusState(loc string, resp *http.Response) (TusUpload, error) {
	u := TusUpload{URL: loc, Length: -1, FileID: resp.Header.Get("X-File-Id")}
	if v := resp.Header.Get("Upload-Offset"); v != "" || resp.Request.Method != http.MethodPost {
		o, err := strconv.ParseInt(v, 10, 64)
		if err != nil || o < 0 {
			return TusUpload{}, fmt.Errorf("filestorage client: bad Upload-Offset %q", v)
		}
		u.Offset = o
	}
	if n, err := strconv.ParseInt(resp.Header.Get("Upload-Length"), 10, 64); err == nil {
		u.Length = n
	}
	if t, err := http.ParseTime(resp.Header.Get("Upload-Expires")); err == nil {
		u.Expires = t
	}
	return u, nil
}

// CreateUpload creates a resumable upload of opts.Length bytes to
// bucket/path (tus creation) and returns it; an empty one is stored at once
// (FileID set).
func (c *Client) CreateUpload(ctx context.Context, bucket, path string, opts TusCreateOptions) (TusUpload, error) {
	req, err := c.request(ctx, http.MethodPost, "/v1/buckets/"+url.PathEscape(bucket)+"/uploads/", nil)
	if err != nil {
		return TusUpload{}, err
	}
	tusHeaders(req, opts.Owner)
	req.Header.Set("Upload-Length", strconv.FormatInt(opts.Length, 10))
	meta := []string{"path " + base64.StdEncoding.EncodeToString([]byte(path))}
	if opts.ContentType != "" {
		meta = append(meta, "contentType "+base64.StdEncoding.EncodeToString([]byte(opts.ContentType)))
	}
	for k, v := range opts.Metadata {
		meta = append(meta, k+" "+base64.StdEncoding.EncodeToString([]byte(v)))
	}
	req.Header.Set("Upload-Metadata", strings.Join(meta, ","))
	resp, err := c.do(req, http.StatusCreated)
	if err != nil {
		return TusUpload{}, err
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if loc == "" {
		return TusUpload{}, errors.New("filestorage client: tus creation without Location")
	}
	u, err := tusState(loc, resp)
	u.Length = opts.Length
	return u, err
}

// UploadStatus asks where the upload at loc stands (tus HEAD). A missing or
// expired upload (or a stored one: the service forgets an upload once its
// file is stored) is errs.NotFound.
func (c *Client) UploadStatus(ctx context.Context, loc, owner string) (TusUpload, error) {
	req, err := c.request(ctx, http.MethodHead, loc, nil)
	if err != nil {
		return TusUpload{}, err
	}
	tusHeaders(req, owner)
	resp, err := c.do(req, http.StatusOK)
	if err != nil {
		return TusUpload{}, err
	}
	resp.Body.Close()
	return tusState(loc, resp)
}

// AppendUpload sends body, size bytes (-1: unknown), to the upload at loc
// at offset (tus PATCH), with checksum as its Upload-Checksum ("" for
// none), and returns where the upload then stands (FileID set when it
// became whole and was stored). The body streams: nothing of it is held.
// The service's refusals keep their status in the error's *StatusError:
// 409 (offset), 423 (another request appends), 460 (checksum), 404/410.
func (c *Client) AppendUpload(ctx context.Context, loc, owner string, offset int64, body io.Reader, size int64, checksum string) (TusUpload, error) {
	req, err := c.request(ctx, http.MethodPatch, loc, body)
	if err != nil {
		return TusUpload{}, err
	}
	if size >= 0 {
		req.ContentLength = size
		if size == 0 {
			req.Body = http.NoBody
		}
	}
	tusHeaders(req, owner)
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	req.Header.Set("Upload-Offset", strconv.FormatInt(offset, 10))
	if checksum != "" {
		req.Header.Set("Upload-Checksum", checksum)
	}
	resp, err := c.do(req, http.StatusNoContent)
	if err != nil {
		return TusUpload{}, err
	}
	resp.Body.Close()
	return tusState(loc, resp)
}

// TerminateUpload deletes the unfinished upload at loc (tus termination);
// one already gone is errs.NotFound.
func (c *Client) TerminateUpload(ctx context.Context, loc, owner string) error {
	req, err := c.request(ctx, http.MethodDelete, loc, nil)
	if err != nil {
		return err
	}
	tusHeaders(req, owner)
	resp, err := c.do(req, http.StatusNoContent)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

func (c *Client) tusCreate(ctx context.Context, bucket, path string, size int64, opts ResumableOptions) (string, string, error) {
	u, err := c.CreateUpload(ctx, bucket, path, TusCreateOptions{Length: size, ContentType: opts.ContentType, Metadata: opts.Metadata})
	return u.URL, u.FileID, err
}

// tusOffset asks where the upload stands.
func (c *Client) tusOffset(ctx context.Context, loc string) (int64, error) {
	u, err := c.UploadStatus(ctx, loc, "")
	return u.Offset, err
}

func (c *Client) tusPatch(ctx context.Context, loc string, offset int64, part []byte) (int64, string, error) {
	sum := sha256.Sum256(part)
	u, err := c.AppendUpload(ctx, loc, "", offset, bytes.NewReader(part), int64(len(part)),
		"sha256 "+base64.StdEncoding.EncodeToString(sum[:]))
	return u.Offset, u.FileID, err
}
