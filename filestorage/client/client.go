// Package client is the Go client of audiomill's filestorage service, for
// the gateway, the converter and any internal app that stores files (see
// the package example: build a client, put a file, read it back).
//
//	c, err := client.New(client.Options{BaseURL: "http://127.0.0.1:8102", Token: tokens.Token})
//	f, err := c.Upload(ctx, "videos", "u42/clip.mp4", body, client.UploadOptions{ContentType: "video/mp4"})
//	d, err := c.Download(ctx, f.ID, client.Range{})
//	defer d.Close()
//
// The service is at a fixed base URL, or at the base URLs a Picker gives,
// one per request: platform/consul's Resolver.Picker gives passing
// instances from memory, so no request costs a Consul round trip. A
// service builds its client from its environment with ConfigFromEnv and
// Config.New.
//
// Errors carry platform/errs codes (errs.CodeOf): an error answer of the
// service keeps the service's code and message (invalid, unauthorized,
// forbidden, not_found, conflict, too_large), with a *StatusError (the
// HTTP status) as its cause; errs.Unavailable means the service could not
// be found or reached, failed (5xx) or cut its answer short.
package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/audiomill/audiomill/platform/errs"
)

// ServiceName is filestorage's name in Consul.
const ServiceName = "filestorage"

// Picker gives the base URL ("http://host:port") of an instance of the
// service, once per request. platform/consul's Resolver.Picker is one;
// any other discovery fits.
type Picker interface {
	Pick(ctx context.Context) (string, error)
}

// PickerFunc is a func that is a Picker.
type PickerFunc func(ctx context.Context) (string, error)

// Pick calls f.
func (f PickerFunc) Pick(ctx context.Context) (string, error) { return f(ctx) }

// Options configure a Client. Set BaseURL or Picker.
type Options struct {
	// BaseURL is the service's address ("http://127.0.0.1:8102").
	BaseURL string
	// Picker finds the service, for each request, when BaseURL is empty.
	Picker Picker
	// Token returns the bearer token of each request.
	Token func(ctx context.Context) (string, error)
	// OnUnauthorized, when set, is called each time the service refuses the
	// token (401), so that Token gives a new one next time (for instance
	// authn.TokenSource.Invalidate).
	OnUnauthorized func()
	// HTTPClient sends the requests (a client without an overall timeout
	// when nil: uploads and downloads may take long; use contexts).
	HTTPClient *http.Client
}

// Client talks to filestorage. It is safe for concurrent use.
type Client struct {
	base    string
	picker  Picker
	token   func(ctx context.Context) (string, error)
	refused func()
	http    *http.Client
}

// New returns a Client for opts.
func New(opts Options) (*Client, error) {
	if opts.BaseURL == "" && opts.Picker == nil {
		return nil, errors.New("filestorage client: BaseURL or Picker is required")
	}
	if opts.Token == nil {
		return nil, errors.New("filestorage client: Token is required")
	}
	c := &Client{
		base: strings.TrimSuffix(opts.BaseURL, "/"), picker: opts.Picker,
		token: opts.Token, refused: opts.OnUnauthorized, http: opts.HTTPClient,
	}
	if c.refused == nil {
		c.refused = func() {}
	}
	if c.http == nil {
		c.http = &http.Client{}
	}
	return c, nil
}

// StaticToken returns a Token function that always gives token.
func StaticToken(token string) func(context.Context) (string, error) {
	return func(context.Context) (string, error) { return token, nil }
}

// File is a stored file's metadata, as the service describes it.
type File struct {
	// ID is stable for the file's life: moving changes Path, never ID.
	ID     string `json:"id"`
	Bucket string `json:"bucket"`
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	// SHA256 is the lowercase hex SHA-256 of the content.
	SHA256      string    `json:"sha256"`
	ContentType string    `json:"content_type"`
	Created     time.Time `json:"created"`
	// Owner is whose file it is (whose quota it counts against).
	Owner string `json:"owner"`
	// Custom is the metadata stored with the file (keys lowercased).
	Custom map[string]string `json:"custom,omitempty"`
}

func (c *Client) baseURL(ctx context.Context) (string, error) {
	if c.base != "" {
		return c.base, nil
	}
	base, err := c.picker.Pick(ctx)
	if err != nil {
		return "", unavailable(fmt.Errorf("filestorage client: find the service: %w", err))
	}
	return strings.TrimSuffix(base, "/"), nil
}

