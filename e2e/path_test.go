package e2e_test

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/audiomill/audiomill/platform/testenv"
)

// The user path, through the edge of the stack `make up` started (make test
// starts it): sign up, log in, upload, watch the job, read the email,
// download the MP3, and what another user and a silent video get.

// edgeURL is the running stack's edge (EDGE_URL, default the make-up edge).
func edgeURL(t testing.TB) string {
	t.Helper()
	u := cmp.Or(os.Getenv("EDGE_URL"), "http://127.0.0.1:8080")
	resp, err := http.Get(u + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the edge at %s does not answer (%v); start the stack with `make up`", u, err)
	}
	resp.Body.Close()
	return u
}

// user is a signed-up account with an access token.
type user struct {
	email, password, token string
}

func call(t testing.TB, method, url, token string, body io.Reader, hdr ...string) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b, resp.Header
}

func signUpUser(t testing.TB, edge string) user {
	t.Helper()
	u := user{email: fmt.Sprintf("path-%d@example.com", time.Now().UnixNano()), password: "path-password-1"}
	creds := fmt.Sprintf(`{"email":%q,"password":%q}`, u.email, u.password)
	if st, b, _ := call(t, http.MethodPost, edge+"/api/v1/users", "", strings.NewReader(creds), "Content-Type", "application/json"); st != http.StatusAccepted {
		t.Fatalf("sign-up = %d %s", st, b)
	}
	// Uploads need a verified address: open the link of the email.
	if st, b, _ := call(t, http.MethodGet, edge+verificationPath(t, u.email), "", nil); st != http.StatusOK {
		t.Fatalf("verification link = %d %s", st, b)
	}
	st, b, _ := call(t, http.MethodPost, edge+"/api/v1/token", "", strings.NewReader(creds), "Content-Type", "application/json")
	var tok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	if st != http.StatusOK || json.Unmarshal(b, &tok) != nil || tok.AccessToken == "" || tok.TokenType != "Bearer" {
		t.Fatalf("login = %d %s", st, b)
	}
	u.token = tok.AccessToken
	return u
}

// verificationLink finds the verification link in an email's text.
var verificationLink = regexp.MustCompile(`/api/v1/verify\?token=[A-Za-z0-9_%-]+`)

// verificationPath waits for the verification email to address in MailDev
// and returns its link's path and query (its host is the stack's PUBLIC_URL).
func verificationPath(t testing.TB, address string) string {
	t.Helper()
	isVerification := func(e email) bool { return verificationLink.MatchString(e.Text) }
	return verificationLink.FindString(mailTo(t, address, 1, isVerification)[0].Text)
}

// video generates a clip of seconds with (or without) an audio track.
func video(t testing.TB, seconds int, withAudio bool) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "clip.mp4")
	args := []string{"-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"}
	if withAudio {
		args = append(args, "-f", "lavfi", "-i", "sine=frequency=440", "-c:a", "aac")
	}
	args = append(args, "-t", strconv.Itoa(seconds), "-c:v", "libx264", "-pix_fmt", "yuv420p", "-y", out)
	if b, err := exec.Command("ffmpeg", args...).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func multipartBody(t testing.TB, name string, data []byte) (io.Reader, string) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	part, err := w.CreateFormFile("file", name)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = part.Write(data)
	_ = w.Close()
	return &buf, w.FormDataContentType()
}

type jobState struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Reason string `json:"reason"`
	Audio  *struct {
		ID              string  `json:"id"`
		DurationSeconds float64 `json:"duration_seconds"`
	} `json:"audio"`
}

// awaitJob polls the job until it is done or failed, recording the states seen.
func awaitJob(t testing.TB, edge string, u user, id string) (jobState, []string) {
	t.Helper()
	var j jobState
	var seen []string
	testenv.Eventually(t, 90*time.Second, func() bool {
		st, b, _ := call(t, http.MethodGet, edge+"/api/v1/jobs/"+id, u.token, nil)
		if st != http.StatusOK || json.Unmarshal(b, &j) != nil {
			t.Fatalf("GET job = %d %s", st, b)
		}
		if len(seen) == 0 || seen[len(seen)-1] != j.Status {
			seen = append(seen, j.Status)
		}
		return j.Status == "done" || j.Status == "failed"
	}, "job %s never finished", id)
	return j, seen
}

type email struct {
	Subject string        `json:"subject"`
	Text    string        `json:"text"`
	To      []mailAddress `json:"to"`
}

type mailAddress struct {
	Address string `json:"address"`
}

// emailsTo waits until MailDev holds want emails sent to address on the
// account's behalf (its verification email aside) and returns them.
func emailsTo(t testing.TB, address string, want int) []email {
	t.Helper()
	return mailTo(t, address, want, func(e email) bool { return !verificationLink.MatchString(e.Text) })
}

// mailTo waits until MailDev holds want emails to address that keep
// accepts, and returns them.
func mailTo(t testing.TB, address string, want int, keep func(email) bool) []email {
	t.Helper()
	api := testenv.MailDevURL(t)
	var mine []email
	testenv.Eventually(t, 30*time.Second, func() bool {
		st, b, _ := call(t, http.MethodGet, api+"/email", "", nil)
		var all []email
		if st != http.StatusOK || json.Unmarshal(b, &all) != nil {
			return false
		}
		mine = mine[:0]
		for _, e := range all {
			if keep(e) && slices.ContainsFunc(e.To, func(to mailAddress) bool { return to.Address == address }) {
				mine = append(mine, e)
			}
		}
		return len(mine) >= want
	}, "%d email(s) to %s never arrived", want, address)
	return mine
}

