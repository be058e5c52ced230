package web_test

import (
	"bytes"
	"context"
	"crypto/sha1" //nolint:gosec // tus checksum test
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/audiomill/audiomill/filestorage/internal/filestoragetest"
	"github.com/audiomill/audiomill/filestorage/internal/store/storetest"
	"github.com/audiomill/audiomill/platform/mongoconn"
	"github.com/audiomill/audiomill/platform/testenv"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// api talks to a running service as one caller.
type api struct {
	t     *testing.T
	base  string
	token string
}

func (a api) do(method, path string, body io.Reader, hdr ...string) *http.Response {
	a.t.Helper()
	req, err := http.NewRequest(method, a.base+path, body)
	if err != nil {
		a.t.Fatal(err)
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if cl := req.Header.Get("Content-Length"); cl != "" {
		fmt.Sscan(cl, &req.ContentLength)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	a.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func (a api) put(path string, data []byte, hdr ...string) *http.Response {
	a.t.Helper()
	return a.do(http.MethodPut, path, bytes.NewReader(data), hdr...)
}

func expect(t *testing.T, resp *http.Response, status int) []byte {
	t.Helper()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Fatalf("%s %s = %d %.300q, want %d", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, body, status)
	}
	return body
}

// expectError checks the status and the JSON error body.
func expectError(t *testing.T, resp *http.Response, status int, code string) {
	t.Helper()
	body := expect(t, resp, status)
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if resp.Request.Method == http.MethodHead {
		return
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Code != code || e.Error.Message == "" {
		t.Fatalf("error body = %s, want code %s", body, code)
	}
}

type file struct {
	ID, Bucket, Path, SHA256, Owner string
	Size                            int64
	ContentType                     string `json:"content_type"`
	Custom                          map[string]string
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %.200q: %v", b, err)
	}
	return v
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return "sha-256=:" + base64.StdEncoding.EncodeToString(s[:]) + ":"
}

// start runs the service and returns it with callers alice and bob (scope
// storage: their own files) and an admin (a service with storage:admin).
func start(t *testing.T, backend string, env map[string]string) (*filestoragetest.Service, api, api, api) {
	s := filestoragetest.Start(t, backend, env)
	return s, api{t, s.URL, s.Token(t, "alice", "storage")}, api{t, s.URL, s.Token(t, "bob", "storage")},
		api{t, s.URL, s.Token(t, "service:gateway", "storage:admin")}
}

var backends = []string{"gridfs", "disk"}

func TestUploadDownload(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			_, alice, _, _ := start(t, backend, map[string]string{"FILESTORAGE_CHUNK_SIZE": "4KiB"})
			data := storetest.Data(50_000, 1)
			resp := alice.put("/v1/buckets/docs/files/reports/q1.pdf", data, "Content-Type", "application/pdf", "Content-Digest", digest(data), "X-Meta-Project", "apollo")
			f := decode[file](t, expect(t, resp, http.StatusCreated))
			if f.Size != 50_000 || f.SHA256 != storetest.SHA(data) || f.Owner != "alice" || f.ContentType != "application/pdf" || f.Custom["project"] != "apollo" {
				t.Fatalf("created = %+v", f)
			}
			if resp.Header.Get("Location") != "/v1/files/"+f.ID || resp.Header.Get("ETag") != `"`+f.SHA256+`"` {
				t.Fatalf("headers = %v", resp.Header)
			}
			for _, p := range []string{"/v1/files/" + f.ID, "/v1/buckets/docs/files/reports/q1.pdf"} {
				resp = alice.do(http.MethodGet, p, nil)
				if got := expect(t, resp, http.StatusOK); !bytes.Equal(got, data) {
					t.Fatalf("GET %s: content differs", p)
				}
				h := resp.Header
				if h.Get("Content-Length") != "50000" || h.Get("Content-Type") != "application/pdf" || h.Get("ETag") != `"`+f.SHA256+`"` ||
					h.Get("Content-Disposition") != `attachment; filename=q1.pdf` || h.Get("Accept-Ranges") != "bytes" {
					t.Fatalf("GET %s headers = %v", p, h)
				}
			}
			resp = alice.do(http.MethodHead, "/v1/files/"+f.ID, nil)
			if b := expect(t, resp, http.StatusOK); len(b) != 0 || resp.Header.Get("Content-Length") != "50000" {
				t.Fatalf("HEAD = %d bytes, %v", len(b), resp.Header)
			}
			tag := `"` + f.SHA256 + `"`
			for _, c := range []struct {
				hdr          []string
				status       int
				start, end   int
				contentRange string
			}{
				{[]string{"Range", "bytes=4000-8999"}, 206, 4000, 9000, "bytes 4000-8999/50000"},
				{[]string{"Range", "bytes=49990-"}, 206, 49990, 50000, "bytes 49990-49999/50000"},
				{[]string{"Range", "bytes=-10"}, 206, 49990, 50000, "bytes 49990-49999/50000"},
				{[]string{"Range", "bytes=0-0"}, 206, 0, 1, "bytes 0-0/50000"},
				{[]string{"Range", "bytes=100-200,300-400"}, 200, 0, 50000, ""},
				{[]string{"Range", "pages=1-2"}, 200, 0, 50000, ""},
				{[]string{"Range", "bytes=10-20", "If-Range", tag}, 206, 10, 21, "bytes 10-20/50000"},
				{[]string{"Range", "bytes=10-20", "If-Range", `"stale"`}, 200, 0, 50000, ""},
			} {
				resp := alice.do(http.MethodGet, "/v1/files/"+f.ID, nil, c.hdr...)
				got := expect(t, resp, c.status)
				if !bytes.Equal(got, data[c.start:c.end]) || resp.Header.Get("Content-Range") != c.contentRange {
					t.Fatalf("%v: %d bytes, Content-Range %q", c.hdr, len(got), resp.Header.Get("Content-Range"))
				}
			}
			resp = alice.do(http.MethodGet, "/v1/files/"+f.ID, nil, "Range", "bytes=50000-")
			expectError(t, resp, http.StatusRequestedRangeNotSatisfiable, "invalid")
			if resp.Header.Get("Content-Range") != "bytes */50000" {
				t.Fatalf("416 Content-Range = %q", resp.Header.Get("Content-Range"))
			}
			resp = alice.do(http.MethodGet, "/v1/files/"+f.ID, nil, "If-None-Match", tag)
			if b := expect(t, resp, http.StatusNotModified); len(b) != 0 {
				t.Fatal("304 with a body")
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			s, alice, bob, _ := start(t, backend, map[string]string{"FILESTORAGE_MAX_OBJECT_SIZE": "100000", "FILESTORAGE_QUOTA": "150000"})
			f := decode[file](t, expect(t, alice.put("/v1/buckets/docs/files/keep.txt", []byte("keep")), http.StatusCreated))

			t.Run("ErrTraversal", func(t *testing.T) {
				for _, p := range []string{"../x", "a/../../x", "%2e%2e/x", "a/%2E%2E/%2e%2e/etc/passwd", "a//b", "a/./b", "a%00b", "a%0Ab", "a/", "a%5C..%5Cb"} {
					expectError(t, alice.put("/v1/buckets/docs/files/"+p, []byte("x")), http.StatusBadRequest, "invalid")
					expectError(t, alice.do(http.MethodGet, "/v1/buckets/docs/files/"+p, nil), http.StatusBadRequest, "invalid")
				}
				expectError(t, alice.put("/v1/buckets/..%2F..%2Fetc/files/x", []byte("x")), http.StatusBadRequest, "invalid")
				expectError(t, alice.put("/v1/buckets/Bad.Bucket/files/x", []byte("x")), http.StatusBadRequest, "invalid")
			})
			t.Run("ErrWrongDigest", func(t *testing.T) {
				expectError(t, alice.put("/v1/buckets/docs/files/d", []byte("abc"), "Content-Digest", digest([]byte("abd"))), http.StatusBadRequest, "invalid")
				expectError(t, alice.put("/v1/buckets/docs/files/d", []byte("abc"), "Content-Digest", "sha-256=:nope:"), http.StatusBadRequest, "invalid")
				expectError(t, alice.do(http.MethodGet, "/v1/buckets/docs/files/d", nil), http.StatusNotFound, "not_found")
			})
			t.Run("ErrOversize", func(t *testing.T) {
				expectError(t, alice.put("/v1/buckets/docs/files/big", make([]byte, 100_001)), http.StatusRequestEntityTooLarge, "too_large")
				// Without a Content-Length: the limit is enforced while streaming.
				resp := alice.do(http.MethodPut, "/v1/buckets/docs/files/big", io.MultiReader(bytes.NewReader(make([]byte, 120_000))))
				expectError(t, resp, http.StatusRequestEntityTooLarge, "too_large")
				expectError(t, alice.do(http.MethodGet, "/v1/buckets/docs/files/big", nil), http.StatusNotFound, "not_found")
			})
			t.Run("ErrQuotaExceeded", func(t *testing.T) {
				expect(t, bob.put("/v1/buckets/docs/files/q1", make([]byte, 90_000)), http.StatusCreated)
				resp := bob.do(http.MethodPut, "/v1/buckets/docs/files/q2", io.MultiReader(bytes.NewReader(make([]byte, 70_000))))
				expectError(t, resp, http.StatusRequestEntityTooLarge, "too_large")
				expectError(t, bob.do(http.MethodGet, "/v1/buckets/docs/files/q2", nil), http.StatusNotFound, "not_found")
				expect(t, bob.put("/v1/buckets/docs/files/q2", make([]byte, 60_000)), http.StatusCreated)
				// Replacing a file frees its bytes: 150 000 - 60 000 used elsewhere.
				expect(t, bob.put("/v1/buckets/docs/files/q1", make([]byte, 90_000)), http.StatusCreated)
			})
			t.Run("ErrUnknown", func(t *testing.T) {
				expectError(t, alice.do(http.MethodGet, "/v1/files/000000000000000000000000", nil), http.StatusNotFound, "not_found")
				expectError(t, alice.do(http.MethodGet, "/v1/files/zzz", nil), http.StatusNotFound, "not_found")
				expectError(t, alice.do(http.MethodDelete, "/v1/files/000000000000000000000000", nil), http.StatusNotFound, "not_found")
				expectError(t, alice.do(http.MethodGet, "/v1/buckets/nosuch/files", nil), http.StatusNotFound, "not_found")
				expectError(t, alice.do(http.MethodGet, "/v1/buckets/nosuch/files/x", nil), http.StatusNotFound, "not_found")
			})
			t.Run("ErrCursor", func(t *testing.T) {
				for _, q := range []string{"cursor=%%%", "cursor=bm9wZQ", "cursor=" + base64.RawURLEncoding.EncodeToString([]byte(`{"a":"x","p":"other/"}`)), "limit=0", "limit=x", "delimiter=,", "prefix=../"} {
					expectError(t, alice.do(http.MethodGet, "/v1/buckets/docs/files?"+q, nil), http.StatusBadRequest, "invalid")
				}
			})
			t.Run("ErrPrecondition", func(t *testing.T) {
				expectError(t, alice.put("/v1/buckets/docs/files/keep.txt", []byte("new"), "If-None-Match", "*"), http.StatusPreconditionFailed, "conflict")
				expectError(t, alice.put("/v1/buckets/docs/files/keep.txt", []byte("new"), "If-None-Match", `"abc"`), http.StatusBadRequest, "invalid")
			})
			t.Run("ErrAuth", func(t *testing.T) {
				noToken := api{t, s.URL, ""}
				expectError(t, noToken.do(http.MethodGet, "/v1/files/"+f.ID, nil), http.StatusUnauthorized, "unauthorized")
				badToken := api{t, s.URL, "not.a.token"}
				expectError(t, badToken.do(http.MethodGet, "/v1/buckets", nil), http.StatusUnauthorized, "unauthorized")
				// Someone else's file looks missing; its path is taken.
				expectError(t, bob.do(http.MethodGet, "/v1/files/"+f.ID, nil), http.StatusNotFound, "not_found")
				expectError(t, bob.do(http.MethodDelete, "/v1/files/"+f.ID, nil), http.StatusNotFound, "not_found")
				expectError(t, bob.put("/v1/buckets/docs/files/keep.txt", []byte("mine")), http.StatusConflict, "conflict")
				expectError(t, bob.do(http.MethodPost, "/v1/buckets/docs/move", strings.NewReader(`{"from":"keep.txt","to":"bob.txt"}`)), http.StatusNotFound, "not_found")
				noScope := api{t, s.URL, s.Token(t, "alice")}
				expectError(t, noScope.do(http.MethodGet, "/v1/files/"+f.ID, nil), http.StatusForbidden, "forbidden")
			})
			t.Run("ErrRoute", func(t *testing.T) {
				expectError(t, alice.do(http.MethodPost, "/v1/buckets", nil), http.StatusMethodNotAllowed, "invalid")
				expectError(t, alice.do(http.MethodPatch, "/v1/files/"+f.ID, nil), http.StatusMethodNotAllowed, "invalid")
				expectError(t, alice.do(http.MethodGet, "/v1/nothing/here", nil), http.StatusNotFound, "not_found")
			})
			t.Run("ErrMoveBody", func(t *testing.T) {
				for _, body := range []string{`{"from":"keep.txt"}`, `{"from":"keep.txt","to":"../x"}`, `{"from":"a","to":"a/b"}`, `{"from":"keep.txt","to":"x","bogus":1}`, `not json`} {
					expectError(t, alice.do(http.MethodPost, "/v1/buckets/docs/move", strings.NewReader(body)), http.StatusBadRequest, "invalid")
				}
			})
			// Nothing above stored or lost anything.
			got := expect(t, alice.do(http.MethodGet, "/v1/buckets/docs/files/keep.txt", nil), http.StatusOK)
			if string(got) != "keep" {
				t.Fatalf("keep.txt = %q", got)
			}
			l := decode[struct{ Files []file }](t, expect(t, alice.do(http.MethodGet, "/v1/buckets/docs/files", nil), http.StatusOK))
			if len(l.Files) != 1 {
				t.Fatalf("alice's files = %+v", l.Files)
			}
		})
	}
}

func TestIdempotencyKey(t *testing.T) {
	_, alice, _, _ := start(t, "gridfs", nil)
	first := decode[file](t, expect(t, alice.put("/v1/buckets/docs/files/a", []byte("one"), "Idempotency-Key", "k-1"), http.StatusCreated))
	resp := alice.put("/v1/buckets/docs/files/a", []byte("one"), "Idempotency-Key", "k-1")
	again := decode[file](t, expect(t, resp, http.StatusCreated))
	if again.ID != first.ID || resp.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retry = %+v, %v", again, resp.Header)
	}
	expectError(t, alice.put("/v1/buckets/docs/files/b", []byte("one"), "Idempotency-Key", "k-1"), http.StatusConflict, "conflict")
	other := decode[file](t, expect(t, alice.put("/v1/buckets/docs/files/a", []byte("two"), "Idempotency-Key", "k-2"), http.StatusCreated))
	if other.ID == first.ID {
		t.Fatal("a new key replayed the old upload")
	}
}

