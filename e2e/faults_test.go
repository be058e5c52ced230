package e2e_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
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
	stopStackProcess(t, "maildev")

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
	if mp3s := storedFiles(t, u, "audio"); len(mp3s) != 1 || mp3s[0].ID != done.Audio.ID {
		t.Fatalf("the user's MP3s = %+v, want exactly the job's", mp3s)
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
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			_ = exec.Command("rabbitmqctl", "start_app").Run()
		}
	})

	burst := uploadBurst(t, edge, u, video(t, 2, true), 8, 500*time.Millisecond)
	time.Sleep(700 * time.Millisecond)
	if out, err := exec.Command("rabbitmqctl", "stop_app").CombinedOutput(); err != nil {
		t.Fatalf("rabbitmqctl stop_app: %v\n%s", err, out)
	}
	time.Sleep(2 * time.Second)
	if out, err := exec.Command("rabbitmqctl", "start_app").CombinedOutput(); err != nil {
		t.Fatalf("rabbitmqctl start_app: %v\n%s", err, out)
	}
	restarted = true
	accepted := acceptedJobs(<-burst)
	t.Logf("%d of 8 uploads accepted across the restart", len(accepted))
	if len(accepted) == 0 {
		t.Fatal("no upload was accepted")
	}
	allDoneAndEmailedOnce(t, edge, u, accepted)
}

// attempt is one upload of a burst: the answer's status (0 when the request
// itself failed), how long the answer took, and the job it created.
type attempt struct {
	status int
	took   time.Duration
	job    string
	err    error
}

// uploadBurst uploads clip n times in the background, one every interval
// (after the previous answer); the channel yields the attempts at the end.
func uploadBurst(t testing.TB, edge string, u user, clip []byte, n int, interval time.Duration) <-chan []attempt {
	done, finished := make(chan []attempt, 1), make(chan struct{})
	t.Cleanup(func() { <-finished }) // no logging after the test, even one that failed early
	go func() {
		var all []attempt
		defer close(finished)
		defer func() { done <- all }()
		for i := range n {
			body, ct := multipartBody(t, fmt.Sprintf("burst-%d.mp4", i), clip)
			a := tryUpload(edge, u, body, ct)
			t.Logf("upload %d: %d in %v (error: %v)", i, a.status, a.took.Round(time.Millisecond), a.err)
			all = append(all, a)
			time.Sleep(interval)
		}
	}()
	return done
}

// slowUpload uploads clip in the background as a body that trickles in over
// about d; the channel yields the attempt, whose took counts from the end
// of the body.
func slowUpload(t testing.TB, edge string, u user, clip []byte, d time.Duration) <-chan attempt {
	body, ct := multipartBody(t, "slow.mp4", clip)
	whole, _ := io.ReadAll(body)
	pr, pw := io.Pipe()
	const pieces = 20
	sent := make(chan time.Time, 1)
	go func() {
		defer func() { sent <- time.Now() }()
		for i := range pieces {
			if _, err := pw.Write(whole[i*len(whole)/pieces : (i+1)*len(whole)/pieces]); err != nil {
				return
			}
			time.Sleep(d / pieces)
		}
		_ = pw.Close()
	}()
	done, finished := make(chan attempt, 1), make(chan struct{})
	t.Cleanup(func() { <-finished })
	go func() {
		defer close(finished)
		a := tryUpload(edge, u, pr, ct)
		_ = pr.Close()
		a.took = time.Since(<-sent)
		t.Logf("slow upload: %d %v after its body ended (error: %v)", a.status, a.took.Round(time.Millisecond), a.err)
		done <- a
	}()
	return done
}

// tryUpload posts body as a video and reports the answer.
func tryUpload(edge string, u user, body io.Reader, contentType string) attempt {
	req, _ := http.NewRequest(http.MethodPost, edge+"/api/v1/videos", body)
	req.Header.Set("Authorization", "Bearer "+u.token)
	req.Header.Set("Content-Type", contentType)
	start := time.Now()
	var a attempt
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		a.err = err
	} else {
		a.status = resp.StatusCode
		var j jobState
		if resp.StatusCode == http.StatusAccepted && json.NewDecoder(resp.Body).Decode(&j) == nil {
			a.job = j.ID
		}
		resp.Body.Close()
	}
	a.took = time.Since(start)
	return a
}