// request builds a request to path (already escaped) with the token.
func (c *Client) request(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	base, err := c.baseURL(ctx)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, body)
	if err != nil {
		return nil, fmt.Errorf("filestorage client: %w", err)
	}
	tok, err := c.token(ctx)
	if err != nil {
		return nil, fmt.Errorf("filestorage client: token: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	return req, nil
}

// send sends req, telling OnUnauthorized when the service refused the token.
func (c *Client) send(req *http.Request) (*http.Response, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, errs.Wrap(fmt.Errorf("filestorage client: %s %s: %w", req.Method, req.URL.Path, err),
			errs.Unavailable, unavailableMessage)
	}
	if resp.StatusCode == http.StatusUnauthorized {
		c.refused()
	}
	return resp, nil
}

// do sends req and turns an error status into the error of the answer
// (closing the body).
func (c *Client) do(req *http.Request, ok ...int) (*http.Response, error) {
	resp, err := c.send(req)
	if err != nil {
		return nil, err
	}
	for _, s := range ok {
		if resp.StatusCode == s {
			return resp, nil
		}
	}
	defer resp.Body.Close()
	return nil, answerError(req, resp)
}

// decodeJSON decodes the body of a successful answer into v; an answer cut
// short is errs.Unavailable.
func decodeJSON(resp *http.Response, v any) error {
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return cutShort(fmt.Errorf("filestorage client: decode %s: %w", resp.Request.URL.Path, err))
	}
	return nil
}

// escapePath escapes each segment of a file path.
func escapePath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

func filePath(bucket, path string) string {
	return "/v1/buckets/" + url.PathEscape(bucket) + "/files/" + escapePath(path)
}

// UploadOptions tune Upload.
type UploadOptions struct {
	ContentType string
	// Size is the body's length when known (sent as Content-Length, so an
	// oversize upload is refused before it starts); -1 or 0 means unknown
	// unless the body is a *bytes.Reader, *bytes.Buffer or *strings.Reader.
	Size int64
	// SHA256, when set, is sent as Content-Digest and verified by the
	// service (a mismatch stores nothing: errs.Invalid).
	SHA256 []byte
	// IdempotencyKey makes a retried upload return the first result.
	IdempotencyKey string
	// IfAbsent fails with errs.Conflict when the path exists.
	IfAbsent bool
	// Metadata is stored with the file (keys are lowercased).
	Metadata map[string]string
	// Owner, with a storage:admin token, makes the file that owner's (and
	// counts it against the owner's quota); empty: the token's subject.
	Owner string
}

// Upload streams body to bucket/path in one request and returns the
// stored file. It replaces a file at path unless opts.IfAbsent.
func (c *Client) Upload(ctx context.Context, bucket, path string, body io.Reader, opts UploadOptions) (File, error) {
	req, err := c.request(ctx, http.MethodPut, filePath(bucket, path), body)
	if err != nil {
		return File{}, err
	}
	if opts.Size > 0 {
		req.ContentLength = opts.Size
	}
	if opts.ContentType != "" {
		req.Header.Set("Content-Type", opts.ContentType)
	}
	if len(opts.SHA256) > 0 {
		req.Header.Set("Content-Digest", "sha-256=:"+base64.StdEncoding.EncodeToString(opts.SHA256)+":")
	}
	if opts.IdempotencyKey != "" {
		req.Header.Set("Idempotency-Key", opts.IdempotencyKey)
	}
	if opts.IfAbsent {
		req.Header.Set("If-None-Match", "*")
	}
	if opts.Owner != "" {
		req.Header.Set("X-Owner", opts.Owner)
	}
	for k, v := range opts.Metadata {
		req.Header.Set("X-Meta-"+k, v)
	}
	resp, err := c.do(req, http.StatusCreated)
	if err != nil {
		return File{}, err
	}
	var f File
	return f, decodeJSON(resp, &f)
}

// Range selects part of a file: Length bytes from Offset (Length 0: to the
// end). The zero Range is the whole file.
type Range struct {
	Offset, Length int64
}

func (r Range) header() string {
	switch {
	case r.Offset == 0 && r.Length <= 0:
		return ""
	case r.Length <= 0:
		return fmt.Sprintf("bytes=%d-", r.Offset)
	}
	return fmt.Sprintf("bytes=%d-%d", r.Offset, r.Offset+r.Length-1)
}

// Download is a file being read; close it.
type Download struct {
	io.ReadCloser
	// File describes the whole file.
	File File
	// Offset and Length are the part being read.
	Offset, Length int64
}