func TestListMoveDelete(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			_, alice, bob, admin := start(t, backend, nil)
			for _, p := range []string{"music/a.mp3", "music/b.mp3", "music/live/c.mp3", "video/x.mp4", "readme"} {
				expect(t, alice.put("/v1/buckets/media/files/"+p, []byte(p)), http.StatusCreated)
			}
			expect(t, bob.put("/v1/buckets/media/files/bob/own", []byte("b")), http.StatusCreated)

			type listing struct {
				Files      []file
				Prefixes   []string
				NextCursor string `json:"next_cursor"`
			}
			var names []string
			cursor := ""
			for range 10 {
				q := url.Values{"delimiter": {"/"}, "limit": {"2"}}
				if cursor != "" {
					q.Set("cursor", cursor)
				}
				l := decode[listing](t, expect(t, alice.do(http.MethodGet, "/v1/buckets/media/files?"+q.Encode(), nil), http.StatusOK))
				for _, f := range l.Files {
					names = append(names, f.Path)
				}
				names = append(names, l.Prefixes...)
				if cursor = l.NextCursor; cursor == "" {
					break
				}
			}
			slices.Sort(names)
			if strings.Join(names, ",") != "music/,readme,video/" {
				t.Fatalf("alice's listing = %v", names)
			}
			all := decode[listing](t, expect(t, admin.do(http.MethodGet, "/v1/buckets/media/files?delimiter=/", nil), http.StatusOK))
			if strings.Join(all.Prefixes, ",") != "bob/,music/,video/" {
				t.Fatalf("admin's listing = %+v", all)
			}

			// A folder move; the target exists → 409 and nothing moves.
			expect(t, alice.put("/v1/buckets/media/files/songs/b.mp3", []byte("other")), http.StatusCreated)
			expectError(t, alice.do(http.MethodPost, "/v1/buckets/media/move", strings.NewReader(`{"from":"music","to":"songs"}`)), http.StatusConflict, "conflict")
			expect(t, alice.do(http.MethodGet, "/v1/buckets/media/files/music/a.mp3", nil), http.StatusOK)
			body := expect(t, alice.do(http.MethodPost, "/v1/buckets/media/move", strings.NewReader(`{"from":"music/","to":"songs","overwrite":true}`)), http.StatusOK)
			if m := decode[struct{ Moved int }](t, body); m.Moved != 3 {
				t.Fatalf("moved = %s", body)
			}
			if got := expect(t, alice.do(http.MethodGet, "/v1/buckets/media/files/songs/live/c.mp3", nil), http.StatusOK); string(got) != "music/live/c.mp3" {
				t.Fatalf("moved content = %q", got)
			}
			expectError(t, alice.do(http.MethodGet, "/v1/buckets/media/files/music/a.mp3", nil), http.StatusNotFound, "not_found")
			// Re-running a finished move finds nothing left to move.
			expectError(t, alice.do(http.MethodPost, "/v1/buckets/media/move", strings.NewReader(`{"from":"music","to":"songs"}`)), http.StatusNotFound, "not_found")
			// A single file keeps its id.
			f := decode[file](t, expect(t, alice.put("/v1/buckets/media/files/one", []byte("1")), http.StatusCreated))
			expect(t, alice.do(http.MethodPost, "/v1/buckets/media/move", strings.NewReader(`{"from":"one","to":"deep/one"}`)), http.StatusOK)
			if got := expect(t, alice.do(http.MethodGet, "/v1/files/"+f.ID, nil), http.StatusOK); string(got) != "1" {
				t.Fatalf("by id after move = %q", got)
			}

			// Deleting a folder needs recursive=true.
			expectError(t, alice.do(http.MethodDelete, "/v1/buckets/media/files/songs", nil), http.StatusConflict, "conflict")
			body = expect(t, alice.do(http.MethodDelete, "/v1/buckets/media/files/songs?recursive=true", nil), http.StatusOK)
			if d := decode[struct{ Deleted int }](t, body); d.Deleted != 3 {
				t.Fatalf("deleted = %s", body)
			}
			expect(t, alice.do(http.MethodDelete, "/v1/files/"+f.ID, nil), http.StatusNoContent)
			expect(t, alice.do(http.MethodDelete, "/v1/buckets/media/files/readme", nil), http.StatusNoContent)
			// bob has no file under video/: to him it is missing.
			expectError(t, bob.do(http.MethodDelete, "/v1/buckets/media/files/video?recursive=true", nil), http.StatusNotFound, "not_found")

			type stats struct {
				Buckets []struct {
					Name         string
					Files, Bytes int64
				}
			}
			st := decode[stats](t, expect(t, admin.do(http.MethodGet, "/v1/buckets", nil), http.StatusOK))
			if len(st.Buckets) != 1 || st.Buckets[0].Name != "media" || st.Buckets[0].Files != 2 {
				t.Fatalf("admin buckets = %+v", st)
			}
			st = decode[stats](t, expect(t, bob.do(http.MethodGet, "/v1/buckets", nil), http.StatusOK))
			if len(st.Buckets) != 1 || st.Buckets[0].Files != 1 || st.Buckets[0].Bytes != 1 {
				t.Fatalf("bob's buckets = %+v", st)
			}
		})
	}
}