// acceptedJobs returns the jobs of the accepted attempts.
func acceptedJobs(attempts []attempt) []string {
	var ids []string
	for _, a := range attempts {
		if a.job != "" {
			ids = append(ids, a.job)
		}
	}
	return ids
}

// allDoneAndEmailedOnce waits for every job to end done and checks that u got
// exactly one email per job.
func allDoneAndEmailedOnce(t testing.TB, edge string, u user, jobs []string) {
	t.Helper()
	for _, id := range jobs {
		if j, _ := awaitJob(t, edge, u, id); j.Status != "done" {
			t.Fatalf("job %s = %+v, want done", id, j)
		}
	}
	exactlyOneEmailEach(t, u, len(jobs))
}

// storageReadToken returns a token of the stack's converter service
// account, from the stack's own auth (the edge may route a token request to
// an auth another package's test runs, which knows no such account): it reads (and lists) every owner's
// videos and MP3s (scopes storage:read:videos and storage:read:audio), and
// the file-storage API takes no user's token unless an admin granted the
// user the role storage.
func storageReadToken(t testing.TB) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"converter"},
		"client_secret": {testenv.StackServiceSecret(t, "converter")}}
	st, b, _ := call(t, http.MethodPost, stack.StackURL(t, "auth")+"/v1/token", "", strings.NewReader(form.Encode()),
		"Content-Type", "application/x-www-form-urlencoded")
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if st != http.StatusOK || json.Unmarshal(b, &tok) != nil || tok.AccessToken == "" {
		t.Fatalf("service token of the converter's account = %d %s", st, b)
	}
	return tok.AccessToken
}

type storedFile struct{ ID, Path, Owner string }

// storedFiles lists u's files in bucket (the gateway and the converter store
// them under the user's id), with the converter's read scopes, at the
// stack's own filestorage.
func storedFiles(t testing.TB, u user, bucket string) []storedFile {
	t.Helper()
	sub := subjectOf(t, u.token)
	q := url.Values{"prefix": {sub + "/"}, "limit": {"1000"}}
	st, b, _ := call(t, http.MethodGet, stack.StackURL(t, "filestorage")+"/v1/buckets/"+bucket+"/files?"+q.Encode(), storageReadToken(t), nil)
	var list struct {
		Files []storedFile `json:"files"`
	}
	if st != http.StatusOK || json.Unmarshal(b, &list) != nil {
		t.Fatalf("list %s = %d %s", bucket, st, b)
	}
	for _, f := range list.Files {
		if f.Owner != sub {
			t.Fatalf("%s/%s under the user's folder belongs to %q", bucket, f.Path, f.Owner)
		}
	}
	return list.Files
}

// storedExactly checks that u's jobs, videos and MP3s are those of the
// accepted jobs and nothing else: no half-stored upload is visible.
func storedExactly(t testing.TB, edge string, u user, accepted []string) {
	t.Helper()
	var page struct {
		Jobs []struct {
			ID    string `json:"id"`
			Video struct {
				ID string `json:"id"`
			} `json:"video"`
		} `json:"jobs"`
	}
	st, b, _ := call(t, http.MethodGet, edge+"/api/v1/jobs?limit=100", u.token, nil)
	if st != http.StatusOK || json.Unmarshal(b, &page) != nil {
		t.Fatalf("GET jobs = %d %s", st, b)
	}
	want := map[string]bool{}
	for _, id := range accepted {
		want[id] = true
	}
	videos := map[string]bool{}
	for _, j := range page.Jobs {
		if !want[j.ID] {
			t.Errorf("job %s was never accepted", j.ID)
		}
		videos[j.Video.ID] = true
	}
	if len(page.Jobs) != len(accepted) {
		t.Errorf("%d jobs, want the %d accepted", len(page.Jobs), len(accepted))
	}
	for _, bucket := range []string{"videos", "audio"} {
		files := storedFiles(t, u, bucket)
		if len(files) != len(accepted) {
			t.Errorf("%d files in %s, want one per accepted job (%d): %+v", len(files), bucket, len(accepted), files)
		}
		for _, f := range files {
			if bucket == "videos" && !videos[f.ID] {
				t.Errorf("video %s (%s) belongs to no job", f.ID, f.Path)
			}
		}
	}
}

