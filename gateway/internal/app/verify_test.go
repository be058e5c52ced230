package app_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/audiomill/audiomill/gateway/internal/gatewaytest"
	"github.com/audiomill/audiomill/platform/broker"
	"github.com/audiomill/audiomill/platform/events"
	"github.com/audiomill/audiomill/platform/testenv"
)

// An account whose address is not verified is refused uploads (403
// email_unverified, nothing recorded, so nothing is ever emailed on its
// behalf) until its owner opens the link of the verification email, which
// the test reads from the event auth publishes for the notifier.
func TestUnverifiedEmailCannotUpload(t *testing.T) {
	e := newEnv(t, nil)
	queue := "gatewaytest-mail-" + broker.NewID()[:10]
	testenv.BindQueue(t, e.deps.AMQPURL, queue, events.TypeAccountVerify)
	u := e.deps.SignUpUnverified(t, e.gw.URL)
	if c, err := testenv.UnverifiedClaims(u.Token); err != nil || c.EmailVerified == nil || *c.EmailVerified {
		t.Fatalf("token of a new account: email_verified %v (%v)", c.EmailVerified, err)
	}
	upload := func(path, token string) testenv.Response {
		body, ct := gatewaytest.Multipart([3]string{"file", "a.mp4", "video bytes"})
		return testenv.Do(t, testenv.NewRequest(t, http.MethodPost, e.gw.URL+path, body, ct, token))
	}
	resp := upload("/api/v1/videos", u.Token)
	if resp.Status != http.StatusForbidden || resp.ErrorCode() != "email_unverified" {
		t.Fatalf("upload before verifying = %d %s", resp.Status, resp.Body)
	}
	if resp := upload("/upload", u.Token); resp.Status != http.StatusForbidden {
		t.Errorf("seed upload before verifying = %d %s", resp.Status, resp.Body)
	}
	if n := e.countJobs(t, u.ID); n != 0 {
		t.Errorf("%d jobs recorded for an unverified account", n)
	}

	env, err := broker.DecodeEnvelope(testenv.NextMessage(t, e.deps.AMQPURL, queue, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	p, err := events.Decode[events.AccountVerify](env.Payload)
	if err != nil || p.UserID != u.ID || p.Email != u.Email {
		t.Fatalf("verification event %+v (%v)", p, err)
	}
	resp = testenv.Do(t, testenv.NewRequest(t, http.MethodGet, e.gw.URL+"/api/v1/verify?token="+url.QueryEscape(p.Token), nil, "", ""))
	if resp.Status != http.StatusOK {
		t.Fatalf("verify = %d %s", resp.Status, resp.Body)
	}
	// The token issued before still says unverified; a new login says verified.
	if resp := upload("/api/v1/videos", u.Token); resp.Status != http.StatusForbidden {
		t.Errorf("upload with the token from before verifying = %d %s", resp.Status, resp.Body)
	}
	creds, _ := json.Marshal(map[string]string{"email": u.Email, "password": u.Password})
	resp = testenv.Do(t, testenv.NewRequest(t, http.MethodPost, e.gw.URL+"/api/v1/token", bytes.NewReader(creds), "application/json", ""))
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	resp.JSON(t, &tok)
	if resp := upload("/api/v1/videos", tok.AccessToken); resp.Status != http.StatusAccepted {
		t.Fatalf("upload after verifying = %d %s", resp.Status, resp.Body)
	}
}
