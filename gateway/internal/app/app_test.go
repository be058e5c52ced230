package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/audiomill/audiomill/filestorage/client"
	"github.com/audiomill/audiomill/gateway/internal/gatewaytest"
	"github.com/audiomill/audiomill/gateway/internal/jobs"
	"github.com/audiomill/audiomill/gateway/internal/pipeline"
	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/broker"
	"github.com/audiomill/audiomill/platform/events"
	"github.com/audiomill/audiomill/platform/logging"
	"github.com/audiomill/audiomill/platform/pgdb"
	"github.com/audiomill/audiomill/platform/testenv"
)

var bins gatewaytest.Binaries

func TestMain(m *testing.M) {
	os.Exit(testenv.MainInTempDir(m, "gatewaytest-bin-", func(dir string) error {
		bins.Dir = dir
		return nil
	}))
}

// env is one test's stack: auth, filestorage, a gateway, a broker
// connection, a consumer of video.uploaded on a queue of its own.
type env struct {
	deps     *gatewaytest.Deps
	gw       *gatewaytest.Gateway
	conn     *broker.Conn
	uploaded chan broker.Delivery
	files    *client.Client // as the converter (storage:admin)
	// directDB is the gateway's database, reached directly; pool is on it,
	// opened on first use and closed when the test (owner) ends.
	directDB string
	pool     *pgxpool.Pool
	owner    *testing.T
}

func newEnv(t *testing.T, extra map[string]string) *env {
	t.Helper()
	return newEnvFn(t, func(*gatewaytest.Deps) map[string]string { return extra })
}

// newEnvFn is newEnv with the gateway's extra environment made from the deps.
func newEnvFn(t *testing.T, extra func(*gatewaytest.Deps) map[string]string) *env {
	t.Helper()
	e := &env{deps: gatewaytest.StartDeps(t, &bins), owner: t}
	ctx := testenv.Context(t, 5*time.Minute)
	logger, _ := logging.New(io.Discard, "error", "test")
	conn, err := broker.Dial(ctx, e.deps.AMQPURL, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	e.conn = conn
	// The converter's side: a queue of this test's own bound to video.uploaded.
	queue := "gatewaytest-" + fmt.Sprint(time.Now().UnixNano()) + ".video-uploaded"
	e.uploaded = make(chan broker.Delivery, 256)
	cctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = broker.Consume(cctx, conn, broker.QueueSpec{Name: queue, Bindings: []string{events.TypeVideoUploaded}},
			func(_ context.Context, d broker.Delivery) error { e.uploaded <- d; return nil })
	}()
	t.Cleanup(func() { cancel(); <-done })
	// Consume declares the queue asynchronously: wait until it is bound.
	testenv.Eventually(t, 10*time.Second, func() bool { return queueExists(e.deps.AMQPURL, queue) }, "queue %s never declared", queue)

	env := extra(e.deps)
	if env == nil {
		env = map[string]string{}
	}
	if env["DATABASE_URL"] == "" {
		env["DATABASE_URL"] = testenv.NewDatabase(t)
	}
	// A test that sends the gateway through a proxy sets directDB itself.
	e.directDB = env["DATABASE_URL"]
	e.gw = gatewaytest.StartGateway(t, e.deps, env)
	tokens, err := authn.NewTokenSource(authn.TokenSourceOptions{ClientID: "converter",
		ClientSecret: gatewaytest.ConverterSecret, BaseURL: e.deps.AuthURL})
	if err != nil {
		t.Fatal(err)
	}
	e.files, err = client.New(client.Options{BaseURL: e.deps.FilesURL, Token: tokens.Token})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func queueExists(amqpURL, name string) bool {
	return testenv.WithAMQPChannel(amqpURL, func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclarePassive(name, true, false, false, false, nil)
		return err
	}) == nil
}

// nextUploaded waits for the video.uploaded of jobID.
func (e *env) nextUploaded(t *testing.T, jobID string) broker.Delivery {
	t.Helper()
	return e.nextUploadedWithin(t, jobID, 20*time.Second)
}

func (e *env) nextUploadedWithin(t *testing.T, jobID string, limit time.Duration) broker.Delivery {
	t.Helper()
	deadline := time.After(limit)
	for {
		select {
		case d := <-e.uploaded:
			if d.JobID == jobID {
				return d
			}
		case <-deadline:
			t.Fatalf("no video.uploaded for job %s within %v", jobID, limit)
		}
	}
}

// publish publishes an event for jobID as the converter does.
func (e *env) publish(t *testing.T, jobID string, p events.Payload) {
	t.Helper()
	env, err := broker.NewEnvelope(p.EventType(), jobID, "test-correlation", p)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.conn.Publish(testenv.Context(t, 10*time.Second), p.EventType(), env); err != nil {
		t.Fatal(err)
	}
}

// videoFiles lists the stored videos of owner.
func (e *env) videoFiles(t *testing.T, owner string) []string {
	t.Helper()
	var paths []string
	for entry, err := range e.files.List(testenv.Context(t, 10*time.Second), "videos", client.ListOptions{Prefix: ownerDir(owner) + "/"}) {
		if err != nil {
			if strings.Contains(err.Error(), "not_found") {
				return nil
			}
			t.Fatalf("list videos: %v", err)
		}
		if entry.File != nil {
			paths = append(paths, entry.File.Path)
		}
	}
	return paths
}