func tusHeaders(extra ...string) []string {
	return append([]string{"Tus-Resumable", "1.0.0"}, extra...)
}

func meta(kv ...string) string {
	var parts []string
	for i := 0; i+1 < len(kv); i += 2 {
		parts = append(parts, kv[i]+" "+base64.StdEncoding.EncodeToString([]byte(kv[i+1])))
	}
	return strings.Join(parts, ",")
}

func TestTus(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			s, alice, bob, _ := start(t, backend, map[string]string{"FILESTORAGE_MAX_OBJECT_SIZE": "1MiB", "FILESTORAGE_CHUNK_SIZE": "4KiB"})
			resp := alice.do(http.MethodOptions, "/v1/buckets/up/uploads/", nil)
			expect(t, resp, http.StatusNoContent)
			if !strings.Contains(resp.Header.Get("Tus-Extension"), "checksum") || resp.Header.Get("Tus-Version") != "1.0.0" {
				t.Fatalf("OPTIONS = %v", resp.Header)
			}
			data := storetest.Data(30_000, 3)
			resp = alice.do(http.MethodPost, "/v1/buckets/up/uploads/", nil, tusHeaders("Upload-Length", "30000",
				"Upload-Metadata", meta("path", "tus/file.bin", "filetype", "application/x-test", "note", "hi"))...)
			expect(t, resp, http.StatusCreated)
			loc := resp.Header.Get("Location")
			if !strings.HasPrefix(loc, "/v1/buckets/up/uploads/") || resp.Header.Get("Upload-Expires") == "" {
				t.Fatalf("create = %v", resp.Header)
			}
			patch := func(a api, off int, part []byte, extra ...string) *http.Response {
				return a.do(http.MethodPatch, loc, bytes.NewReader(part), tusHeaders(append([]string{
					"Content-Type", "application/offset+octet-stream", "Upload-Offset", fmt.Sprint(off)}, extra...)...)...)
			}
			resp = patch(alice, 0, data[:10_001])
			expect(t, resp, http.StatusNoContent)
			if resp.Header.Get("Upload-Offset") != "10001" {
				t.Fatalf("offset = %q", resp.Header.Get("Upload-Offset"))
			}
			// Bad input, each refused without touching the upload.
			expectError(t, patch(alice, 5, data[5:100]), http.StatusConflict, "conflict")
			expectError(t, patch(bob, 10_001, data[10_001:20_000]), http.StatusNotFound, "not_found")
			sum1 := sha1.Sum(data[10_001:20_000]) //nolint:gosec // tus checksum
			bad := sha256.Sum256([]byte("x"))
			resp = patch(alice, 10_001, data[10_001:20_000], "Upload-Checksum", "sha256 "+base64.StdEncoding.EncodeToString(bad[:]))
			expectError(t, resp, 460, "invalid")
			for _, hdr := range [][]string{
				{"Upload-Checksum", "md5 AAAA"}, {"Upload-Checksum", "sha256"}, {"Upload-Checksum", "sha256 !!!"}, {"Upload-Offset", "-1"}, {"Upload-Offset", "abc"},
			} {
				expectError(t, patch(alice, 10_001, data[10_001:20_000], hdr...), http.StatusBadRequest, "invalid")
			}
			expectError(t, alice.do(http.MethodPatch, loc, bytes.NewReader(data[10_001:20_000]), tusHeaders("Content-Type", "application/octet-stream", "Upload-Offset", "10001")...), http.StatusUnsupportedMediaType, "invalid")
			expectError(t, alice.do(http.MethodPatch, loc, bytes.NewReader(data[10_001:20_000]), "Content-Type", "application/offset+octet-stream", "Upload-Offset", "10001"), http.StatusPreconditionFailed, "invalid")
			expectError(t, patch(alice, 10_001, make([]byte, 20_000)), http.StatusRequestEntityTooLarge, "too_large")

			resp = alice.do(http.MethodHead, loc, nil, tusHeaders()...)
			expect(t, resp, http.StatusOK)
			if resp.Header.Get("Upload-Offset") != "10001" || resp.Header.Get("Upload-Length") != "30000" || resp.Header.Get("Cache-Control") != "no-store" {
				t.Fatalf("HEAD = %v", resp.Header)
			}
			expect(t, patch(alice, 10_001, data[10_001:20_000], "Upload-Checksum", "sha1 "+base64.StdEncoding.EncodeToString(sum1[:])), http.StatusNoContent)
			resp = patch(alice, 20_000, data[20_000:])
			expect(t, resp, http.StatusNoContent)
			id := resp.Header.Get("X-File-Id")
			got := expect(t, alice.do(http.MethodGet, "/v1/buckets/up/files/tus/file.bin", nil), http.StatusOK)
			if !bytes.Equal(got, data) {
				t.Fatal("content differs")
			}
			resp = alice.do(http.MethodHead, "/v1/files/"+id, nil)
			expect(t, resp, http.StatusOK)
			if resp.Header.Get("ETag") != `"`+storetest.SHA(data)+`"` || resp.Header.Get("Content-Type") != "application/x-test" {
				t.Fatalf("stored = %v", resp.Header)
			}
			expectError(t, alice.do(http.MethodHead, loc, nil, tusHeaders()...), http.StatusNotFound, "")

			// creation-with-upload, then termination.
			resp = alice.do(http.MethodPost, "/v1/buckets/up/uploads/", bytes.NewReader(data[:500]), tusHeaders("Upload-Length", "1000",
				"Upload-Metadata", meta("path", "t2"), "Content-Type", "application/offset+octet-stream")...)
			expect(t, resp, http.StatusCreated)
			if resp.Header.Get("Upload-Offset") != "500" {
				t.Fatalf("creation-with-upload offset = %q", resp.Header.Get("Upload-Offset"))
			}
			loc2 := resp.Header.Get("Location")
			expect(t, alice.do(http.MethodDelete, loc2, nil, tusHeaders()...), http.StatusNoContent)
			expectError(t, alice.do(http.MethodHead, loc2, nil, tusHeaders()...), http.StatusNotFound, "")

			// Malformed creation requests.
			for _, hdr := range [][]string{
				{"Upload-Metadata", meta("path", "x")},
				{"Upload-Length", "x", "Upload-Metadata", meta("path", "x")},
				{"Upload-Length", "10"},
				{"Upload-Length", "10", "Upload-Metadata", "path !!!"},
				{"Upload-Length", "10", "Upload-Metadata", meta("path", "../x")},
				{"Upload-Defer-Length", "1", "Upload-Metadata", meta("path", "x")},
			} {
				expectError(t, alice.do(http.MethodPost, "/v1/buckets/up/uploads/", nil, tusHeaders(hdr...)...), http.StatusBadRequest, "invalid")
			}
			expectError(t, alice.do(http.MethodPost, "/v1/buckets/up/uploads/", nil, tusHeaders("Upload-Length", "2000000", "Upload-Metadata", meta("path", "x"))...), http.StatusRequestEntityTooLarge, "too_large")
			expectError(t, alice.do(http.MethodPost, "/v1/buckets/up/uploads/", nil, "Upload-Length", "10", "Upload-Metadata", meta("path", "x")), http.StatusPreconditionFailed, "invalid")
			_ = s
		})
	}
}

