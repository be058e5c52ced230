package e2e_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/audiomill/audiomill/e2e/stack"
	"github.com/audiomill/audiomill/platform/testenv"
)

// Faults of the running `make up` stack. Each ends with every accepted
// upload converted and emailed exactly once.

// stackScript runs scripts/<name> of the checkout against its running stack.
func stackScript(t testing.TB, name string, args ...string) {
	t.Helper()
	root, err := stack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(root, "scripts", name), args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// stackPID returns the pid of a process the stack started (var/run/<name>.pid),
// failing when this checkout's stack did not start it.
func stackPID(t testing.TB, name string) int {
	t.Helper()
	root, err := stack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "var", "run", name+".pid"))
	if err != nil {
		t.Fatalf("%s was not started by this checkout's stack (`make up`): %v", name, err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || syscall.Kill(pid, 0) != nil {
		t.Fatalf("%s is not running (pid file %q)", name, line)
	}
	return pid
}

// upload sends clip as name and returns the accepted job's id.
func upload(t testing.TB, edge string, u user, name string, clip []byte) string {
	t.Helper()
	body, ct := multipartBody(t, name, clip)
	st, b, _ := call(t, http.MethodPost, edge+"/api/v1/videos", u.token, body, "Content-Type", ct)
	var j jobState
	if st != http.StatusAccepted || json.Unmarshal(b, &j) != nil {
		t.Fatalf("upload = %d %s", st, b)
	}
	return j.ID
}

// exactlyOneEmailEach checks, after a grace period for duplicates, that u
// got exactly want emails (one per job).
func exactlyOneEmailEach(t testing.TB, u user, want int) {
	t.Helper()
	emailsTo(t, u.email, want)
	time.Sleep(3 * time.Second)
	if got := emailsTo(t, u.email, want); len(got) != want {
		t.Fatalf("%d emails to %s, want exactly %d", len(got), u.email, want)
	}
}

func TestFaultSMTPSinkDown(t *testing.T) {
	edge := edgeURL(t)
	u := signUpUser(t, edge)
	if err := syscall.Kill(stackPID(t, "maildev"), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stackScript(t, "deps.sh", "start") }) // never leave it down

	id := upload(t, edge, u, "while-smtp-down.mp4", video(t, 2, true))
	if j, _ := awaitJob(t, edge, u, id); j.Status != "done" {
		t.Fatalf("job = %+v", j)
	}
	time.Sleep(2 * time.Second) // the notifier has tried and failed by now
	stackScript(t, "deps.sh", "start")
	exactlyOneEmailEach(t, u, 1)
}

func TestFaultConverterKilledMidConversion(t *testing.T) {
	edge := edgeURL(t)
	u := signUpUser(t, edge)
	// Ten minutes of sound behind a tiny picture: seconds of conversion.
	clip := longAudioClip(t, 600)
	id := upload(t, edge, u, "long.mp4", clip)

	var j jobState
	deadline := time.Now().Add(60 * time.Second)
	for j.Status != "converting" {
		if time.Now().After(deadline) {
			t.Fatalf("job never started converting: %+v", j)
		}
		_, b, _ := call(t, http.MethodGet, edge+"/api/v1/jobs/"+id, u.token, nil)
		_ = json.Unmarshal(b, &j)
		if j.Status == "done" || j.Status == "failed" {
			t.Fatalf("job finished before the converter could be killed: %+v", j)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := syscall.Kill(stackPID(t, "converter"), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	stackScript(t, "up.sh") // starts what is not running, leaves the rest

	done, _ := awaitJob(t, edge, u, id)
	if done.Status != "done" || done.Audio == nil || done.Audio.DurationSeconds < 599 {
		t.Fatalf("job after the kill = %+v", done)
	}
	// One MP3 for the job in the user's audio folder, one email.
	st, b, _ := call(t, http.MethodGet, edge+"/storage/v1/buckets/audio/files?limit=100", u.token, nil)
	var list struct {
		Files []struct{ ID, Path string } `json:"files"`
	}
	if st != http.StatusOK || json.Unmarshal(b, &list) != nil || len(list.Files) != 1 || list.Files[0].ID != done.Audio.ID {
		t.Fatalf("the user's MP3s = %d %s, want exactly the job's", st, b)
	}
	exactlyOneEmailEach(t, u, 1)
}

// longAudioClip makes a video of seconds with a 16x16 picture at 1 frame/s
// and a tone: small and quick to make, slow enough to convert to catch.
func longAudioClip(t testing.TB, seconds int) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "long.mp4")
	cmd := exec.Command("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=c=blue:size=16x16:rate=1",
		"-f", "lavfi", "-i", "sine=frequency=330", "-t", strconv.Itoa(seconds),
		"-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", "-y", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFaultRabbitMQRestartDuringUploads(t *testing.T) {
	edge := edgeURL(t)
	testenv.RabbitMQExclusive(t) // no other test uses the broker meanwhile
	u := signUpUser(t, edge)
	clip := video(t, 2, true)
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			_ = exec.Command("rabbitmqctl", "start_app").Run()
		}
	})

	var accepted []string
	uploads := make(chan struct{})
	go func() {
		defer close(uploads)
		for i := range 8 {
			body, ct := multipartBody(t, fmt.Sprintf("burst-%d.mp4", i), clip)
			req, _ := http.NewRequest(http.MethodPost, edge+"/api/v1/videos", body)
			req.Header.Set("Authorization", "Bearer "+u.token)
			req.Header.Set("Content-Type", ct)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Logf("upload %d: %v", i, err)
			} else {
				t.Logf("upload %d: %d", i, resp.StatusCode)
				var j jobState
				if resp.StatusCode == http.StatusAccepted && json.NewDecoder(resp.Body).Decode(&j) == nil {
					accepted = append(accepted, j.ID)
				}
				resp.Body.Close()
			}
			time.Sleep(500 * time.Millisecond)
		}
	}()
	time.Sleep(700 * time.Millisecond)
	if out, err := exec.Command("rabbitmqctl", "stop_app").CombinedOutput(); err != nil {
		t.Fatalf("rabbitmqctl stop_app: %v\n%s", err, out)
	}
	time.Sleep(2 * time.Second)
	if out, err := exec.Command("rabbitmqctl", "start_app").CombinedOutput(); err != nil {
		t.Fatalf("rabbitmqctl start_app: %v\n%s", err, out)
	}
	restarted = true
	<-uploads
	t.Logf("%d of 8 uploads accepted across the restart", len(accepted))
	if len(accepted) == 0 {
		t.Fatal("no upload was accepted")
	}
	for _, id := range accepted {
		if j, _ := awaitJob(t, edge, u, id); j.Status != "done" {
			t.Fatalf("job %s = %+v, want done", id, j)
		}
	}
	exactlyOneEmailEach(t, u, len(accepted))
}