// mp3Duration probes data with ffprobe and returns its format and duration.
func mp3Duration(t testing.TB, data []byte) (string, float64) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "out.mp3")
	if err := os.WriteFile(f, data, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ffprobe", "-v", "error", "-show_entries", "format=format_name,duration", "-of", "csv=p=0", f).Output()
	if err != nil {
		t.Fatalf("ffprobe: %v", err)
	}
	name, dur, _ := strings.Cut(strings.TrimSpace(string(out)), ",")
	d, _ := strconv.ParseFloat(dur, 64)
	return name, d
}

func TestUserPath(t *testing.T) {
	edge := edgeURL(t)
	alice := signUpUser(t, edge)

	// The seed's Basic-auth login answers the bare token.
	req, _ := http.NewRequest(http.MethodPost, edge+"/login", nil)
	req.SetBasicAuth(alice.email, alice.password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	seedToken, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.Count(string(seedToken), ".") != 2 {
		t.Fatalf("/login = %d %q", resp.StatusCode, seedToken)
	}

	// Upload through the API.
	clip := video(t, 4, true)
	body, ct := multipartBody(t, "holiday.mp4", clip)
	st, b, hdr := call(t, http.MethodPost, edge+"/api/v1/videos", alice.token, body, "Content-Type", ct)
	var accepted jobState
	if st != http.StatusAccepted || json.Unmarshal(b, &accepted) != nil || accepted.Status != "queued" {
		t.Fatalf("upload = %d %s", st, b)
	}
	if loc := hdr.Get("Location"); loc != "/api/v1/jobs/"+accepted.ID {
		t.Errorf("Location = %q", loc)
	}
	job, seen := awaitJob(t, edge, alice, accepted.ID)
	t.Logf("job states seen: queued (at upload) → %v", seen)
	if job.Status != "done" || job.Audio == nil {
		t.Fatalf("job = %+v, want done with audio", job)
	}

	// The email names the job's link and the MP3 id.
	mails := emailsTo(t, alice.email, 1)
	if len(mails) != 1 || !strings.Contains(mails[0].Subject, "holiday.mp4") ||
		!strings.Contains(mails[0].Text, "/api/v1/jobs/"+job.ID+"/audio") || !strings.Contains(mails[0].Text, job.Audio.ID) {
		t.Fatalf("emails to %s = %+v", alice.email, mails)
	}

	// Download through the link and through the seed's /download.
	for _, path := range []string{"/api/v1/jobs/" + job.ID + "/audio", "/download?fid=" + job.Audio.ID} {
		st, mp3, _ := call(t, http.MethodGet, edge+path, alice.token, nil)
		if st != http.StatusOK {
			t.Fatalf("GET %s = %d %s", path, st, mp3)
		}
		format, dur := mp3Duration(t, mp3)
		if format != "mp3" || dur < 3.8 || dur > 4.3 {
			t.Fatalf("GET %s: %s of %.2fs, want an MP3 of about 4s", path, format, dur)
		}
	}

	// The seed's /upload (with the token /login gave) makes a job too.
	body, ct = multipartBody(t, "seed.mp4", clip)
	if st, b, _ := call(t, http.MethodPost, edge+"/upload", string(seedToken), body, "Content-Type", ct); st != http.StatusOK || string(b) != "success!" {
		t.Fatalf("/upload = %d %q", st, b)
	}
	st, b, _ = call(t, http.MethodGet, edge+"/api/v1/jobs", alice.token, nil)
	var list struct{ Jobs []jobState }
	if st != http.StatusOK || json.Unmarshal(b, &list) != nil || len(list.Jobs) != 2 {
		t.Fatalf("jobs = %d %s", st, b)
	}
	if seedJob, _ := awaitJob(t, edge, alice, list.Jobs[0].ID); seedJob.Status != "done" {
		t.Fatalf("seed upload's job = %+v", seedJob)
	}

	// Another user sees none of it.
	bob := signUpUser(t, edge)
	for _, path := range []string{"/api/v1/jobs/" + job.ID, "/api/v1/jobs/" + job.ID + "/audio", "/download?fid=" + job.Audio.ID} {
		if st, b, _ := call(t, http.MethodGet, edge+path, bob.token, nil); st != http.StatusNotFound {
			t.Errorf("bob GET %s = %d %s, want 404", path, st, b)
		}
	}

	// A video without audio fails with its reason, and the email says so.
	failed, _ := awaitJob(t, edge, alice, upload(t, edge, alice, "silent.mp4", video(t, 2, false)))
	if failed.Status != "failed" || !strings.Contains(failed.Reason, "no audio track") {
		t.Fatalf("silent job = %+v, want failed: no audio track", failed)
	}
	mails = emailsTo(t, alice.email, 3)
	found := false
	for _, m := range mails {
		found = found || (strings.Contains(m.Subject, "silent.mp4") && strings.Contains(m.Text, "no audio track"))
	}
	if !found {
		t.Fatalf("no failure email naming the reason among %+v", mails)
	}
}