// Abandoned uploads expire and the sweep deletes their partial data.
func TestUploadExpirySweep(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			s, alice, _, _ := start(t, backend, map[string]string{"FILESTORAGE_UPLOAD_TTL": "1s", "FILESTORAGE_SWEEP_INTERVAL": "100ms"})
			resp := alice.do(http.MethodPost, "/v1/buckets/up/uploads/", bytes.NewReader(make([]byte, 5000)), tusHeaders("Upload-Length", "10000",
				"Upload-Metadata", meta("path", "abandoned"), "Content-Type", "application/offset+octet-stream")...)
			expect(t, resp, http.StatusCreated)
			loc := resp.Header.Get("Location")
			expect(t, alice.do(http.MethodHead, loc, nil, tusHeaders()...), http.StatusOK)
			testenv.Eventually(t, 10*time.Second, func() bool { return partialData(t, s, backend) == 0 }, "the sweep left partial data")
			expectError(t, alice.do(http.MethodHead, loc, nil, tusHeaders()...), http.StatusNotFound, "")
		})
	}
}

// partialData counts what unfinished uploads hold.
func partialData(t *testing.T, s *filestoragetest.Service, backend string) int {
	t.Helper()
	return countState(t, s, backend, "uploads", func(ctx context.Context, db *mongo.Database) (int64, error) {
		n1, err := db.Collection("filestorage_uploads").CountDocuments(ctx, bson.D{})
		if err != nil {
			return 0, err
		}
		n2, err := db.Collection("up.chunks").CountDocuments(ctx, bson.D{})
		return n1 + n2, err
	})
}

