package app_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/audiomill/audiomill/filestorage/client"
	"github.com/audiomill/audiomill/gateway/internal/gatewaytest"
	"github.com/audiomill/audiomill/platform/events"
	"github.com/audiomill/audiomill/platform/testenv"
)

const testLinkKey = "0123456789abcdef0123456789abcdef0123456789abcdef"

// sessionReq is a request to the session routes as the page sends them
// (CSRF header and same-origin Origin) unless the test strips them.
func sessionReq(t *testing.T, method, u string, body string, cookie *http.Cookie, hdr ...string) testenv.Response {
	t.Helper()
	req := testenv.NewRequest(t, method, u, strings.NewReader(body), "application/json", "")
	if body == "" {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	if cookie != nil {
		req.AddCookie(&http.Cookie{Name: cookie.Name, Value: cookie.Value})
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	return testenv.Do(t, req)
}

func refreshCookie(t *testing.T, resp testenv.Response) *http.Cookie {
	t.Helper()
	for _, raw := range resp.Header.Values("Set-Cookie") {
		c, err := http.ParseSetCookie(raw)
		if err == nil && c.Name == "audiomill_refresh" {
			c.Raw = raw
			return c
		}
	}
	return nil
}

type sessionView struct {
	AccessToken   string `json:"access_token"`
	ExpiresIn     int64  `json:"expires_in"`
	Email         string `json:"email"`
	EmailVerified bool   `json:"email_verified"`
	RefreshToken  string `json:"refresh_token"`
}

// The page's session: the cookie's attributes, no refresh token in JSON,
// rotation, the CSRF defence (a cross-site refresh or logout is refused),
// logout revoking the session's tokens, and ?all=true.
func TestWebSession(t *testing.T) {
	e := newEnv(t, map[string]string{"GATEWAY_LINK_KEY": testLinkKey})
	u := e.deps.SignUp(t, e.gw.URL)
	base := e.gw.URL + "/api/v1/session"
	origin := e.gw.URL
	creds := fmt.Sprintf(`{"email":%q,"password":%q}`, u.Email, u.Password)
	csrf := []string{"X-Audiomill-CSRF", "1", "Origin", origin, "Sec-Fetch-Site", "same-origin"}

	var loginBody []byte
	login := func() (sessionView, *http.Cookie) {
		t.Helper()
		resp := sessionReq(t, http.MethodPost, base, creds, nil, "Origin", origin)
		if resp.Status != http.StatusOK {
			t.Fatalf("login = %d %s", resp.Status, resp.Body)
		}
		var v sessionView
		resp.JSON(t, &v)
		loginBody = resp.Body
		c := refreshCookie(t, resp)
		if c == nil {
			t.Fatalf("login set no cookie: %q", resp.Header.Values("Set-Cookie"))
		}
		return v, c
	}
	v, c := login()
	if v.AccessToken == "" || v.RefreshToken != "" || v.Email != u.Email || !v.EmailVerified || v.ExpiresIn <= 0 ||
		strings.Contains(string(loginBody), "refresh") {
		t.Fatalf("login body %s", loginBody)
	}
	if c.Path != "/api/v1/session" || !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode ||
		c.MaxAge != int((30*24*time.Hour).Seconds()) || c.Value == "" {
		t.Fatalf("cookie %q", c.Raw)
	}

	// Bad input: each a JSON error with a code, nothing issued.
	for _, bad := range []struct {
		name, body string
		hdr        []string
		status     int
		code       string
	}{
		{"wrong password", fmt.Sprintf(`{"email":%q,"password":"nope"}`, u.Email), nil, 401, "unauthorized"},
		{"no password", fmt.Sprintf(`{"email":%q}`, u.Email), nil, 400, "invalid"},
		{"not JSON", `email=x`, nil, 400, "invalid"},
		{"unknown field", `{"email":"a@b.c","password":"x","admin":true}`, nil, 400, "invalid"},
		{"cross-site login", creds, []string{"Origin", "https://evil.example"}, 403, "forbidden"},
		{"cross-site fetch", creds, []string{"Sec-Fetch-Site", "cross-site"}, 403, "forbidden"},
	} {
		resp := sessionReq(t, http.MethodPost, base, bad.body, nil, bad.hdr...)
		if resp.Status != bad.status || resp.ErrorCode() != bad.code || refreshCookie(t, resp) != nil && refreshCookie(t, resp).Value != "" {
			t.Errorf("%s: %d %s, want %d %s and no cookie", bad.name, resp.Status, resp.Body, bad.status, bad.code)
		}
	}

	// The attacks on refresh: no CSRF header, a cross-site Origin or
	// Sec-Fetch-Site (the cookie is sent, SameSite aside): 403, no token,
	// and the cookie still works afterwards.
	for _, bad := range []struct {
		name string
		hdr  []string
	}{
		{"no CSRF header", []string{"Origin", origin}},
		{"CSRF header not 1", []string{"X-Audiomill-CSRF", "yes"}},
		{"cross-site Origin", []string{"X-Audiomill-CSRF", "1", "Origin", "https://evil.example"}},
		{"null Origin", []string{"X-Audiomill-CSRF", "1", "Origin", "null"}},
		{"cross-site fetch", []string{"X-Audiomill-CSRF", "1", "Sec-Fetch-Site", "cross-site"}},
		{"same-site fetch", []string{"X-Audiomill-CSRF", "1", "Sec-Fetch-Site", "same-site"}},
	} {
		resp := sessionReq(t, http.MethodPost, base+"/refresh", "", c, bad.hdr...)
		if resp.Status != http.StatusForbidden || resp.ErrorCode() != "forbidden" || strings.Contains(string(resp.Body), "access_token") {
			t.Errorf("refresh with %s = %d %s, want 403 forbidden", bad.name, resp.Status, resp.Body)
		}
	}
	if !strings.Contains(e.gw.Logs.String(), "cross-origin request refused") {
		t.Error("the refused cross-site refresh was not logged")
	}
	if resp := sessionReq(t, http.MethodPost, base+"/refresh", "", nil, csrf...); resp.Status != http.StatusUnauthorized || resp.ErrorCode() != "unauthorized" {
		t.Errorf("refresh without the cookie = %d %s, want 401", resp.Status, resp.Body)
	}

	// Refresh rotates: a new token and cookie; the old cookie is spent.
	resp := sessionReq(t, http.MethodPost, base+"/refresh", "", c, csrf...)
	if resp.Status != http.StatusOK {
		t.Fatalf("refresh = %d %s", resp.Status, resp.Body)
	}
	var v2 sessionView
	resp.JSON(t, &v2)
	c2 := refreshCookie(t, resp)
	if v2.AccessToken == "" || v2.AccessToken == v.AccessToken || v2.RefreshToken != "" || c2 == nil || c2.Value == c.Value || !c2.HttpOnly {
		t.Fatalf("refresh: %+v cookie %v", v2, c2)
	}

	// Logout: 204, the cookie cleared; the refresh token and the session's
	// access tokens no longer work.
	resp = sessionReq(t, http.MethodDelete, base, "", c2, append(csrf, "Authorization", "Bearer "+v2.AccessToken)...)
	if cl := refreshCookie(t, resp); resp.Status != http.StatusNoContent || cl == nil || cl.MaxAge >= 0 || cl.Value != "" {
		t.Fatalf("logout = %d %q", resp.Status, resp.Header.Values("Set-Cookie"))
	}
	if resp := sessionReq(t, http.MethodPost, base+"/refresh", "", c2, csrf...); resp.Status != http.StatusUnauthorized {
		t.Errorf("refresh after logout = %d %s, want 401", resp.Status, resp.Body)
	}
	for _, tok := range []string{v.AccessToken, v2.AccessToken} {
		if r := testenv.Do(t, testenv.NewRequest(t, http.MethodGet, e.gw.URL+"/api/v1/jobs", nil, "", tok)); r.Status != http.StatusUnauthorized {
			t.Errorf("an access token of the ended session = %d, want 401", r.Status)
		}
	}
	// Logout needs the CSRF header too, and a session.
	if resp := sessionReq(t, http.MethodDelete, base, "", c2); resp.Status != http.StatusForbidden {
		t.Errorf("logout without the CSRF header = %d", resp.Status)
	}
	if resp := sessionReq(t, http.MethodDelete, base, "", nil, csrf...); resp.Status != http.StatusUnauthorized {
		t.Errorf("logout without a session = %d", resp.Status)
	}
	if resp := sessionReq(t, http.MethodDelete, base+"?all=maybe", "", c2, csrf...); resp.Status != http.StatusBadRequest || resp.ErrorCode() != "invalid" {
		t.Errorf("logout ?all=maybe = %d %s", resp.Status, resp.Body)
	}

	// ?all=true ends every session of the user, not only the cookie's.
	va, ca := login()
	vb, cb := login()
	if resp := sessionReq(t, http.MethodDelete, base+"?all=true", "", ca, csrf...); resp.Status != http.StatusNoContent {
		t.Fatalf("logout everywhere = %d %s", resp.Status, resp.Body)
	}
	if resp := sessionReq(t, http.MethodPost, base+"/refresh", "", cb, csrf...); resp.Status != http.StatusUnauthorized {
		t.Errorf("the other session's refresh after logout everywhere = %d", resp.Status)
	}
	for _, tok := range []string{va.AccessToken, vb.AccessToken} {
		if r := testenv.Do(t, testenv.NewRequest(t, http.MethodGet, e.gw.URL+"/api/v1/jobs", nil, "", tok)); r.Status != http.StatusUnauthorized {
			t.Errorf("a token after logout everywhere = %d, want 401", r.Status)
		}
	}
}

// doneJob uploads a video for u and completes its job with an MP3 as the
// converter would; it returns the job id and the MP3.
func (e *env) doneJob(t *testing.T, u gatewaytest.User, name string) (string, []byte) {
	t.Helper()
	resp, job := e.upload(t, u.Token, name, "video bytes of "+name)
	if resp.Status != http.StatusAccepted {
		t.Fatalf("upload = %d %s", resp.Status, resp.Body)
	}
	e.nextUploaded(t, job.ID)
	mp3 := bytes.Repeat([]byte("ID3mp3frame"), 4000)
	stored, err := e.files.Upload(testenv.Context(t, 10*time.Second), "audio", u.ID+"/"+job.ID+".mp3", bytes.NewReader(mp3),
		client.UploadOptions{ContentType: "audio/mpeg", Owner: u.ID})
	if err != nil {
		t.Fatal(err)
	}
	e.publish(t, job.ID, events.AudioReady{VideoID: job.Video.ID, AudioID: stored.ID, OwnerID: u.ID, OwnerEmail: u.Email,
		FileName: name, Size: int64(len(mp3)), DurationSeconds: 3, BitrateKbps: 128})
	e.waitStatus(t, u.Token, job.ID, "done")
	return job.ID, mp3
}

// Signed links: the owner gets one; it serves the MP3 without a token
// (attachment, Range), and a tampered one, another job's, an expired one or
// a malformed one is 403 with a code; someone else's job gets no link.
func TestSignedLinks(t *testing.T) {
	e := newEnv(t, map[string]string{"GATEWAY_LINK_KEY": testLinkKey, "GATEWAY_LINK_TTL": "3s"})
	alice := e.deps.SignUp(t, e.gw.URL)
	bob := e.deps.SignUp(t, e.gw.URL)
	id, mp3 := e.doneJob(t, alice, "holiday clip.mp4")
	other, _ := e.doneJob(t, alice, "second.mp4")

	link := func(tok, job string) testenv.Response {
		return testenv.Do(t, testenv.NewRequest(t, http.MethodPost, e.gw.URL+"/api/v1/jobs/"+job+"/link", nil, "", tok))
	}
	if r := link(bob.Token, id); r.Status != http.StatusNotFound {
		t.Errorf("a link to someone else's job = %d %s, want 404", r.Status, r.Body)
	}
	if r := link("", id); r.Status != http.StatusUnauthorized {
		t.Errorf("a link without a token = %d", r.Status)
	}
	resp := link(alice.Token, id)
	var l struct {
		URL       string    `json:"url"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	resp.JSON(t, &l)
	if resp.Status != http.StatusOK || !strings.HasPrefix(l.URL, "/api/v1/jobs/"+id+"/audio?") || time.Until(l.ExpiresAt) > 4*time.Second {
		t.Fatalf("link = %d %s", resp.Status, resp.Body)
	}
	get := func(u string, hdr ...string) testenv.Response {
		req := testenv.NewRequest(t, http.MethodGet, e.gw.URL+u, nil, "", "")
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		return testenv.Do(t, req)
	}
	r := get(l.URL)
	if r.Status != http.StatusOK || !bytes.Equal(r.Body, mp3) || !strings.HasPrefix(r.Header.Get("Content-Disposition"), "attachment") ||
		!strings.Contains(r.Header.Get("Content-Disposition"), "holiday clip.mp3") {
		t.Fatalf("signed GET = %d %q (%d bytes)", r.Status, r.Header.Get("Content-Disposition"), len(r.Body))
	}
	if r := get(l.URL, "Range", "bytes=10-19"); r.Status != http.StatusPartialContent || !bytes.Equal(r.Body, mp3[10:20]) {
		t.Errorf("signed Range = %d %q", r.Status, r.Body)
	}
	q, _ := url.Parse(l.URL)
	exp, sig := q.Query().Get("exp"), q.Query().Get("sig")
	flipped := []byte(sig)
	flipped[3] ^= 0x01
	expN, _ := strconv.ParseInt(exp, 10, 64)
	for _, bad := range []struct{ name, path, code string }{
		{"tampered sig", "/api/v1/jobs/" + id + "/audio?exp=" + exp + "&sig=" + string(flipped), "link_invalid"},
		{"another job", "/api/v1/jobs/" + other + "/audio?exp=" + exp + "&sig=" + sig, "link_invalid"},
		{"later expiry", "/api/v1/jobs/" + id + "/audio?exp=" + strconv.FormatInt(expN+3600, 10) + "&sig=" + sig, "link_invalid"},
		{"no sig", "/api/v1/jobs/" + id + "/audio?exp=" + exp, "link_invalid"},
		{"two sigs", l.URL + "&sig=" + sig, "link_invalid"},
		{"short sig", "/api/v1/jobs/" + id + "/audio?exp=" + exp + "&sig=abc", "link_invalid"},
		{"exp not a number", "/api/v1/jobs/" + id + "/audio?exp=soon&sig=" + sig, "link_invalid"},
		{"malformed job id", "/api/v1/jobs/zzz/audio?exp=" + exp + "&sig=" + sig, "link_invalid"},
	} {
		if r := get(bad.path); r.Status != http.StatusForbidden || r.ErrorCode() != bad.code {
			t.Errorf("%s = %d %s, want 403 %s", bad.name, r.Status, r.Body, bad.code)
		}
	}
	// Without a signature the route still wants the owner's bearer token.
	if r := get("/api/v1/jobs/" + id + "/audio"); r.Status != http.StatusUnauthorized {
		t.Errorf("audio without token or link = %d", r.Status)
	}
	time.Sleep(time.Until(l.ExpiresAt) + 1100*time.Millisecond)
	if r := get(l.URL); r.Status != http.StatusForbidden || r.ErrorCode() != "link_expired" {
		t.Errorf("an expired link = %d %s, want 403 link_expired", r.Status, r.Body)
	}
	if !strings.Contains(e.gw.Logs.String(), "link_expired") {
		t.Error("the expired link was not logged")
	}
}
