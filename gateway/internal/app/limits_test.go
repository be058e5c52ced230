package app_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/audiomill/audiomill/gateway/internal/gatewaytest"
	"github.com/audiomill/audiomill/platform/testenv"
)

// TestUploadRateLimit: over GATEWAY_UPLOADS_PER_MINUTE a user's upload is
// 429 rate_limited with Retry-After, through the API and the seed route,
// and records nothing; another user is not affected.
func TestUploadRateLimit(t *testing.T) {
	e := newEnv(t, map[string]string{"GATEWAY_UPLOADS_PER_MINUTE": "2"})
	u := e.deps.SignUp(t, e.gw.URL)
	other := e.deps.SignUp(t, e.gw.URL)

	for i := range 2 {
		if resp, _ := e.upload(t, u.Token, "clip.mp4", "video"); resp.Status != http.StatusAccepted {
			t.Fatalf("upload %d = %d %s", i+1, resp.Status, resp.Body)
		}
	}
	resp, _ := e.upload(t, u.Token, "clip.mp4", "video")
	secs, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	if resp.Status != http.StatusTooManyRequests || resp.ErrorCode() != "rate_limited" || secs < 1 || secs > 60 {
		t.Fatalf("third upload = %d Retry-After %q %s; want 429 rate_limited with Retry-After 1-60",
			resp.Status, resp.Header.Get("Retry-After"), resp.Body)
	}
	body, ct := gatewaytest.Multipart([3]string{"file", "seed.mp4", "video"})
	seed := testenv.Do(t, testenv.NewRequest(t, http.MethodPost, e.gw.URL+"/upload", body, ct, u.Token))
	if seed.Status != http.StatusTooManyRequests || seed.Header.Get("Retry-After") == "" {
		t.Errorf("seed upload over the limit = %d %s", seed.Status, seed.Body)
	}
	if n := e.countJobs(t, u.ID); n != 2 {
		t.Errorf("%d jobs recorded, want 2", n)
	}
	if resp, _ := e.upload(t, other.Token, "clip.mp4", "video"); resp.Status != http.StatusAccepted {
		t.Errorf("another user's upload = %d %s", resp.Status, resp.Body)
	}
	if !strings.Contains(e.gw.Logs.String(), "upload rate limited") {
		t.Errorf("no log line of the refusal")
	}
}
