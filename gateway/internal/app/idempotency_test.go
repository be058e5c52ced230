package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/audiomill/audiomill/gateway/internal/gatewaytest"
	"github.com/audiomill/audiomill/platform/testenv"
)

// uploadWithKey uploads a multipart video named name under key.
func (e *env) uploadWithKey(t *testing.T, token, key, name, content string) (testenv.Response, jobJSON) {
	t.Helper()
	body, ct := gatewaytest.Multipart([3]string{"file", name, content})
	req := testenv.NewRequest(t, http.MethodPost, e.gw.URL+"/api/v1/videos", body, ct, token)
	req.Header.Set("Idempotency-Key", key)
	resp := testenv.Do(t, req)
	var j jobJSON
	if resp.Status == http.StatusAccepted {
		resp.JSON(t, &j)
	}
	return resp, j
}

// sleepReader waits d once, then reads as the end of its part.
type sleepReader struct{ d time.Duration }

func (s sleepReader) Read([]byte) (int, error) {
	time.Sleep(s.d)
	return 0, io.EOF
}

// TestIdempotencyKey: POST /api/v1/videos with an Idempotency-Key does the
// upload once per user and key: a retry answers like the first request
// (202, same job and Location, Idempotent-Replayed) without a second job,
// a second stored video or a second count against the upload limit;
// concurrent requests with one key make one job; the key of another file,
// a malformed key, a failed first attempt and another user's key each get
// their own answer.
func TestIdempotencyKey(t *testing.T) {
	e := newEnv(t, map[string]string{"GATEWAY_UPLOADS_PER_MINUTE": "3"})

	t.Run("RetryReturnsTheFirstJob", func(t *testing.T) {
		u := e.deps.SignUp(t, e.gw.URL)
		first, j := e.uploadWithKey(t, u.Token, "upload-1", "clip.mp4", "video bytes")
		if first.Status != http.StatusAccepted || first.Header.Get("Idempotent-Replayed") != "" {
			t.Fatalf("first upload = %d %v %s", first.Status, first.Header, first.Body)
		}
		for i := range 3 {
			again, k := e.uploadWithKey(t, u.Token, "upload-1", "clip.mp4", "video bytes")
			if again.Status != http.StatusAccepted || k.ID != j.ID || again.Header.Get("Location") != first.Header.Get("Location") ||
				again.Header.Get("Idempotent-Replayed") != "true" {
				t.Fatalf("retry %d = %d Location %q Idempotent-Replayed %q %s; want 202, job %s at %s, replayed",
					i+1, again.Status, again.Header.Get("Location"), again.Header.Get("Idempotent-Replayed"), again.Body,
					j.ID, first.Header.Get("Location"))
			}
		}
		if n := e.countJobs(t, u.ID); n != 1 {
			t.Errorf("%d jobs, want 1", n)
		}
		if files := e.videoFiles(t, u.ID); len(files) != 1 {
			t.Errorf("stored videos %v, want 1 (the quota counts stored files)", files)
		}
		list := testenv.Do(t, testenv.NewRequest(t, http.MethodGet, e.gw.URL+"/api/v1/jobs", nil, "", u.Token))
		if list.Status != http.StatusOK || strings.Count(string(list.Body), `"id":"`+j.ID+`"`) != 1 {
			t.Errorf("job list = %d %s; want job %s once", list.Status, list.Body, j.ID)
		}
		// Without a key the same file is another upload.
		if resp, k := e.upload(t, u.Token, "clip.mp4", "video bytes"); resp.Status != http.StatusAccepted || k.ID == j.ID {
			t.Errorf("upload without a key = %d %s", resp.Status, resp.Body)
		}
	})

	t.Run("RetriesCountOnceAgainstTheLimit", func(t *testing.T) {
		u := e.deps.SignUp(t, e.gw.URL)
		for i := range 5 {
			if resp, _ := e.uploadWithKey(t, u.Token, "limit-1", "clip.mp4", "video"); resp.Status != http.StatusAccepted {
				t.Fatalf("upload %d with one key = %d %s", i+1, resp.Status, resp.Body)
			}
		}
		for i := range 2 {
			if resp, _ := e.upload(t, u.Token, "clip.mp4", "video"); resp.Status != http.StatusAccepted {
				t.Fatalf("upload %d without a key = %d %s", i+1, resp.Status, resp.Body)
			}
		}
		if resp, _ := e.uploadWithKey(t, u.Token, "limit-2", "clip.mp4", "video"); resp.Status != http.StatusTooManyRequests {
			t.Errorf("fourth distinct upload = %d %s; want 429", resp.Status, resp.Body)
		}
		if n := e.countJobs(t, u.ID); n != 3 {
			t.Errorf("%d jobs, want 3", n)
		}
	})

	t.Run("ConcurrentRequestsMakeOneJob", func(t *testing.T) {
		u := e.deps.SignUp(t, e.gw.URL)
		const n = 10
		type answer struct {
			status                int
			retryAfter, replayed  string
			id, code, loc, errMsg string
		}
		answers := make([]answer, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				// The file part's headers at once, its content a second
				// later: the first request holds the key meanwhile.
				boundary := "concurrentboundary"
				head := fmt.Sprintf("--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"clip.mp4\"\r\nContent-Type: video/mp4\r\n\r\n", boundary)
				tail := fmt.Sprintf("video bytes\r\n--%s--\r\n", boundary)
				body := io.MultiReader(strings.NewReader(head), sleepReader{time.Second}, strings.NewReader(tail))
				req, err := http.NewRequest(http.MethodPost, e.gw.URL+"/api/v1/videos", body)
				if err != nil {
					answers[i].errMsg = err.Error()
					return
				}
				req.ContentLength = int64(len(head) + len(tail))
				req.Header.Set("Content-Type", "multipart/form-data; boundary="+boundary)
				req.Header.Set("Authorization", "Bearer "+u.Token)
				req.Header.Set("Idempotency-Key", "together")
				resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
				if err != nil {
					answers[i].errMsg = err.Error()
					return
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				a := answer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"),
					replayed: resp.Header.Get("Idempotent-Replayed"), loc: resp.Header.Get("Location")}
				if resp.StatusCode == http.StatusAccepted {
					var j jobJSON
					if err := json.Unmarshal(b, &j); err != nil {
						a.errMsg = fmt.Sprintf("%d %q: %v", resp.StatusCode, b, err)
					}
					a.id = j.ID
				} else {
					a.code = testenv.Response{Status: resp.StatusCode, Body: b}.ErrorCode()
				}
				answers[i] = a
			})
		}
		wg.Wait()
		var firsts, conflicts int
		ids := map[string]bool{}
		for i, a := range answers {
			switch {
			case a.errMsg != "":
				t.Errorf("request %d: %s", i, a.errMsg)
			case a.status == http.StatusAccepted && a.loc != "/api/v1/jobs/"+a.id:
				t.Errorf("request %d: 202 with Location %q for job %s", i, a.loc, a.id)
			case a.status == http.StatusAccepted && a.replayed == "":
				firsts++
				ids[a.id] = true
			case a.status == http.StatusAccepted:
				ids[a.id] = true
			case a.status == http.StatusConflict:
				conflicts++
				if secs, err := strconv.Atoi(a.retryAfter); a.code != "conflict" || err != nil || secs < 1 {
					t.Errorf("request %d: 409 %q with Retry-After %q; want conflict and a Retry-After", i, a.code, a.retryAfter)
				}
			default:
				t.Errorf("request %d = %d %s", i, a.status, a.code)
			}
		}
		if firsts != 1 || len(ids) != 1 {
			t.Errorf("%d requests made a job, answers name jobs %v; want one job", firsts, ids)
		}
		t.Logf("%d of %d requests answered 409 while the first uploaded", conflicts, n)
		if n := e.countJobs(t, u.ID); n != 1 {
			t.Errorf("%d jobs, want 1", n)
		}
		if files := e.videoFiles(t, u.ID); len(files) != 1 {
			t.Errorf("stored videos %v, want 1", files)
		}
	})

	t.Run("ErrSameKeyOtherFile", func(t *testing.T) {
		u := e.deps.SignUp(t, e.gw.URL)
		if resp, _ := e.uploadWithKey(t, u.Token, "k", "a.mp4", "video"); resp.Status != http.StatusAccepted {
			t.Fatalf("first upload = %d %s", resp.Status, resp.Body)
		}
		resp, _ := e.uploadWithKey(t, u.Token, "k", "b.mp4", "video")
		if resp.Status != http.StatusUnprocessableEntity || resp.ErrorCode() != "idempotency_mismatch" {
			t.Errorf("same key, another file = %d %s; want 422 idempotency_mismatch", resp.Status, resp.Body)
		}
		// A raw upload of another declared size under one key.
		raw := func(size int) testenv.Response {
			req := testenv.NewRequest(t, http.MethodPost, e.gw.URL+"/api/v1/videos", strings.NewReader(strings.Repeat("v", size)), "video/mp4", u.Token)
			req.Header.Set("X-Filename", "raw.mp4")
			req.Header.Set("Idempotency-Key", "raw")
			return testenv.Do(t, req)
		}
		if resp := raw(10); resp.Status != http.StatusAccepted {
			t.Fatalf("raw upload = %d %s", resp.Status, resp.Body)
		}
		if resp := raw(11); resp.Status != http.StatusUnprocessableEntity || resp.ErrorCode() != "idempotency_mismatch" {
			t.Errorf("same key, another size = %d %s; want 422 idempotency_mismatch", resp.Status, resp.Body)
		}
		if n := e.countJobs(t, u.ID); n != 2 {
			t.Errorf("%d jobs, want 2", n)
		}
		if files := e.videoFiles(t, u.ID); len(files) != 2 {
			t.Errorf("stored videos %v, want 2", files)
		}
	})

	t.Run("ErrBadKey", func(t *testing.T) {
		u := e.deps.SignUp(t, e.gw.URL)
		for name, keys := range map[string][]string{
			"Empty":       {""},
			"TooLong":     {strings.Repeat("k", 256)},
			"NotASCII":    {"caf\xc3\xa9"},
			"ControlChar": {"a\tb"},
			"TwoKeys":     {"a", "b"},
		} {
			body, ct := gatewaytest.Multipart([3]string{"file", "clip.mp4", "video"})
			req := testenv.NewRequest(t, http.MethodPost, e.gw.URL+"/api/v1/videos", body, ct, u.Token)
			req.Header["Idempotency-Key"] = keys
			if resp := testenv.Do(t, req); resp.Status != http.StatusBadRequest || resp.ErrorCode() != "invalid" {
				t.Errorf("%s: %d %s; want 400 invalid", name, resp.Status, resp.Body)
			}
		}
		if n := e.countJobs(t, u.ID); n != 0 {
			t.Errorf("%d jobs, want 0", n)
		}
		if resp, _ := e.uploadWithKey(t, u.Token, strings.Repeat("~", 255), "clip.mp4", "video"); resp.Status != http.StatusAccepted {
			t.Errorf("a key of 255 characters = %d %s", resp.Status, resp.Body)
		}
	})

	t.Run("RetryAfterAFailedAttempt", func(t *testing.T) {
		u := e.deps.SignUp(t, e.gw.URL)
		const size = 900000
		// Half the video, then the connection drops.
		conn, err := net.Dial("tcp", strings.TrimPrefix(e.gw.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST /api/v1/videos HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer %s\r\nContent-Type: video/mp4\r\n"+
			"X-Filename: cut.mp4\r\nIdempotency-Key: cut-1\r\nContent-Length: %d\r\n\r\n", u.Token, size)
		_, _ = conn.Write(make([]byte, size/3))
		time.Sleep(300 * time.Millisecond)
		conn.Close()

		var resp testenv.Response
		testenv.Eventually(t, 20*time.Second, func() bool {
			req := testenv.NewRequest(t, http.MethodPost, e.gw.URL+"/api/v1/videos", bytes.NewReader(make([]byte, size)), "video/mp4", u.Token)
			req.Header.Set("X-Filename", "cut.mp4")
			req.Header.Set("Idempotency-Key", "cut-1")
			resp = testenv.Do(t, req)
			return resp.Status != http.StatusConflict // the cut attempt may hold the key a moment
		}, "the retry kept answering 409")
		if resp.Status != http.StatusAccepted || resp.Header.Get("Idempotent-Replayed") != "" {
			t.Fatalf("retry after a cut upload = %d %v %s; want 202, not replayed", resp.Status, resp.Header, resp.Body)
		}
		if n := e.countJobs(t, u.ID); n != 1 {
			t.Errorf("%d jobs, want 1", n)
		}
		testenv.Eventually(t, 20*time.Second, func() bool { return len(e.videoFiles(t, u.ID)) == 1 },
			"stored videos %v, want the retry's alone", e.videoFiles(t, u.ID))
	})

	t.Run("UsersDoNotShareKeys", func(t *testing.T) {
		alice, bob := e.deps.SignUp(t, e.gw.URL), e.deps.SignUp(t, e.gw.URL)
		ra, a := e.uploadWithKey(t, alice.Token, "shared", "clip.mp4", "video")
		rb, b := e.uploadWithKey(t, bob.Token, "shared", "clip.mp4", "video")
		if ra.Status != http.StatusAccepted || rb.Status != http.StatusAccepted || a.ID == b.ID || rb.Header.Get("Idempotent-Replayed") != "" {
			t.Fatalf("alice = %d %s, bob = %d %s; want two jobs", ra.Status, ra.Body, rb.Status, rb.Body)
		}
		if again, j := e.uploadWithKey(t, alice.Token, "shared", "clip.mp4", "video"); again.Status != http.StatusAccepted || j.ID != a.ID {
			t.Errorf("alice's retry = %d %s; want her job %s", again.Status, again.Body, a.ID)
		}
		if e.countJobs(t, alice.ID) != 1 || e.countJobs(t, bob.ID) != 1 {
			t.Errorf("jobs: alice %d, bob %d; want 1 each", e.countJobs(t, alice.ID), e.countJobs(t, bob.ID))
		}
	})

	t.Run("DeletedJobFreesItsKey", func(t *testing.T) {
		u := e.deps.SignUp(t, e.gw.URL)
		_, j := e.uploadWithKey(t, u.Token, "del", "clip.mp4", "video")
		if del := testenv.Do(t, testenv.NewRequest(t, http.MethodDelete, e.gw.URL+"/api/v1/jobs/"+j.ID, nil, "", u.Token)); del.Status != http.StatusNoContent {
			t.Fatalf("delete = %d %s", del.Status, del.Body)
		}
		resp, k := e.uploadWithKey(t, u.Token, "del", "clip.mp4", "video")
		if resp.Status != http.StatusAccepted || k.ID == j.ID || resp.Header.Get("Idempotent-Replayed") != "" {
			t.Errorf("upload after its job's delete = %d %s; want a new job", resp.Status, resp.Body)
		}
	})
}