func ownerDir(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

// countJobs counts owner's jobs in the gateway's database.
func (e *env) countJobs(t *testing.T, owner string) int64 {
	t.Helper()
	var n int64
	if err := e.db(t).QueryRow(testenv.Context(t, 10*time.Second), "select count(*) from jobs where owner = $1", owner).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// db is a pool on the gateway's database (not through any proxy).
func (e *env) db(t *testing.T) *pgxpool.Pool {
	t.Helper()
	if e.pool == nil {
		pool, err := pgdb.Connect(pgdb.Config{URL: e.directDB})
		if err != nil {
			t.Fatal(err)
		}
		e.owner.Cleanup(pool.Close)
		e.pool = pool
	}
	return e.pool
}

// unpublished counts the gateway's events not yet published (and not dead).
func (e *env) unpublished(t *testing.T) int {
	t.Helper()
	var n int
	if err := e.db(t).QueryRow(testenv.Context(t, 10*time.Second),
		"select count(*) from outbox where published_at is null and dead_at is null").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

type jobJSON struct {
	ID       string `json:"id"`
	Status   string `json:"status"`
	Progress *int   `json:"progress"`
	Video    struct {
		ID          string `json:"id"`
		Name        string `json:"name"`
		ContentType string `json:"content_type"`
		Size        int64  `json:"size"`
	} `json:"video"`
	Audio *struct {
		ID              string  `json:"id"`
		Size            int64   `json:"size"`
		DurationSeconds float64 `json:"duration_seconds"`
	} `json:"audio"`
	Reason    string    `json:"reason"`
	CreatedAt time.Time `json:"created_at"`
}

func (e *env) upload(t *testing.T, token, name, content string) (testenv.Response, jobJSON) {
	t.Helper()
	body, ct := gatewaytest.Multipart([3]string{"file", name, content})
	resp := testenv.Do(t, testenv.NewRequest(t, http.MethodPost, e.gw.URL+"/api/v1/videos", body, ct, token))
	var j jobJSON
	if resp.Status == http.StatusAccepted {
		resp.JSON(t, &j)
	}
	return resp, j
}

func (e *env) getJob(t *testing.T, token, id string) (testenv.Response, jobJSON) {
	t.Helper()
	resp := testenv.Do(t, testenv.NewRequest(t, http.MethodGet, e.gw.URL+"/api/v1/jobs/"+id, nil, "", token))
	var j jobJSON
	if resp.Status == http.StatusOK {
		resp.JSON(t, &j)
	}
	return resp, j
}

func (e *env) waitStatus(t *testing.T, token, id, status string) jobJSON {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, j := e.getJob(t, token, id)
		if j.Status == status {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s never became %s (last answer %d %s)", id, status, resp.Status, resp.Body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestUploadConvertDownload is the component test of the issue: signup,
// login, upload, the video.uploaded event, audio.ready making the job done
// and its MP3 downloadable by its owner only, and delete.
func TestUploadConvertDownload(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.deps.SignUp(t, e.gw.URL)
	bob := e.deps.SignUp(t, e.gw.URL)

	// The seed login: Basic in, bare JWT out.
	req := testenv.NewRequest(t, http.MethodPost, e.gw.URL+"/login", nil, "", "")
	req.SetBasicAuth(alice.Email, alice.Password)
	resp := testenv.Do(t, req)
	if resp.Status != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") || strings.Count(string(resp.Body), ".") != 2 {
		t.Fatalf("/login = %d %q %q", resp.Status, resp.Header.Get("Content-Type"), resp.Body)
	}
	token := string(resp.Body)

	video := strings.Repeat("not really a video ", 5000)
	req = testenv.NewRequest(t, http.MethodPost, e.gw.URL+"/api/v1/videos", nil, "", token)
	body, ct := gatewaytest.Multipart([3]string{"file", "holiday clip.mp4", video})
	req.Body, req.Header["Content-Type"] = io.NopCloser(body), []string{ct}
	req.Header.Set("X-Request-Id", "upload-req-1")
	resp = testenv.Do(t, req)
	if resp.Status != http.StatusAccepted {
		t.Fatalf("upload = %d %s", resp.Status, resp.Body)
	}
	var job jobJSON
	resp.JSON(t, &job)
	if job.Status != "queued" || job.Video.Name != "holiday clip.mp4" || job.Video.Size != int64(len(video)) ||
		job.Video.ID == "" || job.CreatedAt.IsZero() || resp.Header.Get("Location") != "/api/v1/jobs/"+job.ID {
		t.Fatalf("upload answer %+v, Location %q", job, resp.Header.Get("Location"))
	}

	d := e.nextUploaded(t, job.ID)
	p, err := events.Decode[events.VideoUploaded](d.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if d.CorrelationID != "upload-req-1" || p.VideoID != job.Video.ID || p.OwnerID != alice.ID || p.OwnerEmail != alice.Email ||
		p.Size != int64(len(video)) || p.FileName != "holiday clip.mp4" {
		t.Fatalf("video.uploaded %+v payload %+v", d.Envelope, p)
	}
	// Marked published after the confirm.
	testenv.Eventually(t, 5*time.Second, func() bool {
		var published bool
		err := e.db(t).QueryRow(context.Background(), "select published_at is not null from outbox where job_id = $1", job.ID).Scan(&published)
		return err == nil && published
	}, "the job's event never marked published")

	// The video is in filestorage with its bytes.
	dl, err := e.files.Download(testenv.Context(t, 10*time.Second), job.Video.ID, client.Range{})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(dl)
	dl.Close()
	if string(got) != video {
		t.Fatalf("stored video differs (%d bytes)", len(got))
	}

	// Progress, then ready, as the converter reports them.
	e.publish(t, job.ID, events.AudioProgress{VideoID: job.Video.ID, Percent: 40})
	j := e.waitStatus(t, token, job.ID, "converting")
	if j.Progress == nil || *j.Progress != 40 {
		t.Fatalf("progress %+v", j)
	}
	// Stored as the converter stores it: the job owner's file.
	mp3 := bytes.Repeat([]byte("ID3mp3frame"), 3000)
	stored, err := e.files.Upload(testenv.Context(t, 10*time.Second), "audio", alice.ID+"/"+job.ID+".mp3", bytes.NewReader(mp3),
		client.UploadOptions{ContentType: "audio/mpeg", Owner: alice.ID})
	if err != nil {
		t.Fatal(err)
	}
	ready := events.AudioReady{VideoID: job.Video.ID, AudioID: stored.ID, OwnerID: alice.ID, OwnerEmail: alice.Email,
		FileName: "holiday clip.mp4", Size: int64(len(mp3)), DurationSeconds: 12.5, BitrateKbps: 128}
	e.publish(t, job.ID, ready)
	j = e.waitStatus(t, token, job.ID, "done")
	if j.Audio == nil || j.Audio.ID != stored.ID || j.Audio.Size != int64(len(mp3)) || j.Audio.DurationSeconds != 12.5 {
		t.Fatalf("done job %+v", j)
	}

	// Redelivered and late events never move a done job back.
	e.publish(t, job.ID, ready)
	e.publish(t, job.ID, events.AudioProgress{VideoID: job.Video.ID, Percent: 70})
	e.publish(t, job.ID, events.AudioFailed{VideoID: job.Video.ID, OwnerID: alice.ID, OwnerEmail: alice.Email,
		FileName: "x.mp4", Reason: "late failure"})
	time.Sleep(1500 * time.Millisecond)
	if _, j := e.getJob(t, token, job.ID); j.Status != "done" || j.Audio == nil {
		t.Fatalf("done job moved: %+v", j)
	}

	audioURL := e.gw.URL + "/api/v1/jobs/" + job.ID + "/audio"
	t.Run("DownloadByOwner", func(t *testing.T) {
		resp := testenv.Do(t, testenv.NewRequest(t, http.MethodGet, audioURL, nil, "", token))
		if resp.Status != http.StatusOK || !bytes.Equal(resp.Body, mp3) || resp.Header.Get("ETag") == "" ||
			!strings.Contains(resp.Header.Get("Content-Disposition"), "holiday clip.mp3") {
			t.Fatalf("GET audio = %d, %d bytes, headers %v", resp.Status, len(resp.Body), resp.Header)
		}
		etag := resp.Header.Get("ETag")
		req := testenv.NewRequest(t, http.MethodGet, audioURL, nil, "", token)
		req.Header.Set("Range", "bytes=10-19")
		resp = testenv.Do(t, req)
		if resp.Status != http.StatusPartialContent || !bytes.Equal(resp.Body, mp3[10:20]) ||
			resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 10-19/%d", len(mp3)) {
			t.Fatalf("range = %d %q %q", resp.Status, resp.Header.Get("Content-Range"), resp.Body)
		}
		req = testenv.NewRequest(t, http.MethodGet, audioURL, nil, "", token)
		req.Header.Set("If-None-Match", etag)
		if resp = testenv.Do(t, req); resp.Status != http.StatusNotModified {
			t.Fatalf("If-None-Match = %d", resp.Status)
		}
		// The seed route, by the MP3's id.
		resp = testenv.Do(t, testenv.NewRequest(t, http.MethodGet, e.gw.URL+"/download?fid="+stored.ID, nil, "", token))
		if resp.Status != http.StatusOK || !bytes.Equal(resp.Body, mp3) {
			t.Fatalf("/download = %d, %d bytes", resp.Status, len(resp.Body))
		}
	})

	t.Run("ErrNotTheOwner", func(t *testing.T) {
		for _, u := range []string{audioURL, e.gw.URL + "/api/v1/jobs/" + job.ID, e.gw.URL + "/download?fid=" + stored.ID} {
			resp := testenv.Do(t, testenv.NewRequest(t, http.MethodGet, u, nil, "", bob.Token))
			if resp.Status != http.StatusNotFound || resp.ErrorCode() != "not_found" {
				t.Errorf("bob GET %s = %d %s; want 404", u, resp.Status, resp.Body)
			}
		}
		resp := testenv.Do(t, testenv.NewRequest(t, http.MethodDelete, e.gw.URL+"/api/v1/jobs/"+job.ID, nil, "", bob.Token))
		if resp.Status != http.StatusNotFound {
			t.Errorf("bob DELETE = %d", resp.Status)
		}
	})

	t.Run("FailedJob", func(t *testing.T) {
		_, other := e.upload(t, token, "broken.mp4", "garbage")
		e.nextUploaded(t, other.ID)
		e.publish(t, other.ID, events.AudioFailed{VideoID: other.Video.ID, OwnerID: alice.ID, OwnerEmail: alice.Email,
			FileName: "broken.mp4", Reason: "the file is not a video ffmpeg can read"})
		j := e.waitStatus(t, token, other.ID, "failed")
		if j.Reason != "the file is not a video ffmpeg can read" {
			t.Fatalf("failed job %+v", j)
		}
		resp := testenv.Do(t, testenv.NewRequest(t, http.MethodGet, e.gw.URL+"/api/v1/jobs/"+other.ID+"/audio", nil, "", token))
		if resp.Status != http.StatusConflict {
			t.Fatalf("audio of a failed job = %d", resp.Status)
		}
	})

	t.Run("ListNewestFirstPaged", func(t *testing.T) {
		for i := range 3 {
			e.upload(t, token, fmt.Sprintf("more-%d.mp4", i), "x")
		}
		var all []string
		cursor := ""
		for range 10 {
			u := e.gw.URL + "/api/v1/jobs?limit=2"
			if cursor != "" {
				u += "&cursor=" + cursor
			}
			resp := testenv.Do(t, testenv.NewRequest(t, http.MethodGet, u, nil, "", token))
			if resp.Status != http.StatusOK {
				t.Fatalf("list = %d %s", resp.Status, resp.Body)
			}
			var page struct {
				Jobs       []jobJSON `json:"jobs"`
				NextCursor string    `json:"next_cursor"`
			}
			resp.JSON(t, &page)
			for _, j := range page.Jobs {
				all = append(all, j.Video.Name)
			}
			if cursor = page.NextCursor; cursor == "" {
				break
			}
		}
		want := []string{"more-2.mp4", "more-1.mp4", "more-0.mp4", "broken.mp4", "holiday clip.mp4"}
		if strings.Join(all, ",") != strings.Join(want, ",") {
			t.Fatalf("jobs %v; want %v", all, want)
		}
		resp := testenv.Do(t, testenv.NewRequest(t, http.MethodGet, e.gw.URL+"/api/v1/jobs", nil, "", bob.Token))
		if resp.Status != http.StatusOK || !strings.Contains(string(resp.Body), `"jobs":[]`) {
			t.Fatalf("bob's list = %d %s", resp.Status, resp.Body)
		}
		for status, want := range map[string]string{"done": "holiday clip.mp4", "failed": "broken.mp4", "converting": ""} {
			resp := testenv.Do(t, testenv.NewRequest(t, http.MethodGet, e.gw.URL+"/api/v1/jobs?status="+status, nil, "", token))
			var page struct {
				Jobs []jobJSON `json:"jobs"`
			}
			resp.JSON(t, &page)
			var names []string
			for _, j := range page.Jobs {
				if j.Status != status {
					t.Errorf("?status=%s listed a %s job", status, j.Status)
				}
				names = append(names, j.Video.Name)
			}
			if strings.Join(names, ",") != want {
				t.Errorf("?status=%s = %v; want %q", status, names, want)
			}
		}
	})

	t.Run("Metrics", func(t *testing.T) {
		resp := testenv.Do(t, testenv.NewRequest(t, http.MethodGet, e.gw.URL+"/metrics", nil, "", ""))
		for _, want := range []string{`gateway_uploads_total{result="accepted"}`, `gateway_upload_bytes_total`,
			`gateway_video_uploaded_published_total{by="upload",result="confirmed"}`,
			`gateway_job_events_total{changed="true",type="audio.ready"}`,
			`gateway_job_events_total{changed="false",type="audio.ready"}`} {
			if !strings.Contains(string(resp.Body), want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
	})

	t.Run("Delete", func(t *testing.T) {
		resp := testenv.Do(t, testenv.NewRequest(t, http.MethodDelete, e.gw.URL+"/api/v1/jobs/"+job.ID, nil, "", token))
		if resp.Status != http.StatusNoContent {
			t.Fatalf("DELETE = %d %s", resp.Status, resp.Body)
		}
		if resp, _ := e.getJob(t, token, job.ID); resp.Status != http.StatusNotFound {
			t.Fatalf("deleted job = %d", resp.Status)
		}
		for _, id := range []string{job.Video.ID, stored.ID} {
			if _, err := e.files.Stat(testenv.Context(t, 10*time.Second), id); err == nil || !strings.Contains(err.Error(), "not_found") {
				t.Errorf("file %s after delete: %v", id, err)
			}
		}
	})
}

// TestForgedAudioReadyIsNotAttached: audio.ready events published past
// the converter (raw, to the exchange) that name an MP3 which is not the
// job owner's (another user's, a file with no owner of theirs, none at all)
// are refused: logged, dead-lettered, the job left as it is, and the other
// user's MP3 never served to the job's owner. The owner's own MP3 is then
// attached.
func TestForgedAudioReadyIsNotAttached(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.deps.SignUp(t, e.gw.URL)
	bob := e.deps.SignUp(t, e.gw.URL)
	_, job := e.upload(t, alice.Token, "alice.mp4", "alice's video")
	e.nextUploaded(t, job.ID)
	ctx := testenv.Context(t, time.Minute)
	store := func(owner, path, content string) client.File {
		t.Helper()
		f, err := e.files.Upload(ctx, "audio", path, strings.NewReader(content), client.UploadOptions{ContentType: "audio/mpeg", Owner: owner})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	bobs := store(bob.ID, bob.ID+"/bob-job.mp3", "bob's private MP3")
	// The converter's own file (owner service:converter): its bucket scope
	// stores only for a named owner, so it names itself.
	services := store(authn.ServiceSubjectPrefix+"converter", "unowned/x.mp3", "the converter's own file")

	forge := func(audioID string) []byte {
		t.Helper()
		p := events.AudioReady{VideoID: job.Video.ID, AudioID: audioID, OwnerID: alice.ID, OwnerEmail: alice.Email,
			FileName: "alice.mp4", Size: 17, DurationSeconds: 1, BitrateKbps: 128}
		env, err := broker.NewEnvelope(events.TypeAudioReady, job.ID, "forged", p)
		if err != nil {
			t.Fatal(err)
		}
		body, err := env.Encode()
		if err != nil {
			t.Fatal(err)
		}
		testenv.PublishRaw(t, e.deps.AMQPURL, broker.Exchange, events.TypeAudioReady,
			amqp.Publishing{ContentType: "application/json", DeliveryMode: amqp.Persistent, Body: body})
		return body
	}
	forged := map[string][]byte{"OtherUsersMP3": forge(bobs.ID), "NotTheOwnersFile": forge(services.ID), "NoSuchFile": forge("000000000000000000000000")}

	dead := map[string]string{}
	testenv.Eventually(t, 20*time.Second, func() bool {
		dead = deadLetters(t, e.deps.AMQPURL, e.gw.StatusQueue+broker.DeadSuffix)
		return len(dead) == len(forged)
	}, "dead letters %d, want %d:\n%s", len(dead), len(forged), e.gw.Logs.String())
	for name, body := range forged {
		if reason, ok := dead[string(body)]; !ok || reason != broker.ReasonPermanent {
			t.Errorf("%s: dead-lettered %v with reason %q", name, ok, reason)
		}
	}
	for _, want := range []string{`"reason":"not_owner"`, `"reason":"no_file"`, "job status event refused"} {
		if !strings.Contains(e.gw.Logs.String(), want) {
			t.Errorf("the gateway's log lacks %s", want)
		}
	}
	if _, j := e.getJob(t, alice.Token, job.ID); j.Status != "queued" || j.Audio != nil {
		t.Fatalf("job after forged events: %+v", j)
	}
	resp := testenv.Do(t, testenv.NewRequest(t, http.MethodGet, e.gw.URL+"/api/v1/jobs/"+job.ID+"/audio", nil, "", alice.Token))
	if resp.Status != http.StatusConflict || bytes.Contains(resp.Body, []byte("bob's private MP3")) {
		t.Fatalf("alice's audio = %d %q; want 409", resp.Status, resp.Body)
	}
	resp = testenv.Do(t, testenv.NewRequest(t, http.MethodGet, e.gw.URL+"/download?fid="+bobs.ID, nil, "", alice.Token))
	if resp.Status != http.StatusNotFound {
		t.Fatalf("alice's /download of bob's MP3 = %d %q", resp.Status, resp.Body)
	}

	// Her own MP3 is attached.
	own := store(alice.ID, alice.ID+"/"+job.ID+".mp3", "alice's MP3")
	e.publish(t, job.ID, events.AudioReady{VideoID: job.Video.ID, AudioID: own.ID, OwnerID: alice.ID, OwnerEmail: alice.Email,
		FileName: "alice.mp4", Size: own.Size, DurationSeconds: 1, BitrateKbps: 128})
	if j := e.waitStatus(t, alice.Token, job.ID, "done"); j.Audio == nil || j.Audio.ID != own.ID {
		t.Fatalf("done job %+v", j)
	}
	resp = testenv.Do(t, testenv.NewRequest(t, http.MethodGet, e.gw.URL+"/metrics", nil, "", ""))
	for _, want := range []string{`gateway_job_events_rejected_total{reason="not_owner",type="audio.ready"} 2`,
		`gateway_job_events_rejected_total{reason="no_file",type="audio.ready"} 1`} {
		if !strings.Contains(string(resp.Body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// deadLetters returns the bodies in the dead-letter queue with their
// reasons, leaving them there (closing the channel requeues them).
func deadLetters(t *testing.T, amqpURL, queue string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := testenv.WithAMQPChannel(amqpURL, func(ch *amqp.Channel) error {
		for {
			d, ok, err := ch.Get(queue, false)
			if err != nil || !ok {
				return err
			}
			reason, _ := d.Headers[broker.ReasonHeader].(string)
			out[string(d.Body)] = reason
		}
	})
	if err != nil && !strings.Contains(err.Error(), "NOT_FOUND") {
		t.Fatalf("dead letters of %s: %v", queue, err)
	}
	return out
}

// TestBadInput has one case per bad input the issue names.
func TestBadInput(t *testing.T) {
	e := newEnv(t, map[string]string{"GATEWAY_MAX_UPLOAD": "1MiB"})
	u := e.deps.SignUp(t, e.gw.URL)
	videos := e.gw.URL + "/api/v1/videos"

	noJobNoFile := func(t *testing.T) {
		t.Helper()
		if n := e.countJobs(t, u.ID); n != 0 {
			t.Errorf("%d jobs recorded", n)
		}
		testenv.Eventually(t, 10*time.Second, func() bool { return len(e.videoFiles(t, u.ID)) == 0 },
			"orphan videos left: %v", e.videoFiles(t, u.ID))
	}

	t.Run("ErrNoToken", func(t *testing.T) {
		for _, tok := range []string{"", "not-a-jwt", "eyJhbGciOiJFZERTQSJ9.e30.c2ln"} {
			body, ct := gatewaytest.Multipart([3]string{"file", "a.mp4", "x"})
			resp := testenv.Do(t, testenv.NewRequest(t, http.MethodPost, videos, body, ct, tok))
			if resp.Status != http.StatusUnauthorized || resp.ErrorCode() != "unauthorized" {
				t.Errorf("token %q: %d %s", tok, resp.Status, resp.Body)
			}
		}
		resp := testenv.Do(t, testenv.NewRequest(t, http.MethodGet, e.gw.URL+"/api/v1/jobs", nil, "", ""))
		if resp.Status != http.StatusUnauthorized {
			t.Errorf("list without token = %d", resp.Status)
		}
	})
	t.Run("ErrNotMultipartNoFileName", func(t *testing.T) {
		resp := testenv.Do(t, testenv.NewRequest(t, http.MethodPost, videos, strings.NewReader("raw"), "video/mp4", u.Token))
		if resp.Status != http.StatusBadRequest || resp.ErrorCode() != "invalid" {
			t.Errorf("raw body without file name = %d %s", resp.Status, resp.Body)
		}
		noJobNoFile(t)
	})
	t.Run("ErrMalformedMultipart", func(t *testing.T) {
		resp := testenv.Do(t, testenv.NewRequest(t, http.MethodPost, videos, strings.NewReader("garbage"),
			"multipart/form-data; boundary=xyz", u.Token))
		if resp.Status != http.StatusBadRequest {
			t.Errorf("malformed multipart = %d %s", resp.Status, resp.Body)
		}
		noJobNoFile(t)
	})
	t.Run("ErrNoFile", func(t *testing.T) {
		body, ct := gatewaytest.Multipart()
		resp := testenv.Do(t, testenv.NewRequest(t, http.MethodPost, videos, body, ct, u.Token))
		if resp.Status != http.StatusBadRequest || !strings.Contains(string(resp.Body), "exactly 1 file required") {
			t.Errorf("no file = %d %s", resp.Status, resp.Body)
		}
		noJobNoFile(t)
	})
	t.Run("ErrTwoFiles", func(t *testing.T) {
		body, ct := gatewaytest.Multipart([3]string{"file", "a.mp4", "one"}, [3]string{"file", "b.mp4", "two"})
		resp := testenv.Do(t, testenv.NewRequest(t, http.MethodPost, videos, body, ct, u.Token))
		if resp.Status != http.StatusBadRequest || !strings.Contains(string(resp.Body), "exactly 1 file required") {
			t.Errorf("two files = %d %s", resp.Status, resp.Body)
		}
		noJobNoFile(t)
	})
	t.Run("ErrEmptyFile", func(t *testing.T) {
		body, ct := gatewaytest.Multipart([3]string{"file", "a.mp4", ""})
		resp := testenv.Do(t, testenv.NewRequest(t, http.MethodPost, videos, body, ct, u.Token))
		if resp.Status != http.StatusBadRequest {
			t.Errorf("empty file = %d %s", resp.Status, resp.Body)
		}
		noJobNoFile(t)
	})
	t.Run("ErrTooLargeStreaming", func(t *testing.T) {
		// Multipart of unknown length (chunked): refused once it crosses 1 MiB.
		pr, pw := io.Pipe()
		body, ct := gatewaytest.Multipart([3]string{"file", "big.mp4", strings.Repeat("v", 3<<20)})
		go func() { _, err := io.Copy(pw, body); pw.CloseWithError(err) }()
		req := testenv.NewRequest(t, http.MethodPost, videos, pr, ct, u.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("oversized upload: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		pr.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), "too_large") {
			t.Errorf("oversized = %d %s", resp.StatusCode, b)
		}
		noJobNoFile(t)
	})
	t.Run("ErrTooLargeRawDeclared", func(t *testing.T) {
		req := testenv.NewRequest(t, http.MethodPost, videos, bytes.NewReader(make([]byte, 2<<20)), "video/mp4", u.Token)
		req.Header.Set("X-Filename", "big.mp4")
		if resp := testenv.Do(t, req); resp.Status != http.StatusRequestEntityTooLarge {
			t.Errorf("declared oversize = %d %s", resp.Status, resp.Body)
		}
		noJobNoFile(t)
	})
	t.Run("ErrClientDisconnects", func(t *testing.T) {
		// Half a video, then the connection drops.
		conn, err := net.Dial("tcp", strings.TrimPrefix(e.gw.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST /api/v1/videos HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer %s\r\nContent-Type: video/mp4\r\nX-Filename: cut.mp4\r\nContent-Length: 900000\r\n\r\n", u.Token)
		_, _ = conn.Write(make([]byte, 300000))
		time.Sleep(300 * time.Millisecond)
		conn.Close()
		time.Sleep(500 * time.Millisecond)
		noJobNoFile(t)
	})
	t.Run("RawUploadAccepted", func(t *testing.T) {
		req := testenv.NewRequest(t, http.MethodPost, videos, strings.NewReader("raw video bytes"), "video/webm", u.Token)
		req.Header.Set("X-Filename", "caf%C3%A9.webm")
		resp := testenv.Do(t, req)
		var j jobJSON
		if resp.Status == http.StatusAccepted {
			resp.JSON(t, &j)
		}
		if resp.Status != http.StatusAccepted || j.Video.Name != "café.webm" || j.Video.ContentType != "video/webm" {
			t.Fatalf("raw upload = %d %s", resp.Status, resp.Body)
		}
		e.nextUploaded(t, j.ID)
		del := testenv.Do(t, testenv.NewRequest(t, http.MethodDelete, e.gw.URL+"/api/v1/jobs/"+j.ID, nil, "", u.Token))
		if del.Status != http.StatusNoContent {
			t.Fatalf("delete = %d", del.Status)
		}
	})
	t.Run("ErrUnknownJob", func(t *testing.T) {
		for _, m := range []string{http.MethodGet, http.MethodDelete} {
			resp := testenv.Do(t, testenv.NewRequest(t, m, e.gw.URL+"/api/v1/jobs/"+jobs.NewID().Hex(), nil, "", u.Token))
			if resp.Status != http.StatusNotFound {
				t.Errorf("%s unknown job = %d", m, resp.Status)
			}
		}
		resp := testenv.Do(t, testenv.NewRequest(t, http.MethodGet, e.gw.URL+"/download?fid=nosuchfile", nil, "", u.Token))
		if resp.Status != http.StatusNotFound {
			t.Errorf("unknown fid = %d", resp.Status)
		}
	})
	t.Run("ErrContentTypeTooLong", func(t *testing.T) {
		// video.uploaded could never carry it: refused, not accepted as a
		// job that is never published.
		long := "video/" + strings.Repeat("x", 194)
		req := testenv.NewRequest(t, http.MethodPost, videos, strings.NewReader("raw video"), long, u.Token)
		req.Header.Set("X-Filename", "long.mp4")
		resp := testenv.Do(t, req)
		if resp.Status != http.StatusBadRequest || resp.ErrorCode() != "invalid" || !strings.Contains(string(resp.Body), "content type") {
			t.Errorf("200-byte content type = %d %s", resp.Status, resp.Body)
		}
		var buf bytes.Buffer
		fmt.Fprintf(&buf, "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"long.mp4\"\r\nContent-Type: %s\r\n\r\nvideo\r\n--b--\r\n", long)
		resp = testenv.Do(t, testenv.NewRequest(t, http.MethodPost, videos, &buf, "multipart/form-data; boundary=b", u.Token))
		if resp.Status != http.StatusBadRequest || resp.ErrorCode() != "invalid" {
			t.Errorf("multipart part with a 200-byte content type = %d %s", resp.Status, resp.Body)
		}
		noJobNoFile(t)
	})
	// Upload input: each refused with 400 invalid before a byte is
	// stored, through both forms of upload.
	refused := func(t *testing.T, name, contentType, mention string) {
		t.Helper()
		req := testenv.NewRequest(t, http.MethodPost, videos, strings.NewReader("raw video"), contentType, u.Token)
		req.Header.Set("X-Filename", url.PathEscape(name))
		resp := testenv.Do(t, req)
		if resp.Status != http.StatusBadRequest || resp.ErrorCode() != "invalid" || !strings.Contains(string(resp.Body), mention) {
			t.Errorf("raw upload %q %q = %d %s; want 400 invalid naming %s", name, contentType, resp.Status, resp.Body, mention)
		}
		var buf bytes.Buffer
		fmt.Fprintf(&buf, "--b\r\nContent-Disposition: form-data; name=\"file\"; filename*=UTF-8''%s\r\nContent-Type: %s\r\n\r\nvideo\r\n--b--\r\n",
			url.PathEscape(name), contentType)
		resp = testenv.Do(t, testenv.NewRequest(t, http.MethodPost, videos, &buf, "multipart/form-data; boundary=b", u.Token))
		if resp.Status != http.StatusBadRequest || resp.ErrorCode() != "invalid" || !strings.Contains(string(resp.Body), mention) {
			t.Errorf("multipart upload %q %q = %d %s; want 400 invalid naming %s", name, contentType, resp.Status, resp.Body, mention)
		}
		noJobNoFile(t)
	}
	t.Run("ErrContentTypeNotMedia", func(t *testing.T) {
		for _, ct := range []string{"text/html", "image/svg+xml", "application/javascript", "video", "video/mp4; =x"} {
			refused(t, "clip.mp4", ct, "content type")
		}
	})
	t.Run("ErrContentType128Bytes", func(t *testing.T) {
		refused(t, "clip.mp4", "video/"+strings.Repeat("x", 122), "content type")
	})
	t.Run("ErrFileName", func(t *testing.T) {
		for _, name := range []string{"a\r\nb.mp4", "clip\u202Eexe.mp4", "a\x00.mp4", strings.Repeat("n", 256) + ".mp4", "..", "\xff.mp4"} {
			refused(t, name, "video/mp4", "file name")
		}
	})
	t.Run("ErrMalformedID", func(t *testing.T) {
		for _, p := range []string{"/api/v1/jobs/xyz", "/api/v1/jobs/123/audio", "/download"} {
			resp := testenv.Do(t, testenv.NewRequest(t, http.MethodGet, e.gw.URL+p, nil, "", u.Token))
			if resp.Status != http.StatusBadRequest || resp.ErrorCode() != "invalid" {
				t.Errorf("GET %s = %d %s", p, resp.Status, resp.Body)
			}
		}
	})
	listCase := func(t *testing.T, query, mention string) {
		t.Helper()
		resp := testenv.Do(t, testenv.NewRequest(t, http.MethodGet, e.gw.URL+"/api/v1/jobs?"+query, nil, "", u.Token))
		if resp.Status != http.StatusBadRequest || resp.ErrorCode() != "invalid" || !strings.Contains(string(resp.Body), mention) ||
			!strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("GET /api/v1/jobs?%s = %d %q %s; want 400 JSON invalid naming %s", query, resp.Status,
				resp.Header.Get("Content-Type"), resp.Body, mention)
		}
	}
	valid := jobs.Cursor{CreatedAt: time.Now(), ID: jobs.NewID()}.String()
	t.Run("ErrMalformedCursor", func(t *testing.T) {
		for _, c := range []string{"nope", "!!!", jobs.NewID().Hex(), valid[:20], valid + "AA", valid + "=",
			"AAAAAAAAAAAAAAAAAAAAAAAAAAA", url.QueryEscape(strings.Repeat("x", 5000))} {
			listCase(t, "cursor="+c, "cursor")
		}
	})
	t.Run("ErrBadStatus", func(t *testing.T) {
		for _, st := range []string{"running", "DONE", "done,failed", "%00", "queued%20"} {
			listCase(t, "status="+st, "status")
		}
	})
	t.Run("ErrBadLimit", func(t *testing.T) {
		for _, l := range []string{"0", "-1", "101", "1e3", "ten", "99999999999999999999"} {
			listCase(t, "limit="+l, "limit")
		}
	})
	t.Run("ValidCursorOfNoJob", func(t *testing.T) {
		// A well-formed cursor is a position, not a job: a page (here
		// empty) rather than an error.
		resp := testenv.Do(t, testenv.NewRequest(t, http.MethodGet, e.gw.URL+"/api/v1/jobs?cursor="+valid+"&status=done&limit=100", nil, "", u.Token))
		if resp.Status != http.StatusOK {
			t.Errorf("valid cursor = %d %s", resp.Status, resp.Body)
		}
	})
}

// TestSeedRoutes: the tutorial clients' /login and /upload.
func TestSeedRoutes(t *testing.T) {
	e := newEnv(t, nil)
	u := e.deps.SignUp(t, e.gw.URL)

	req := testenv.NewRequest(t, http.MethodPost, e.gw.URL+"/login", nil, "", "")
	if resp := testenv.Do(t, req); resp.Status != http.StatusUnauthorized {
		t.Errorf("/login without credentials = %d", resp.Status)
	}
	req = testenv.NewRequest(t, http.MethodPost, e.gw.URL+"/login", nil, "", "")
	req.SetBasicAuth(u.Email, "wrong password!")
	if resp := testenv.Do(t, req); resp.Status != http.StatusUnauthorized {
		t.Errorf("/login wrong password = %d", resp.Status)
	}

	body, ct := gatewaytest.Multipart([3]string{"file", "seed.mp4", "seed video"})
	resp := testenv.Do(t, testenv.NewRequest(t, http.MethodPost, e.gw.URL+"/upload", body, ct, u.Token))
	if resp.Status != http.StatusOK || string(resp.Body) != "success!" {
		t.Fatalf("/upload = %d %q", resp.Status, resp.Body)
	}
	body, ct = gatewaytest.Multipart([3]string{"file", "a.mp4", "a"}, [3]string{"other", "b.mp4", "b"})
	resp = testenv.Do(t, testenv.NewRequest(t, http.MethodPost, e.gw.URL+"/upload", body, ct, u.Token))
	if resp.Status != http.StatusBadRequest || strings.TrimSpace(string(resp.Body)) != "exactly 1 file required" {
		t.Errorf("/upload two files = %d %q", resp.Status, resp.Body)
	}
	resp = testenv.Do(t, testenv.NewRequest(t, http.MethodPost, e.gw.URL+"/upload", strings.NewReader("raw"), "video/mp4", u.Token))
	if resp.Status != http.StatusBadRequest || strings.TrimSpace(string(resp.Body)) != "exactly 1 file required" {
		t.Errorf("/upload raw = %d %q", resp.Status, resp.Body)
	}
	body, ct = gatewaytest.Multipart([3]string{"file", "a.mp4", "a"})
	if resp := testenv.Do(t, testenv.NewRequest(t, http.MethodPost, e.gw.URL+"/upload", body, ct, "")); resp.Status != http.StatusUnauthorized {
		t.Errorf("/upload without token = %d", resp.Status)
	}
	if n := e.countJobs(t, u.ID); n != 1 {
		t.Errorf("%d jobs; want the one accepted upload", n)
	}

	// Logout through the gateway's account routes revokes the token here too.
	resp = testenv.Do(t, testenv.NewRequest(t, http.MethodPost, e.gw.URL+"/api/v1/logout", nil, "", u.Token))
	if resp.Status != http.StatusNoContent {
		t.Fatalf("logout = %d %s", resp.Status, resp.Body)
	}
	resp = testenv.Do(t, testenv.NewRequest(t, http.MethodGet, e.gw.URL+"/api/v1/jobs", nil, "", u.Token))
	if resp.Status != http.StatusUnauthorized {
		t.Errorf("revoked token = %d; want 401", resp.Status)
	}
}

// TestRelayPublishesUnconfirmedJobsOnce: jobs whose event was never
// confirmed (the gateway died, or RabbitMQ was down, between the insert and
// the confirm) are published by the relay, each exactly once even with two
// gateway replicas relaying from the same database, and the events uploads
// published themselves are not published again; and a hundred and fifty
// events that can never be published (written by an older gateway) are set
// aside with their jobs failed, without holding up the others.
func TestRelayPublishesUnconfirmedJobsOnce(t *testing.T) {
	e := newEnv(t, nil)
	gatewaytest.StartGateway(t, e.deps, map[string]string{"DATABASE_URL": e.gw.DatabaseURL})
	store := jobs.NewStore(e.db(t))
	ctx := testenv.Context(t, time.Minute)
	create := func(i int, contentType string, valid bool) jobs.Job {
		t.Helper()
		j := jobs.Job{ID: jobs.NewID(), Owner: "relay-owner", OwnerEmail: "relay@example.com", RequestID: "relay-req",
			Video: jobs.Video{FileID: fmt.Sprintf("vid-%d", i), Name: "v.mp4", ContentType: contentType, Size: 10}}
		ev, err := pipeline.UnvalidatedUploadedEvent(j)
		if valid {
			ev, err = pipeline.UploadedEvent(j)
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Create(ctx, &j, &ev, -time.Second); err != nil { // the upload's claim already ran out
			t.Fatal(err)
		}
		return j
	}
	var bad []jobs.Job
	for i := range 150 {
		bad = append(bad, create(i, strings.Repeat("v", 200), false))
	}
	ids := map[string]bool{}
	for i := range 20 {
		ids[create(i, "video/mp4", true).ID.Hex()] = true
	}
	// Uploads publish their own events, which no relay publishes again.
	u := e.deps.SignUp(t, e.gw.URL)
	for i := range 5 {
		resp, j := e.upload(t, u.Token, fmt.Sprintf("up-%d.mp4", i), "video")
		if resp.Status != http.StatusAccepted {
			t.Fatalf("upload = %d %s", resp.Status, resp.Body)
		}
		ids[j.ID] = true
	}
	n := len(ids)
	seen := map[string]int{}
	deadline := time.After(30 * time.Second)
	for len(seen) < n {
		select {
		case d := <-e.uploaded:
			if ids[d.JobID] {
				seen[d.JobID]++
			}
		case <-deadline:
			t.Fatalf("relay published %d of %d jobs", len(seen), n)
		}
	}
	// Give a duplicate time to show up: past the uploads' claim
	// (GATEWAY_RELAY_AFTER, 2s) and several relay passes.
	timeout := time.After(4 * time.Second)
	for done := false; !done; {
		select {
		case d := <-e.uploaded:
			if ids[d.JobID] {
				seen[d.JobID]++
			}
		case <-timeout:
			done = true
		}
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("job %s published %d times", id, c)
		}
	}
	if u := e.unpublished(t); u != 0 {
		t.Errorf("%d events still unpublished", u)
	}
	for _, j := range bad {
		got, err := store.Get(ctx, j.Owner, j.ID)
		if err != nil || got.Status != jobs.Failed || !strings.Contains(got.Reason, "content_type") {
			t.Fatalf("unpublishable job %s: %s %q %v; want failed naming content_type", j.ID, got.Status, got.Reason, err)
		}
	}
}

// TestDependencyDownAndBack cuts the gateway's links to filestorage,
// RabbitMQ and the database in turn: each outage answers 503 with a JSON
// error within a bounded time (RabbitMQ's: the upload is accepted and its
// event published once the broker is back), and the gateway recovers by
// itself when the link is restored.
func TestDependencyDownAndBack(t *testing.T) {
	var files, db, amqpLink *testenv.Proxy
	var direct string
	e := newEnvFn(t, func(d *gatewaytest.Deps) map[string]string {
		files = testenv.StartProxy(t, d.Files.Addr)
		// The database is a fresh one, reached through a proxy of the
		// test's own: cutting it leaves the shared server running.
		direct = testenv.NewDatabase(t)
		dbURL, err := url.Parse(direct)
		if err != nil {
			t.Fatal(err)
		}
		db = testenv.StartProxy(t, dbURL.Host)
		dbURL.Host = db.Addr
		amqpURL, err := url.Parse(d.AMQPURL)
		if err != nil {
			t.Fatal(err)
		}
		amqpLink = testenv.StartProxy(t, amqpURL.Host)
		amqpURL.Host = amqpLink.Addr
		return map[string]string{"FILESTORAGE_URL": "http://" + files.Addr, "DATABASE_URL": dbURL.String(),
			"AMQP_URL": amqpURL.String()}
	})
	e.directDB = direct
	u := e.deps.SignUp(t, e.gw.URL)
	within := func(t *testing.T, limit time.Duration, f func() testenv.Response) testenv.Response {
		t.Helper()
		start := time.Now()
		resp := f()
		if d := time.Since(start); d > limit {
			t.Errorf("answered after %v; want within %v", d, limit)
		}
		return resp
	}

	t.Run("Filestorage", func(t *testing.T) {
		files.Cut()
		resp := within(t, 10*time.Second, func() testenv.Response { r, _ := e.upload(t, u.Token, "a.mp4", "video"); return r })
		if resp.Status != http.StatusServiceUnavailable || resp.ErrorCode() != "unavailable" {
			t.Errorf("upload with filestorage down = %d %s", resp.Status, resp.Body)
		}
		if n := e.countJobs(t, u.ID); n != 0 {
			t.Errorf("%d jobs recorded", n)
		}
		files.Restore()
		resp, j := e.upload(t, u.Token, "a.mp4", "video")
		if resp.Status != http.StatusAccepted {
			t.Fatalf("upload after filestorage came back = %d %s", resp.Status, resp.Body)
		}
		e.nextUploaded(t, j.ID)
	})

	t.Run("RabbitMQ", func(t *testing.T) {
		amqpLink.Cut()
		// The gateway stays ready (the edge keeps sending uploads) and says
		// the broker is degraded.
		testenv.Eventually(t, 15*time.Second, func() bool {
			resp, err := http.Get(e.gw.URL + "/readyz")
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			var body struct{ Checks map[string]string }
			return json.NewDecoder(resp.Body).Decode(&body) == nil &&
				resp.StatusCode == http.StatusOK && body.Checks["rabbitmq"] == "degraded"
		}, "readyz never reported the broker degraded (with 200)")
		resp, j := e.upload(t, u.Token, "during-outage.mp4", "video")
		if resp.Status != http.StatusAccepted {
			t.Fatalf("upload with RabbitMQ down = %d %s; want it accepted", resp.Status, resp.Body)
		}
		amqpLink.Restore()
		e.nextUploadedWithin(t, j.ID, 45*time.Second)
	})

	t.Run("Database", func(t *testing.T) {
		_, existing := e.upload(t, u.Token, "before.mp4", "video")
		e.nextUploaded(t, existing.ID)
		jobsBefore := e.countJobs(t, u.ID)
		db.Cut()
		resp := within(t, 5*time.Second, func() testenv.Response {
			return testenv.Do(t, testenv.NewRequest(t, http.MethodGet, e.gw.URL+"/api/v1/jobs", nil, "", u.Token))
		})
		if resp.Status != http.StatusServiceUnavailable || resp.ErrorCode() != "unavailable" {
			t.Errorf("list with the database down = %d %s", resp.Status, resp.Body)
		}
		resp = within(t, 5*time.Second, func() testenv.Response { r, _ := e.getJob(t, u.Token, existing.ID); return r })
		if resp.Status != http.StatusServiceUnavailable || resp.ErrorCode() != "unavailable" {
			t.Errorf("a job with the database down = %d %s", resp.Status, resp.Body)
		}
		before := len(e.videoFiles(t, u.ID))
		resp = within(t, 20*time.Second, func() testenv.Response { r, _ := e.upload(t, u.Token, "b.mp4", "video"); return r })
		if resp.Status != http.StatusServiceUnavailable || resp.ErrorCode() != "unavailable" {
			t.Errorf("upload with the database down = %d %s", resp.Status, resp.Body)
		}
		testenv.Eventually(t, 10*time.Second, func() bool { return len(e.videoFiles(t, u.ID)) == before },
			"the video of a refused upload was left in filestorage")
		db.Restore()
		testenv.Eventually(t, 20*time.Second, func() bool {
			resp := testenv.Do(t, testenv.NewRequest(t, http.MethodGet, e.gw.URL+"/api/v1/jobs", nil, "", u.Token))
			return resp.Status == http.StatusOK
		}, "the gateway did not recover when the database came back")
		// Nothing half-written: no job for the refused upload.
		if n := e.countJobs(t, u.ID); n != jobsBefore {
			t.Errorf("%d jobs after the outage; want %d", n, jobsBefore)
		}
		resp, j := e.upload(t, u.Token, "after.mp4", "video")
		if resp.Status != http.StatusAccepted {
			t.Fatalf("upload after the database came back = %d %s", resp.Status, resp.Body)
		}
		e.nextUploaded(t, j.ID)
	})
}