// stopStackProcess sends SIGTERM to a process the stack started and waits
// until it is gone; scripts/deps.sh start brings it back, also if the test
// fails before it does.
func stopStackProcess(t *testing.T, name string) {
	t.Helper()
	pid := stackPID(t, name)
	t.Cleanup(func() { stackScript(t, "deps.sh", "start") })
	start := time.Now()
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, func() bool { return syscall.Kill(pid, 0) != nil }, "%s (pid %d) did not stop", name, pid)
	t.Logf("%s stopped %v after SIGTERM", name, time.Since(start).Round(time.Millisecond))
}

func TestFaultDatabaseStoppedDuringUploads(t *testing.T) {
	testenv.MongoExclusive(t) // no other test uses the database meanwhile
	databaseStoppedDuringUploads(t, "the file database", func() { stopStackProcess(t, "ferretdb") },
		func() { stackScript(t, "deps.sh", "start") })
}

// TestFaultPostgresStoppedDuringUploads stops the PostgreSQL server (the
// jobs' and the accounts' records) for 10 s while uploads go on.
func TestFaultPostgresStoppedDuringUploads(t *testing.T) {
	testenv.PostgresExclusive(t) // no other test uses the server meanwhile
	databaseStoppedDuringUploads(t, "PostgreSQL", func() { stopPostgres(t) }, func() { startPostgres(t) })
}

// databaseStoppedDuringUploads: uploads go on every second while stop stops
// a database for 10 s, then start brings it back. Every upload
// is accepted (and then converted and emailed exactly once) or refused fast
// with 503; nothing half-written stays; uploads work again by themselves.
func databaseStoppedDuringUploads(t *testing.T, what string, stop, start func()) {
	edge := edgeURL(t)
	u := signUpUser(t, edge)
	clip := video(t, 2, true)

	burst := uploadBurst(t, edge, u, clip, 20, time.Second)
	time.Sleep(2 * time.Second)
	slow := slowUpload(t, edge, u, clip, 6*time.Second) // in flight when the database stops
	stop()
	stopped := time.Now()
	time.Sleep(10 * time.Second)
	start()
	t.Logf("%s back after %v", what, time.Since(stopped).Round(time.Millisecond))

	attempts := append(<-burst, <-slow)
	var slowest time.Duration
	refused := 0
	for i, a := range attempts {
		switch a.status {
		case http.StatusAccepted:
		case http.StatusServiceUnavailable:
			refused++
			slowest = max(slowest, a.took)
		default:
			t.Errorf("upload %d = %d %v; want 202 or 503", i, a.status, a.err)
		}
	}
	t.Logf("%d of %d uploads refused with 503 while %s was down, the slowest refusal %v after its body",
		refused, len(attempts), what, slowest.Round(time.Millisecond))
	if refused == 0 {
		t.Errorf("no upload was refused while %s was down", what)
	}
	// A database that is gone fails within the driver's connect or server
	// selection timeout (2-3 s); one that hangs mid-operation within its
	// operation timeout (10 s).
	if slowest > 10*time.Second {
		t.Errorf("a refusal took %v after its body ended; want a fast 503, not a hang", slowest)
	}
	// Uploads work again.
	accepted := acceptedJobs(attempts)
	testenv.Eventually(t, 30*time.Second, func() bool {
		a := <-uploadBurst(t, edge, u, clip, 1, 0)
		accepted = append(accepted, acceptedJobs(a)...)
		return a[0].status == http.StatusAccepted
	}, "uploads never worked again after %s came back", what)

	allDoneAndEmailedOnce(t, edge, u, accepted)
	storedExactly(t, edge, u, accepted)
}

