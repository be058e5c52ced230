package app_test

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/audiomill/audiomill/filestorage/client"
	"github.com/audiomill/audiomill/gateway/internal/gatewaytest"
	"github.com/audiomill/audiomill/gateway/internal/storage"
	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/events"
	"github.com/audiomill/audiomill/platform/testenv"
)

// tusReq is a request to the gateway's tus endpoint with Tus-Resumable and
// the token; hdr adds headers ("Name: value").
func (e *env) tusReq(t *testing.T, method, path, token string, body io.Reader, hdr ...string) testenv.Response {
	t.Helper()
	req := testenv.NewRequest(t, method, e.gw.URL+path, body, "", token)
	req.Header.Set("Tus-Resumable", "1.0.0")
	for _, h := range hdr {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	return testenv.Do(t, req)
}

func tusMeta(name, typ string) string {
	b := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	return "filename " + b(name) + ",filetype " + b(typ)
}

// createUpload creates a resumable upload of length bytes and returns its
// path (Location).
func (e *env) createUpload(t *testing.T, token string, length int) string {
	t.Helper()
	resp := e.tusReq(t, http.MethodPost, "/api/v1/uploads", token, nil,
		"Upload-Length: "+strconv.Itoa(length), "Upload-Metadata: "+tusMeta("clip one.mp4", "video/mp4"))
	loc := resp.Header.Get("Location")
	if resp.Status != http.StatusCreated || !strings.HasPrefix(loc, "/api/v1/uploads/") || resp.Header.Get("Upload-Expires") == "" {
		t.Fatalf("create = %d %v %s", resp.Status, resp.Header, resp.Body)
	}
	return loc
}

func (e *env) patch(t *testing.T, token, loc string, offset int, part []byte, hdr ...string) testenv.Response {
	t.Helper()
	return e.tusReq(t, http.MethodPatch, loc, token, strings.NewReader(string(part)),
		append([]string{"Content-Type: application/offset+octet-stream", "Upload-Offset: " + strconv.Itoa(offset)}, hdr...)...)
}

// offsetOf is the upload's Upload-Offset by HEAD, once it stops moving (a
// cut part may still be being recorded).
func (e *env) offsetOf(t *testing.T, token, loc string) (int, testenv.Response) {
	t.Helper()
	prev := -1
	for range 50 {
		resp := e.tusReq(t, http.MethodHead, loc, token, nil)
		if resp.Status != http.StatusOK {
			t.Fatalf("HEAD %s = %d %v %s", loc, resp.Status, resp.Header, resp.Body)
		}
		n, err := strconv.Atoi(resp.Header.Get("Upload-Offset"))
		if err != nil {
			t.Fatalf("HEAD Upload-Offset %q", resp.Header.Get("Upload-Offset"))
		}
		if n == prev {
			return n, resp
		}
		prev = n
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("the offset of %s never settled", loc)
	return 0, testenv.Response{}
}

// cutPatch sends a PATCH declaring all of rest but sends only sent bytes of
// it, then drops the connection.
func (e *env) cutPatch(t *testing.T, token, loc string, offset int, rest []byte, sent int) {
	t.Helper()
	u, _ := url.Parse(e.gw.URL)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(conn)
	fmt.Fprintf(w, "PATCH %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nTus-Resumable: 1.0.0\r\n"+
		"Content-Type: application/offset+octet-stream\r\nUpload-Offset: %d\r\nContent-Length: %d\r\n\r\n",
		loc, u.Host, token, offset, len(rest))
	_, _ = w.Write(rest[:sent])
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	_ = conn.Close()
}

func (e *env) uploadRows(t *testing.T, owner string) int64 {
	t.Helper()
	var n int64
	if err := e.db(t).QueryRow(testenv.Context(t, 10*time.Second), "select count(*) from uploads where owner = $1", owner).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// A video uploaded in parts, one of them cut mid-way, resumes from where
// the gateway says it stands and becomes exactly one job, with the bytes
// sent; retries of the last part and HEADs after do not make another.
func TestResumableUpload(t *testing.T) {
	e := newEnv(t, nil)
	u := e.deps.SignUp(t, e.gw.URL)
	video := randomBytes(t, 3<<20)
	loc := e.createUpload(t, u.Token, len(video))

	if resp := e.patch(t, u.Token, loc, 0, video[:1<<20]); resp.Status != http.StatusNoContent || resp.Header.Get("Upload-Offset") != strconv.Itoa(1<<20) {
		t.Fatalf("first part = %d %v %s", resp.Status, resp.Header, resp.Body)
	}
	e.cutPatch(t, u.Token, loc, 1<<20, video[1<<20:], 512<<10)
	offset, resp := e.offsetOf(t, u.Token, loc)
	if offset < 1<<20 || offset > 1<<20+512<<10 || resp.Header.Get("Upload-Length") != strconv.Itoa(len(video)) ||
		resp.Header.Get("Audiomill-Job-Id") != "" || resp.Header.Get("Tus-Resumable") != "1.0.0" {
		t.Fatalf("HEAD after the cut: offset %d, %v", offset, resp.Header)
	}
	if n := e.countJobs(t, u.ID); n != 0 {
		t.Fatalf("%d jobs before the upload is whole", n)
	}
	// A part at another offset than the upload's is 409, and changes nothing.
	if resp := e.patch(t, u.Token, loc, offset+1, video[offset+1:offset+100]); resp.Status != http.StatusConflict || resp.ErrorCode() != "conflict" {
		t.Errorf("part at a wrong offset = %d %s", resp.Status, resp.Body)
	}
	// A checksum that does not match the part is 460; the part is discarded.
	bad := sha256.Sum256([]byte("something else"))
	if resp := e.patch(t, u.Token, loc, offset, video[offset:offset+1000], "Upload-Checksum: sha256 "+base64.StdEncoding.EncodeToString(bad[:])); resp.Status != 460 {
		t.Errorf("part with a wrong checksum = %d %s", resp.Status, resp.Body)
	}
	if o, _ := e.offsetOf(t, u.Token, loc); o != offset {
		t.Fatalf("offset %d after refused parts, want %d", o, offset)
	}
	rest := video[offset:]
	sum := sha256.Sum256(rest)
	resp = e.patch(t, u.Token, loc, offset, rest, "Upload-Checksum: sha256 "+base64.StdEncoding.EncodeToString(sum[:]))
	jobID := resp.Header.Get("Audiomill-Job-Id")
	if resp.Status != http.StatusNoContent || resp.Header.Get("Upload-Offset") != strconv.Itoa(len(video)) || len(jobID) != 24 {
		t.Fatalf("last part = %d %v %s", resp.Status, resp.Header, resp.Body)
	}

	r, job := e.getJob(t, u.Token, jobID)
	if r.Status != http.StatusOK || job.Video.Name != "clip one.mp4" || job.Video.ContentType != "video/mp4" ||
		job.Video.Size != int64(len(video)) || job.Status != "queued" {
		t.Fatalf("job = %d %+v", r.Status, job)
	}
	d := e.nextUploaded(t, jobID)
	p, err := events.Decode[events.VideoUploaded](d.Payload)
	if err != nil || p.VideoID != job.Video.ID || p.OwnerID != u.ID || p.OwnerEmail != u.Email || p.Size != int64(len(video)) {
		t.Fatalf("video.uploaded %+v (%v)", p, err)
	}
	dl, err := e.files.Download(testenv.Context(t, 30*time.Second), job.Video.ID, client.Range{})
	if err != nil {
		t.Fatal(err)
	}
	stored, err := io.ReadAll(dl)
	dl.Close()
	if err != nil || sha256.Sum256(stored) != sha256.Sum256(video) || dl.File.Owner != u.ID {
		t.Fatalf("stored video: %d bytes, owner %q, equal %v (%v)", len(stored), dl.File.Owner, sha256.Sum256(stored) == sha256.Sum256(video), err)
	}

	// Retries: the empty last part again, HEADs; a part past the end is 409.
	for range 2 {
		if resp := e.patch(t, u.Token, loc, len(video), nil); resp.Status != http.StatusNoContent || resp.Header.Get("Audiomill-Job-Id") != jobID {
			t.Errorf("retried last part = %d %v %s", resp.Status, resp.Header, resp.Body)
		}
		if o, resp := e.offsetOf(t, u.Token, loc); o != len(video) || resp.Header.Get("Audiomill-Job-Id") != jobID {
			t.Errorf("HEAD after completion: %d %v", o, resp.Header)
		}
	}
	if resp := e.patch(t, u.Token, loc, len(video), []byte("more")); resp.Status != http.StatusConflict {
		t.Errorf("part past the end = %d %s", resp.Status, resp.Body)
	}
	if resp := e.tusReq(t, http.MethodDelete, loc, u.Token, nil); resp.Status != http.StatusConflict {
		t.Errorf("DELETE of a completed upload = %d %s", resp.Status, resp.Body)
	}
	if n := e.countJobs(t, u.ID); n != 1 {
		t.Fatalf("%d jobs, want 1", n)
	}
	if files := e.videoFiles(t, u.ID); len(files) != 1 {
		t.Fatalf("videos %v, want 1", files)
	}
}

// A gateway that died between filestorage storing the file and recording
// the job: the next HEAD records the job, once.
func TestResumableUploadRecoversStoredFileWithoutJob(t *testing.T) {
	e := newEnv(t, nil)
	u := e.deps.SignUp(t, e.gw.URL)
	video := randomBytes(t, 100<<10)
	loc := e.createUpload(t, u.Token, len(video))
	var storageURL string
	if err := e.db(t).QueryRow(testenv.Context(t, 10*time.Second), "select storage_url from uploads where owner = $1", u.ID).Scan(&storageURL); err != nil {
		t.Fatal(err)
	}
	// The whole video straight into filestorage's upload, with the
	// gateway's account, as the gateway would have sent it before dying.
	tokens, err := authn.NewTokenSource(authn.TokenSourceOptions{ClientID: "gateway",
		ClientSecret: gatewaytest.ClientSecret, BaseURL: e.deps.AuthURL, Scope: storage.Scope()})
	if err != nil {
		t.Fatal(err)
	}
	asGateway, err := client.New(client.Options{BaseURL: e.deps.FilesURL, Token: tokens.Token})
	if err != nil {
		t.Fatal(err)
	}
	st, err := asGateway.AppendUpload(testenv.Context(t, 30*time.Second), storageURL, u.ID, 0, strings.NewReader(string(video)), int64(len(video)), "")
	if err != nil || st.FileID == "" {
		t.Fatalf("append to filestorage: %+v %v", st, err)
	}
	if n := e.countJobs(t, u.ID); n != 0 {
		t.Fatalf("%d jobs before the HEAD", n)
	}
	var jobID string
	for range 3 {
		o, resp := e.offsetOf(t, u.Token, loc)
		id := resp.Header.Get("Audiomill-Job-Id")
		if o != len(video) || len(id) != 24 || jobID != "" && id != jobID {
			t.Fatalf("HEAD after the crash: %d %v", o, resp.Header)
		}
		jobID = id
	}
	if n := e.countJobs(t, u.ID); n != 1 {
		t.Fatalf("%d jobs, want 1", n)
	}
	d := e.nextUploaded(t, jobID)
	if p, err := events.Decode[events.VideoUploaded](d.Payload); err != nil || p.VideoID != st.FileID {
		t.Fatalf("video.uploaded %+v (%v), want video %s", p, err, st.FileID)
	}
	if !strings.Contains(e.gw.Logs.String(), "resumable upload stored without its job") {
		t.Errorf("no log line of the recovery")
	}
}

// Another user's upload is as unknown as an upload that does not exist,
// and their requests change nothing of it; DELETE terminates an upload.
func TestResumableUploadOwnerAndTermination(t *testing.T) {
	e := newEnv(t, nil)
	a, b := e.deps.SignUp(t, e.gw.URL), e.deps.SignUp(t, e.gw.URL)
	video := randomBytes(t, 200<<10)
	loc := e.createUpload(t, a.Token, len(video))
	if resp := e.patch(t, a.Token, loc, 0, video[:1000]); resp.Status != http.StatusNoContent {
		t.Fatalf("part = %d %s", resp.Status, resp.Body)
	}
	unknown := e.tusReq(t, http.MethodDelete, "/api/v1/uploads/0123456789abcdef0123456789abcdef", b.Token, nil)
	if unknown.Status != http.StatusNotFound || unknown.ErrorCode() != "not_found" {
		t.Fatalf("unknown upload = %d %s", unknown.Status, unknown.Body)
	}
	for _, resp := range []testenv.Response{
		e.tusReq(t, http.MethodDelete, loc, b.Token, nil),
		e.patch(t, b.Token, loc, 1000, video[1000:]),
		e.patch(t, b.Token, loc, 1000, video[1000:2000]),
		e.tusReq(t, http.MethodHead, loc, b.Token, nil),
	} {
		if resp.Status != http.StatusNotFound || len(resp.Body) > 0 && string(resp.Body) != string(unknown.Body) {
			t.Errorf("another user's request = %d %s", resp.Status, resp.Body)
		}
	}
	if o, _ := e.offsetOf(t, a.Token, loc); o != 1000 {
		t.Fatalf("offset %d after another user's requests, want 1000", o)
	}
	if resp := e.tusReq(t, http.MethodDelete, loc, a.Token, nil); resp.Status != http.StatusNoContent {
		t.Fatalf("DELETE = %d %s", resp.Status, resp.Body)
	}
	if resp := e.tusReq(t, http.MethodHead, loc, a.Token, nil); resp.Status != http.StatusNotFound {
		t.Errorf("HEAD after DELETE = %d", resp.Status)
	}
	if resp := e.patch(t, a.Token, loc, 1000, video[1000:]); resp.Status != http.StatusNotFound {
		t.Errorf("PATCH after DELETE = %d %s", resp.Status, resp.Body)
	}
	if n := e.countJobs(t, a.ID); n != 0 {
		t.Errorf("%d jobs after DELETE", n)
	}
	if files := e.videoFiles(t, a.ID); len(files) != 0 {
		t.Errorf("videos after DELETE: %v", files)
	}
	if n := e.uploadRows(t, a.ID); n != 0 {
		t.Errorf("%d upload rows after DELETE", n)
	}
}

// Every refused request to the tus endpoint: its status and code, a log
// line, no upload, no job, no file.
func TestResumableUploadBadInput(t *testing.T) {
	e := newEnv(t, map[string]string{"GATEWAY_MAX_UPLOAD": "1MiB"})
	u := e.deps.SignUp(t, e.gw.URL)
	unverified := e.deps.SignUpUnverified(t, e.gw.URL)
	meta := "Upload-Metadata: " + tusMeta("a.mp4", "video/mp4")
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, c := range []struct {
		name, token string
		hdr         []string
		noTus       bool
		status      int
		code        string
	}{
		{"ErrNoToken", "", []string{"Upload-Length: 10", meta}, false, http.StatusUnauthorized, "unauthorized"},
		{"ErrUnverified", unverified.Token, []string{"Upload-Length: 10", meta}, false, http.StatusForbidden, "email_unverified"},
		{"ErrTusResumable", u.Token, []string{"Upload-Length: 10", meta}, true, http.StatusPreconditionFailed, "invalid"},
		{"ErrNoLength", u.Token, []string{meta}, false, http.StatusBadRequest, "invalid"},
		{"ErrBadLength", u.Token, []string{"Upload-Length: -5", meta}, false, http.StatusBadRequest, "invalid"},
		{"ErrTextLength", u.Token, []string{"Upload-Length: ten", meta}, false, http.StatusBadRequest, "invalid"},
		{"ErrEmpty", u.Token, []string{"Upload-Length: 0", meta}, false, http.StatusBadRequest, "invalid"},
		{"ErrDeferLength", u.Token, []string{"Upload-Defer-Length: 1", meta}, false, http.StatusBadRequest, "invalid"},
		{"ErrTooLarge", u.Token, []string{"Upload-Length: 1048577", meta}, false, http.StatusRequestEntityTooLarge, "too_large"},
		{"ErrNoFileName", u.Token, []string{"Upload-Length: 10", "Upload-Metadata: filetype " + b64("video/mp4")}, false, http.StatusBadRequest, "invalid"},
		{"ErrBadFileName", u.Token, []string{"Upload-Length: 10", "Upload-Metadata: filename " + b64("clip\u202Eexe.mp4")}, false, http.StatusBadRequest, "invalid"},
		{"ErrDotFileName", u.Token, []string{"Upload-Length: 10", "Upload-Metadata: filename " + b64("..")}, false, http.StatusBadRequest, "invalid"},
		{"ErrBadFileType", u.Token, []string{"Upload-Length: 10", "Upload-Metadata: filename " + b64("a.mp4") + ",filetype " + b64("text/html")}, false, http.StatusBadRequest, "invalid"},
		{"ErrNotBase64", u.Token, []string{"Upload-Length: 10", "Upload-Metadata: filename a.mp4!"}, false, http.StatusBadRequest, "invalid"},
	} {
		t.Run(c.name, func(t *testing.T) {
			req := testenv.NewRequest(t, http.MethodPost, e.gw.URL+"/api/v1/uploads", nil, "", c.token)
			if !c.noTus {
				req.Header.Set("Tus-Resumable", "1.0.0")
			} else {
				req.Header.Set("Tus-Resumable", "0.2.2")
			}
			for _, h := range c.hdr {
				k, v, _ := strings.Cut(h, ": ")
				req.Header.Set(k, v)
			}
			before := strings.Count(e.gw.Logs.String(), "request failed")
			resp := testenv.Do(t, req)
			if resp.Status != c.status || resp.ErrorCode() != c.code || resp.Header.Get("Location") != "" {
				t.Fatalf("= %d %s, want %d %s", resp.Status, resp.Body, c.status, c.code)
			}
			if c.token != "" && strings.Count(e.gw.Logs.String(), "request failed") <= before {
				t.Errorf("no log line of the refusal")
			}
			if c.noTus && resp.Header.Get("Tus-Version") != "1.0.0" {
				t.Errorf("412 without Tus-Version: %v", resp.Header)
			}
		})
	}
	loc := e.createUpload(t, u.Token, 1000)
	t.Run("ErrPatchContentType", func(t *testing.T) {
		resp := e.tusReq(t, http.MethodPatch, loc, u.Token, strings.NewReader("abc"), "Content-Type: application/octet-stream", "Upload-Offset: 0")
		if resp.Status != http.StatusUnsupportedMediaType || resp.ErrorCode() != "invalid" {
			t.Errorf("= %d %s", resp.Status, resp.Body)
		}
	})
	t.Run("ErrPatchNoOffset", func(t *testing.T) {
		resp := e.tusReq(t, http.MethodPatch, loc, u.Token, strings.NewReader("abc"), "Content-Type: application/offset+octet-stream")
		if resp.Status != http.StatusBadRequest || resp.ErrorCode() != "invalid" {
			t.Errorf("= %d %s", resp.Status, resp.Body)
		}
	})
	t.Run("ErrPatchWrongOffset", func(t *testing.T) {
		if resp := e.patch(t, u.Token, loc, 7, []byte("abc")); resp.Status != http.StatusConflict || resp.ErrorCode() != "conflict" {
			t.Errorf("= %d %s", resp.Status, resp.Body)
		}
	})
	t.Run("ErrPatchPastLength", func(t *testing.T) {
		if resp := e.patch(t, u.Token, loc, 0, make([]byte, 1001)); resp.Status != http.StatusRequestEntityTooLarge {
			t.Errorf("= %d %s", resp.Status, resp.Body)
		}
	})
	t.Run("ErrPatchNoToken", func(t *testing.T) {
		if resp := e.patch(t, "", loc, 0, []byte("abc")); resp.Status != http.StatusUnauthorized {
			t.Errorf("= %d %s", resp.Status, resp.Body)
		}
	})
	if o, _ := e.offsetOf(t, u.Token, loc); o != 0 {
		t.Errorf("offset %d after refused parts", o)
	}
	if n := e.uploadRows(t, u.ID); n != 1 {
		t.Errorf("%d uploads, want the one created", n)
	}
	if n := e.uploadRows(t, unverified.ID); n != 0 {
		t.Errorf("%d uploads of the unverified user", n)
	}
	if n := e.countJobs(t, u.ID); n != 0 {
		t.Errorf("%d jobs", n)
	}
	if files := e.videoFiles(t, u.ID); len(files) != 0 {
		t.Errorf("videos: %v", files)
	}
	// OPTIONS says what the endpoint supports.
	resp := e.tusReq(t, http.MethodOptions, "/api/v1/uploads", u.Token, nil)
	if resp.Status != http.StatusNoContent || resp.Header.Get("Tus-Version") != "1.0.0" || resp.Header.Get("Tus-Max-Size") != strconv.Itoa(1<<20) ||
		!strings.Contains(resp.Header.Get("Tus-Extension"), "termination") {
		t.Errorf("OPTIONS = %d %v", resp.Status, resp.Header)
	}
}