// downloadBuffer is the size of the reads WriteTo makes: a 1 GiB download
// into io.Discard moved 1.5 GB/s with io.Copy's 8 KiB reads and 3.3-5.3 GB/s
// with 1 MiB ones (loopback, the server sending from the page cache).
const downloadBuffer = 1 << 20

// WriteTo copies the rest of the download to w in reads of 1 MiB, so that
// io.Copy(w, d) reads the connection in large pieces whatever w is
// (io.Discard and *os.File would otherwise read 8 or 32 KiB at a time).
func (d *Download) WriteTo(w io.Writer) (int64, error) {
	return io.CopyBuffer(struct{ io.Writer }{w}, struct{ io.Reader }{d.ReadCloser}, make([]byte, downloadBuffer))
}

// Download reads the file with id (or the part r selects).
func (c *Client) Download(ctx context.Context, id string, r Range) (*Download, error) {
	return c.download(ctx, http.MethodGet, "/v1/files/"+url.PathEscape(id), r)
}

// Fetch sends a GET or HEAD for the file id with hdr (a range, validators)
// and returns filestorage's answer as it is, whatever its status: for a
// caller that passes a download on, such as a proxy. The caller closes the
// body. The error is for a request that got no answer.
func (c *Client) Fetch(ctx context.Context, method, id string, hdr http.Header) (*http.Response, error) {
	req, err := c.request(ctx, method, "/v1/files/"+url.PathEscape(id), nil)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	return c.send(req)
}

// DownloadPath reads the file at bucket/path (or the part r selects).
func (c *Client) DownloadPath(ctx context.Context, bucket, path string, r Range) (*Download, error) {
	return c.download(ctx, http.MethodGet, filePath(bucket, path), r)
}

// Stat returns the metadata of the file with id.
func (c *Client) Stat(ctx context.Context, id string) (File, error) {
	d, err := c.download(ctx, http.MethodHead, "/v1/files/"+url.PathEscape(id), Range{})
	if err != nil {
		return File{}, err
	}
	return d.File, nil
}

// StatPath returns the metadata of the file at bucket/path.
func (c *Client) StatPath(ctx context.Context, bucket, path string) (File, error) {
	d, err := c.download(ctx, http.MethodHead, filePath(bucket, path), Range{})
	if err != nil {
		return File{}, err
	}
	return d.File, nil
}

func (c *Client) download(ctx context.Context, method, path string, r Range) (*Download, error) {
	req, err := c.request(ctx, method, path, nil)
	if err != nil {
		return nil, err
	}
	if h := r.header(); h != "" {
		req.Header.Set("Range", h)
	}
	resp, err := c.do(req, http.StatusOK, http.StatusPartialContent)
	if err != nil {
		return nil, err
	}
	d := &Download{ReadCloser: resp.Body, File: fileFromHeaders(resp.Header), Length: resp.ContentLength}
	d.File.Size = resp.ContentLength
	if resp.StatusCode == http.StatusPartialContent {
		var start, end, size int64
		if _, err := fmt.Sscanf(resp.Header.Get("Content-Range"), "bytes %d-%d/%d", &start, &end, &size); err != nil {
			resp.Body.Close()
			return nil, fmt.Errorf("filestorage client: bad Content-Range %q", resp.Header.Get("Content-Range"))
		}
		d.Offset, d.File.Size = start, size
	}
	return d, nil
}

func fileFromHeaders(h http.Header) File {
	f := File{
		ID: h.Get("X-File-Id"), Bucket: h.Get("X-File-Bucket"), ContentType: h.Get("Content-Type"),
		SHA256: strings.Trim(h.Get("ETag"), `"`),
	}
	f.Path, _ = url.PathUnescape(h.Get("X-File-Path"))
	f.Owner, _ = url.PathUnescape(h.Get("X-File-Owner"))
	f.Created, _ = time.Parse(time.RFC3339Nano, h.Get("X-File-Created"))
	for k, v := range h {
		if name, ok := strings.CutPrefix(k, "X-Meta-"); ok {
			if f.Custom == nil {
				f.Custom = map[string]string{}
			}
			f.Custom[strings.ToLower(name)] = v[0]
		}
	}
	return f
}

// Entry is one item of a listing: a file, or a folder (Prefix).
type Entry struct {
	File   *File
	Prefix string
}

// ListOptions select a listing.
type ListOptions struct {
	Prefix string
	// Delimiter "/" lists one folder level (deeper paths as Prefix entries).
	Delimiter string
	// PageSize is how many entries each request asks for (service default when 0).
	PageSize int
}

