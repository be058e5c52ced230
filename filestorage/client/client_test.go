package client_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/audiomill/audiomill/filestorage/client"
	"github.com/audiomill/audiomill/filestorage/internal/filestoragetest"
	"github.com/audiomill/audiomill/filestorage/internal/store/storetest"
	"github.com/audiomill/audiomill/platform/consul"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/testenv"
)

func newClient(t *testing.T, s *filestoragetest.Service, subject string, scopes ...string) *client.Client {
	t.Helper()
	c, err := client.New(client.Options{BaseURL: s.URL, Token: client.StaticToken(s.Token(t, subject, scopes...))})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestClient(t *testing.T) {
	s := filestoragetest.Start(t, "gridfs", map[string]string{"FILESTORAGE_MAX_OBJECT_SIZE": "1MiB", "FILESTORAGE_CHUNK_SIZE": "4KiB"})
	c := newClient(t, s, "alice", "storage")
	ctx := testenv.Context(t, 60*time.Second)
	data := storetest.Data(100_000, 1)
	sum := sha256.Sum256(data)

	f, err := c.Upload(ctx, "docs", "dir/a b.bin", bytes.NewReader(data), client.UploadOptions{
		ContentType: "application/x-test", SHA256: sum[:], IdempotencyKey: "once", Metadata: map[string]string{"Origin": "test"},
	})
	if err != nil || f.Size != 100_000 || f.Path != "dir/a b.bin" || f.Custom["origin"] != "test" {
		t.Fatalf("upload = %+v, %v", f, err)
	}
	again, err := c.Upload(ctx, "docs", "dir/a b.bin", bytes.NewReader(data), client.UploadOptions{IdempotencyKey: "once"})
	if err != nil || again.ID != f.ID {
		t.Fatalf("idempotent retry = %+v, %v", again, err)
	}
	st, err := c.Stat(ctx, f.ID)
	if err != nil || st.Path != f.Path || st.Size != f.Size || st.SHA256 != f.SHA256 || st.Owner != "alice" || st.Custom["origin"] != "test" || st.ContentType != "application/x-test" || !st.Created.Equal(f.Created) {
		t.Fatalf("stat = %+v, %v (want %+v)", st, err, f)
	}
	d, err := c.Download(ctx, f.ID, client.Range{Offset: 5000, Length: 10})
	if err != nil {
		t.Fatal(err)
	}
	part, _ := io.ReadAll(d)
	d.Close()
	if !bytes.Equal(part, data[5000:5010]) || d.Offset != 5000 || d.File.Size != 100_000 {
		t.Fatalf("range = %d bytes at %d of %d", len(part), d.Offset, d.File.Size)
	}
	// Fetch passes headers and statuses through untouched (a proxy's read).
	resp, err := c.Fetch(ctx, http.MethodGet, f.ID, http.Header{"If-None-Match": {`"` + f.SHA256 + `"`}})
	if err != nil || resp.StatusCode != http.StatusNotModified {
		t.Fatalf("conditional fetch = %v, %v; want 304", resp, err)
	}
	resp.Body.Close()
	resp, err = c.Fetch(ctx, http.MethodGet, f.ID, http.Header{"Range": {"bytes=10-19"}})
	if err != nil || resp.StatusCode != http.StatusPartialContent {
		t.Fatalf("range fetch = %v, %v; want 206", resp, err)
	}
	part, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(part, data[10:20]) {
		t.Fatalf("range fetch read %q", part)
	}
	d, err = c.DownloadPath(ctx, "docs", "dir/a b.bin", client.Range{})
	if err != nil {
		t.Fatal(err)
	}
	all, _ := io.ReadAll(d)
	d.Close()
	if !bytes.Equal(all, data) {
		t.Fatal("download differs")
	}
	// io.Copy goes through Download.WriteTo (1 MiB reads): the same bytes.
	d, err = c.Download(ctx, f.ID, client.Range{Offset: 1})
	if err != nil {
		t.Fatal(err)
	}
	var copied bytes.Buffer
	n, err := io.Copy(&copied, d)
	d.Close()
	if err != nil || n != int64(len(data)-1) || !bytes.Equal(copied.Bytes(), data[1:]) {
		t.Fatalf("io.Copy of the download from offset 1: %d bytes, %v; equal %v", n, err, bytes.Equal(copied.Bytes(), data[1:]))
	}

	for _, p := range []string{"dir/b", "dir/sub/c", "e", "f/g"} {
		if _, err := c.Upload(ctx, "docs", p, bytes.NewReader([]byte(p)), client.UploadOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var seen []string
	for e, err := range c.List(ctx, "docs", client.ListOptions{Delimiter: "/", Prefix: "dir/", PageSize: 1}) {
		if err != nil {
			t.Fatal(err)
		}
		if e.File != nil {
			seen = append(seen, e.File.Path)
		} else {
			seen = append(seen, e.Prefix)
		}
	}
	if !slices.Equal(seen, []string{"dir/a b.bin", "dir/b", "dir/sub/"}) {
		t.Fatalf("list = %v", seen)
	}
	if n, err := c.Move(ctx, "docs", "dir", "moved", false); err != nil || n != 3 {
		t.Fatalf("move = %d, %v", n, err)
	}
	if st, err := c.Stat(ctx, f.ID); err != nil || st.Path != "moved/a b.bin" {
		t.Fatalf("stat after move = %+v, %v", st, err)
	}
	if n, err := c.DeletePath(ctx, "docs", "moved", true); err != nil || n != 3 {
		t.Fatalf("delete folder = %d, %v", n, err)
	}
	buckets, err := c.Buckets(ctx)
	if err != nil || len(buckets) != 1 || buckets[0].Files != 2 {
		t.Fatalf("buckets = %+v, %v", buckets, err)
	}

	// Typed errors.
	_, err = c.Stat(ctx, f.ID)
	wantErr(t, err, errs.NotFound, 404)
	_, err = c.Upload(ctx, "docs", "e", bytes.NewReader(nil), client.UploadOptions{IfAbsent: true})
	wantErr(t, err, errs.Conflict, 412)
	_, err = c.Upload(ctx, "docs", "big", bytes.NewReader(make([]byte, 2<<20)), client.UploadOptions{})
	wantErr(t, err, errs.TooLarge, 413)
	_, err = c.Upload(ctx, "docs", "../x", bytes.NewReader(nil), client.UploadOptions{})
	wantErr(t, err, errs.Invalid, 400)
	_, err = c.Move(ctx, "docs", "e", "f/g", false)
	wantErr(t, err, errs.Conflict, 409)
	refused := 0
	bad, _ := client.New(client.Options{BaseURL: s.URL, Token: client.StaticToken("nope"), OnUnauthorized: func() { refused++ }})
	_, err = bad.Buckets(ctx)
	wantErr(t, err, errs.Unauthorized, 401)
	if resp, err := bad.Fetch(ctx, http.MethodGet, f.ID, nil); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("fetch with a refused token = %v, %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if refused != 2 {
		t.Fatalf("OnUnauthorized called %d times for 2 refusals", refused)
	}
	// To bob, who holds no file in it, alice's bucket and her files are
	// missing.
	bob := newClient(t, s, "bob", "storage")
	for e, err := range bob.List(ctx, "docs", client.ListOptions{}) {
		if e.File != nil || e.Prefix != "" || err == nil {
			t.Fatalf("bob sees %+v, %v", e, err)
		}
		wantErr(t, err, errs.NotFound, 404)
	}
	eFile, _ := c.StatPath(ctx, "docs", "e")
	_, err = bob.Download(ctx, eFile.ID, client.Range{})
	wantErr(t, err, errs.NotFound, 404)
	// A token without scope storage may not use the API.
	_, err = newClient(t, s, "alice").Buckets(ctx)
	wantErr(t, err, errs.Forbidden, 403)
}

// wantErr: err is the service's answer status with code and its message.
func wantErr(t *testing.T, err error, code errs.Code, status int) {
	t.Helper()
	var e *client.StatusError
	if errs.CodeOf(err) != code || !errors.As(err, &e) || e.Status != status || e.Code != code ||
		e.Message == "" || errs.MessageOf(err) != e.Message {
		t.Fatalf("err = %v, want %s (%d) with the service's message", err, code, status)
	}
}

// cutOnce cuts the body of the first PATCH after limit bytes, like a
// dropped connection.
type cutOnce struct {
	base  http.RoundTripper
	limit int64
	cuts  atomic.Int32
}

func (c *cutOnce) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPatch && c.cuts.Add(1) == 1 {
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(io.MultiReader(io.LimitReader(req.Body, c.limit), failing{}))
	}
	return c.base.RoundTrip(req)
}

type failing struct{}

func (failing) Read([]byte) (int, error) { return 0, errors.New("connection dropped") }

func TestUploadResumableSurvivesADroppedConnection(t *testing.T) {
	for _, backend := range []string{"gridfs", "disk"} {
		t.Run(backend, func(t *testing.T) {
			s := filestoragetest.Start(t, backend, map[string]string{"FILESTORAGE_CHUNK_SIZE": "16KiB"})
			rt := &cutOnce{base: http.DefaultTransport, limit: 300_000}
			c, err := client.New(client.Options{BaseURL: s.URL, Token: client.StaticToken(s.Token(t, "alice", "storage")), HTTPClient: &http.Client{Transport: rt}})
			if err != nil {
				t.Fatal(err)
			}
			ctx := testenv.Context(t, 60*time.Second)
			data := storetest.Data(2_500_000, 2)
			var loc string
			f, err := c.UploadResumable(ctx, "videos", "clip.mp4", bytes.NewReader(data), int64(len(data)), client.ResumableOptions{
				ContentType: "video/mp4", PartSize: 1 << 20, OnCreate: func(u string) { loc = u },
			})
			if err != nil {
				t.Fatal(err)
			}
			if f.SHA256 != storetest.SHA(data) || f.Size != int64(len(data)) || f.ContentType != "video/mp4" || loc == "" || rt.cuts.Load() < 2 {
				t.Fatalf("file = %+v, cuts %d", f, rt.cuts.Load())
			}
			empty, err := c.UploadResumable(ctx, "videos", "empty", bytes.NewReader(nil), 0, client.ResumableOptions{})
			if err != nil || empty.Size != 0 || empty.SHA256 != storetest.SHA(nil) {
				t.Fatalf("empty = %+v, %v", empty, err)
			}
		})
	}
}

// The client finds the service through Consul.
func TestConsulDiscovery(t *testing.T) {
	s := filestoragetest.Start(t, "disk", nil)
	cc, err := consul.NewClient(testenv.ConsulAddr(t), testenv.ConsulToken(t))
	if err != nil {
		t.Fatal(err)
	}
	resolver := consul.NewResolver(cc, nil)
	t.Cleanup(func() { _ = resolver.Close() })
	c, err := client.New(client.Options{Picker: resolver.Picker("filestorage-test"), Token: client.StaticToken(s.Token(t, "alice", "storage"))})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testenv.Context(t, 60*time.Second)
	var lastErr error
	testenv.Eventually(t, 30*time.Second, func() bool {
		_, lastErr = c.Buckets(ctx)
		return lastErr == nil
	}, "the client did not reach filestorage through Consul: %v", &lastErr)
}

// An upload into one bucket too many is refused with the service's own
// code bucket_limit: the client's error is forbidden, with the service's
// message.
func TestClientBucketLimit(t *testing.T) {
	s := filestoragetest.Start(t, "disk", map[string]string{"FILESTORAGE_MAX_BUCKETS_PER_OWNER": "1"})
	c := newClient(t, s, "alice", "storage")
	ctx := testenv.Context(t, 30*time.Second)
	if _, err := c.Upload(ctx, "first", "a", strings.NewReader("a"), client.UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := c.Upload(ctx, "second", "a", strings.NewReader("a"), client.UploadOptions{})
	wantErr(t, err, errs.Forbidden, 403)
	if !strings.Contains(errs.MessageOf(err), "1 buckets") {
		t.Fatalf("message = %q, want the service's", errs.MessageOf(err))
	}
}