// stopPostgres stops every local PostgreSQL cluster (fast: open sessions are
// cut, as in a crash of the server's clients) and waits until it no longer
// answers; startPostgres brings it back, also if the test fails before it
// does. The clusters are started again as they were, not by
// scripts/deps.sh: that would record the server as the stack's own, and
// `make down` would then stop a server the machine shares.
func stopPostgres(t *testing.T) {
	t.Helper()
	t.Cleanup(func() { startPostgres(t) })
	pgClusters(t, "stop", "-m", "fast")
	testenv.Eventually(t, 20*time.Second, func() bool { return !postgresReady() },
		"PostgreSQL still answers after pg_ctlcluster stop")
	t.Log("PostgreSQL stopped")
}

// startPostgres starts every local PostgreSQL cluster and waits until it answers.
func startPostgres(t *testing.T) {
	t.Helper()
	if postgresReady() {
		return
	}
	pgClusters(t, "start")
	testenv.Eventually(t, 60*time.Second, postgresReady, "PostgreSQL does not answer after pg_ctlcluster start")
}

func postgresReady() bool {
	return exec.Command("pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432").Run() == nil
}

// pgClusters runs pg_ctlcluster ACTION ARGS... on every local cluster.
func pgClusters(t *testing.T, action string, args ...string) {
	t.Helper()
	out, err := exec.Command("pg_lsclusters", "-h").Output()
	if err != nil {
		t.Fatalf("pg_lsclusters: %v (the fault test stops the local PostgreSQL server)", err)
	}
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		cmd := exec.Command("pg_ctlcluster", append([]string{"--skip-systemctl-redirect", f[0], f[1], action}, args...)...)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("pg_ctlcluster %s %s %s: %v\n%s", f[0], f[1], action, err, b)
		}
	}
}

// passingIDs returns the ids of the passing instances of the platform's
// services in the Consul agent at addr.
func passingIDs(t testing.TB, addr string) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	for _, name := range []string{"auth", "gateway", "filestorage", "converter", "notifier"} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v1/health/service/"+name+"?passing=true", nil)
		testenv.ConsulHeader(t, req)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil
		}
		var entries []struct{ Service struct{ ID string } }
		err = json.NewDecoder(resp.Body).Decode(&entries)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err != nil {
			return nil
		}
		for _, e := range entries {
			ids[e.Service.ID] = true
		}
	}
	return ids
}

func TestFaultConsulAgentStopped(t *testing.T) {
	edge := edgeURL(t)
	addr := testenv.ConsulExclusive(t) // no other test uses the agent meanwhile
	u := signUpUser(t, edge)
	clip := video(t, 2, true)
	before := passingIDs(t, addr)
	if len(before) < 5 {
		t.Fatalf("passing before the stop: %v; want the stack's five services", before)
	}

	// GETs through the edge all along, and uploads across the outage.
	gets := startLoad(2, newClient(), func(int, int) *http.Request {
		req, _ := http.NewRequest(http.MethodGet, edge+"/api/v1/jobs?limit=5", nil)
		req.Header.Set("Authorization", "Bearer "+u.token)
		return req
	})
	burst := uploadBurst(t, edge, u, clip, 6, 2*time.Second)
	time.Sleep(time.Second)
	stopStackProcess(t, "consul")
	stopped, servedBefore := time.Now(), gets.ok.Load()
	time.Sleep(10 * time.Second)
	duringOutage := gets.ok.Load() - servedBefore
	stackScript(t, "deps.sh", "start")
	back := time.Now()
	t.Logf("agent back after %v; %d GETs served while it was away", back.Sub(stopped).Round(time.Millisecond), duringOutage)

	testenv.Eventually(t, 20*time.Second, func() bool {
		now := passingIDs(t, addr)
		for id := range before {
			if !now[id] {
				return false
			}
		}
		return true
	}, "the services did not register again: want %v, have %v", before, passingIDs(t, addr))
	t.Logf("all %d instances registered and passing %v after the agent came back", len(before),
		time.Since(back).Round(time.Millisecond))
	time.Sleep(5 * time.Second) // the edge renders from the new agent meanwhile
	gets.stop()
	gets.check(t)

	attempts := <-burst
	accepted := acceptedJobs(attempts)
	if len(accepted) != len(attempts) {
		t.Errorf("%d of %d uploads accepted while the agent was away or rejoining; want all", len(accepted), len(attempts))
	}
	allDoneAndEmailedOnce(t, edge, u, accepted)
}