// List iterates over a bucket's folder view, sorted by path, fetching pages
// as it goes. It stops at the first error, which it yields.
func (c *Client) List(ctx context.Context, bucket string, opts ListOptions) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		cursor := ""
		for {
			q := url.Values{}
			if opts.Prefix != "" {
				q.Set("prefix", opts.Prefix)
			}
			if opts.Delimiter != "" {
				q.Set("delimiter", opts.Delimiter)
			}
			if opts.PageSize > 0 {
				q.Set("limit", strconv.Itoa(opts.PageSize))
			}
			if cursor != "" {
				q.Set("cursor", cursor)
			}
			page, err := c.listPage(ctx, bucket, q)
			if err != nil {
				yield(Entry{}, err)
				return
			}
			// Files and folders of a page interleave in path order.
			fi, pi := 0, 0
			for fi < len(page.Files) || pi < len(page.Prefixes) {
				var e Entry
				if pi >= len(page.Prefixes) || fi < len(page.Files) && page.Files[fi].Path < page.Prefixes[pi] {
					e = Entry{File: &page.Files[fi]}
					fi++
				} else {
					e = Entry{Prefix: page.Prefixes[pi]}
					pi++
				}
				if !yield(e, nil) {
					return
				}
			}
			if cursor = page.NextCursor; cursor == "" {
				return
			}
		}
	}
}

type listPage struct {
	Files      []File   `json:"files"`
	Prefixes   []string `json:"prefixes"`
	NextCursor string   `json:"next_cursor"`
}

func (c *Client) listPage(ctx context.Context, bucket string, q url.Values) (listPage, error) {
	var page listPage
	req, err := c.request(ctx, http.MethodGet, "/v1/buckets/"+url.PathEscape(bucket)+"/files?"+q.Encode(), nil)
	if err != nil {
		return page, err
	}
	resp, err := c.do(req, http.StatusOK)
	if err != nil {
		return page, err
	}
	return page, decodeJSON(resp, &page)
}

// Move moves a file or a folder within bucket and returns how many files
// moved. errs.Conflict when a target exists and !overwrite (nothing moves).
func (c *Client) Move(ctx context.Context, bucket, from, to string, overwrite bool) (int, error) {
	body, _ := json.Marshal(map[string]any{"from": from, "to": to, "overwrite": overwrite})
	req, err := c.request(ctx, http.MethodPost, "/v1/buckets/"+url.PathEscape(bucket)+"/move", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.do(req, http.StatusOK)
	if err != nil {
		return 0, err
	}
	var out struct {
		Moved int `json:"moved"`
	}
	return out.Moved, decodeJSON(resp, &out)
}

// Delete deletes the file with id.
func (c *Client) Delete(ctx context.Context, id string) error {
	req, err := c.request(ctx, http.MethodDelete, "/v1/files/"+url.PathEscape(id), nil)
	if err != nil {
		return err
	}
	resp, err := c.do(req, http.StatusNoContent)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// DeletePath deletes the file at bucket/path, or with recursive every file
// under the folder path; it returns how many files were deleted.
func (c *Client) DeletePath(ctx context.Context, bucket, path string, recursive bool) (int, error) {
	p := filePath(bucket, path)
	if recursive {
		p += "?recursive=true"
	}
	req, err := c.request(ctx, http.MethodDelete, p, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.do(req, http.StatusNoContent, http.StatusOK)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode == http.StatusNoContent {
		return 1, resp.Body.Close()
	}
	var out struct {
		Deleted int `json:"deleted"`
	}
	return out.Deleted, decodeJSON(resp, &out)
}

// BucketStats summarises a bucket.
type BucketStats struct {
	Name  string `json:"name"`
	Files int64  `json:"files"`
	Bytes int64  `json:"bytes"`
}

// Buckets lists the buckets (the caller's own files unless it is an admin).
func (c *Client) Buckets(ctx context.Context) ([]BucketStats, error) {
	req, err := c.request(ctx, http.MethodGet, "/v1/buckets", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(req, http.StatusOK)
	if err != nil {
		return nil, err
	}
	var out struct {
		Buckets []BucketStats `json:"buckets"`
	}
	return out.Buckets, decodeJSON(resp, &out)
}

// SHA256 returns the SHA-256 of r's content, for UploadOptions.SHA256.
func SHA256(r io.Reader) ([]byte, error) {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}