// countState counts the entries of the backend's own state: on disk those
// in .fs/<dir>, on GridFS what count finds in the service's database.
func countState(t *testing.T, s *filestoragetest.Service, backend, dir string, count func(context.Context, *mongo.Database) (int64, error)) int {
	t.Helper()
	if backend == "disk" {
		entries, err := os.ReadDir(filepath.Join(s.Dir, ".fs", dir))
		if err != nil {
			t.Fatal(err)
		}
		return len(entries)
	}
	client, err := mongoconn.Connect(mongoconn.Config{URI: testenv.MongoURI(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(context.Background())
	n, err := count(testenv.Context(t, 10*time.Second), client.Database(s.Database))
	if err != nil {
		t.Fatal(err)
	}
	return int(n)
}

// A folder move interrupted halfway (some files already at the target)
// completes when run again, without overwrite.
func TestFolderMoveResumes(t *testing.T) {
	_, alice, _, _ := start(t, "gridfs", nil)
	for _, p := range []string{"a/1", "a/2", "a/sub/3"} {
		expect(t, alice.put("/v1/buckets/m/files/"+p, []byte(p)), http.StatusCreated)
	}
	// The interrupted run had moved a/2 only.
	expect(t, alice.do(http.MethodPost, "/v1/buckets/m/move", strings.NewReader(`{"from":"a/2","to":"b/2"}`)), http.StatusOK)
	body := expect(t, alice.do(http.MethodPost, "/v1/buckets/m/move", strings.NewReader(`{"from":"a","to":"b"}`)), http.StatusOK)
	if m := decode[struct{ Moved int }](t, body); m.Moved != 2 {
		t.Fatalf("moved = %s", body)
	}
	for _, p := range []string{"b/1", "b/2", "b/sub/3"} {
		want := "a/" + strings.TrimPrefix(p, "b/")
		if got := expect(t, alice.do(http.MethodGet, "/v1/buckets/m/files/"+p, nil), http.StatusOK); string(got) != want {
			t.Fatalf("%s = %q", p, got)
		}
	}
	expectError(t, alice.do(http.MethodGet, "/v1/buckets/m/files/a/1", nil), http.StatusNotFound, "not_found")
}

// A storage:admin token (a service acting for a user) names the owner with
// X-Owner: the file is the owner's and counts against the owner's quota.
func TestAdminUploadsForAnOwner(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			_, alice, bob, admin := start(t, backend, map[string]string{"FILESTORAGE_QUOTA": "150000"})
			f := decode[file](t, expect(t, admin.put("/v1/buckets/videos/files/alice/v1", make([]byte, 90_000), "X-Owner", alice.subject(t)), http.StatusCreated))
			if f.Owner != alice.subject(t) {
				t.Fatalf("owner = %q, want alice's subject", f.Owner)
			}
			expect(t, alice.do(http.MethodGet, "/v1/files/"+f.ID, nil), http.StatusOK)
			expectError(t, bob.do(http.MethodGet, "/v1/files/"+f.ID, nil), http.StatusNotFound, "not_found")

			// alice's quota applies: 90 000 + 70 000 > 150 000.
			expectError(t, admin.put("/v1/buckets/videos/files/alice/v2", make([]byte, 70_000), "X-Owner", alice.subject(t)),
				http.StatusRequestEntityTooLarge, "too_large")
			// The admin's own files stay exempt.
			expect(t, admin.put("/v1/buckets/videos/files/own", make([]byte, 160_000)), http.StatusCreated)

			t.Run("ErrNotAdmin", func(t *testing.T) {
				expectError(t, bob.put("/v1/buckets/videos/files/x", []byte("x"), "X-Owner", alice.subject(t)), http.StatusForbidden, "forbidden")
			})
			t.Run("ErrBadOwner", func(t *testing.T) {
				for _, owner := range []string{"", "two words", "tab\there", strings.Repeat("o", 257)} {
					expectError(t, admin.put("/v1/buckets/videos/files/x", []byte("x"), "X-Owner", owner), http.StatusBadRequest, "invalid")
				}
			})
			expectError(t, alice.do(http.MethodGet, "/v1/buckets/videos/files/x", nil), http.StatusNotFound, "not_found")
		})
	}
}

// subject returns the token's subject (its "sub" claim).
func (a api) subject(t *testing.T) string {
	t.Helper()
	parts := strings.Split(a.token, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q is not a JWT", a.token)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct{ Sub string }
	if err := json.Unmarshal(b, &claims); err != nil {
		t.Fatal(err)
	}
	return claims.Sub
}
