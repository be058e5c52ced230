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
		return e.Status == http.StatusConflict || e.Status == http.StatusLocked || e.Status >= 500 || e.Status == 460
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

func tusHeaders(req *http.Request) { req.Header.Set("Tus-Resumable", "1.0.0") }

func (c *Client) tusCreate(ctx context.Context, bucket, path string, size int64, opts ResumableOptions) (string, string, error) {
	req, err := c.request(ctx, http.MethodPost, "/v1/buckets/"+url.PathEscape(bucket)+"/uploads/", nil)
	if err != nil {
		return "", "", err
	}
	tusHeaders(req)
	req.Header.Set("Upload-Length", strconv.FormatInt(size, 10))
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
		return "", "", err
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if loc == "" {
		return "", "", errors.New("filestorage client: tus creation without Location")
	}
	return loc, resp.Header.Get("X-File-Id"), nil
}

// tusOffset asks where the upload stands.
func (c *Client) tusOffset(ctx context.Context, loc string) (int64, error) {
	req, err := c.request(ctx, http.MethodHead, loc, nil)
	if err != nil {
		return 0, err
	}
	tusHeaders(req)
	resp, err := c.do(req, http.StatusOK)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	o, err := strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("filestorage client: bad Upload-Offset %q", resp.Header.Get("Upload-Offset"))
	}
	return o, nil
}

func (c *Client) tusPatch(ctx context.Context, loc string, offset int64, part []byte) (int64, string, error) {
	req, err := c.request(ctx, http.MethodPatch, loc, bytes.NewReader(part))
	if err != nil {
		return 0, "", err
	}
	tusHeaders(req)
	sum := sha256.Sum256(part)
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	req.Header.Set("Upload-Offset", strconv.FormatInt(offset, 10))
	req.Header.Set("Upload-Checksum", "sha256 "+base64.StdEncoding.EncodeToString(sum[:]))
	resp, err := c.do(req, http.StatusNoContent)
	if err != nil {
		return 0, "", err
	}
	resp.Body.Close()
	o, err := strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
	if err != nil {
		return 0, "", fmt.Errorf("filestorage client: bad Upload-Offset %q", resp.Header.Get("Upload-Offset"))
	}
	return o, resp.Header.Get("X-File-Id"), nil
}
