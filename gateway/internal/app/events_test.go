package app_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/audiomill/audiomill/filestorage/client"
	"github.com/audiomill/audiomill/gateway/internal/gatewaytest"
	"github.com/audiomill/audiomill/gateway/internal/jobs"
	"github.com/audiomill/audiomill/platform/events"
	"github.com/audiomill/audiomill/platform/testenv"
)

const eventsPath = "/api/v1/jobs/events"

// streamReplica starts a second gateway on e's database whose broker is a
// virtual host of its own: it never consumes a status event, so whatever
// its streams show was applied by e's gateway.
func streamReplica(t *testing.T, e *env, extra map[string]string) *gatewaytest.Gateway {
	t.Helper()
	env := map[string]string{"DATABASE_URL": e.directDB, "AMQP_URL": gatewaytest.VHost(t)}
	for k, v := range extra {
		env[k] = v
	}
	return gatewaytest.StartGateway(t, e.deps, env)
}

// nextJob reads the next event, which must be a job event, and its data.
func nextJob(t *testing.T, s *testenv.EventStream) (testenv.Event, map[string]any) {
	t.Helper()
	ev := s.NextEvent(t, 10*time.Second)
	if ev.Event != "job" {
		t.Fatalf("event %q (id %s, %s), want job", ev.Event, ev.ID, ev.Data)
	}
	var data map[string]any
	if err := json.Unmarshal([]byte(ev.Data), &data); err != nil {
		t.Fatalf("job event data %q: %v", ev.Data, err)
	}
	return ev, data
}

// expectHello reads the hello event and returns its id.
func expectHello(t *testing.T, s *testenv.EventStream) string {
	t.Helper()
	ev := s.NextEvent(t, 10*time.Second)
	if ev.Event != "hello" || ev.Data != "{}" || ev.ID == "" {
		t.Fatalf("first event %+v, want hello with an id and {}", ev)
	}
	return ev.ID
}

// expectQuiet checks that no event (pings aside) arrives within d.
func expectQuiet(t *testing.T, s *testenv.EventStream, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		ev, err := s.Next(time.Until(deadline))
		if err != nil {
			return // nothing within d
		}
		if ev.Comment == "" {
			t.Fatalf("unexpected event %+v", ev)
		}
	}
}

func idOf(t *testing.T, ev testenv.Event) int64 {
	t.Helper()
	n, err := strconv.ParseInt(ev.ID, 10, 64)
	if err != nil {
		t.Fatalf("event id %q: %v", ev.ID, err)
	}
	return n
}

// TestJobEventsAcrossReplicas: a stream on replica A shows, in order and
// once each, the changes replica B applied (queued, converting with its
// percentage, done, failed with the reason, deleted), each event's data the
// job as GET /api/v1/jobs/{id} shows it; a reconnect with Last-Event-ID
// gets exactly what it missed, a too-old or unknown id a reset; another
// user's stream gets none of it.
func TestJobEventsAcrossReplicas(t *testing.T) {
	e := newEnv(t, nil)
	a := streamReplica(t, e, map[string]string{"GATEWAY_JOB_EVENTS_PING": "1s"})
	alice, bob := e.deps.SignUp(t, e.gw.URL), e.deps.SignUp(t, e.gw.URL)

	s, resp := testenv.OpenEvents(t, a.URL+eventsPath, alice.Token, "")
	if s == nil {
		t.Fatalf("open: %d %s", resp.Status, resp.Body)
	}
	for k, want := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if id := expectHello(t, s); id != "0" {
		t.Errorf("hello id of a user without events = %s, want 0", id)
	}
	bobStream, _ := testenv.OpenEvents(t, a.URL+eventsPath, bob.Token, "")
	expectHello(t, bobStream)

	// Queued: the upload (on B) records the job.
	_, job := e.upload(t, alice.Token, "clip.mp4", "video bytes")
	ev, data := nextJob(t, s)
	if data["id"] != job.ID || data["status"] != "queued" {
		t.Fatalf("first job event %s", ev.Data)
	}
	prev := idOf(t, ev)
	step := func(want string, pct float64) testenv.Event {
		t.Helper()
		ev, data := nextJob(t, s)
		if id := idOf(t, ev); id <= prev {
			t.Fatalf("event id %d after %d", id, prev)
		} else {
			prev = id
		}
		if data["status"] != want || (pct > 0 && data["progress"] != pct) {
			t.Fatalf("event %s, want %s %v", ev.Data, want, pct)
		}
		return ev
	}
	e.publish(t, job.ID, events.AudioProgress{VideoID: job.Video.ID, Percent: 40})
	at40 := step("converting", 40)
	e.publish(t, job.ID, events.AudioProgress{VideoID: job.Video.ID, Percent: 40}) // no change: no event
	e.publish(t, job.ID, events.AudioProgress{VideoID: job.Video.ID, Percent: 70})
	step("converting", 70)
	s.Close()

	// Missed while away: failed, with its reason.
	e.publish(t, job.ID, events.AudioFailed{VideoID: job.Video.ID, OwnerID: alice.ID, OwnerEmail: alice.Email,
		FileName: "clip.mp4", Reason: "the video has no audio stream"})
	e.waitStatus(t, alice.Token, job.ID, "failed")
	s, _ = testenv.OpenEvents(t, a.URL+eventsPath, alice.Token, at40.ID)
	if id := expectHello(t, s); id != at40.ID {
		t.Errorf("hello id on resume = %s, want %s", id, at40.ID)
	}
	prev = idOf(t, at40)
	step("converting", 70)
	failed := step("failed", 0)
	var got map[string]any
	_ = json.Unmarshal([]byte(failed.Data), &got)
	r, _ := e.getJob(t, alice.Token, job.ID)
	var want map[string]any
	r.JSON(t, &want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("failed event data\n%v\nGET shows\n%v", got, want)
	}
	if got["reason"] != "the video has no audio stream" || got["retryable"] != false {
		t.Errorf("failed event lacks the reason: %v", got)
	}
	expectQuiet(t, s, 1500*time.Millisecond) // pings only: nothing twice

	// Done, with the MP3 (a second job).
	_, job2 := e.upload(t, alice.Token, "two.mp4", "more video")
	step("queued", 0)
	mp3 := bytes.Repeat([]byte("ID3mp3frame"), 100)
	stored, err := e.files.Upload(testenv.Context(t, 10*time.Second), "audio", alice.ID+"/"+job2.ID+".mp3", bytes.NewReader(mp3),
		client.UploadOptions{ContentType: "audio/mpeg", Owner: alice.ID})
	if err != nil {
		t.Fatal(err)
	}
	e.publish(t, job2.ID, events.AudioReady{VideoID: job2.Video.ID, AudioID: stored.ID, OwnerID: alice.ID, OwnerEmail: alice.Email,
		FileName: "two.mp4", Size: int64(len(mp3)), DurationSeconds: 3, BitrateKbps: 128})
	done := step("done", 0) // the API shows progress while converting only
	if !strings.Contains(done.Data, `"audio_url":"/api/v1/jobs/`+job2.ID+`/audio"`) {
		t.Errorf("done event without its audio_url: %s", done.Data)
	}

	// Deleted.
	if r := testenv.Do(t, testenv.NewRequest(t, http.MethodDelete, e.gw.URL+"/api/v1/jobs/"+job.ID, nil, "", alice.Token)); r.Status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	del := s.NextEvent(t, 10*time.Second)
	if del.Event != "deleted" || del.Data != `{"id":"`+job.ID+`"}` || idOf(t, del) <= prev {
		t.Fatalf("after delete: %+v", del)
	}

	// Bob saw none of it: his first event is his own job.
	_, bobs := e.upload(t, bob.Token, "bob.mp4", "bob's video")
	if _, data := nextJob(t, bobStream); data["id"] != bobs.ID {
		t.Fatalf("bob's first event is %v, want his job %s", data, bobs.ID)
	}

	// Too old: the changes were pruned. Unknown: beyond any id given.
	store := jobs.NewStore(e.db(t))
	if _, err := store.PruneChanges(testenv.Context(t, 10*time.Second), time.Nanosecond); err != nil {
		t.Fatal(err)
	}
	for _, last := range []string{at40.ID, "999999999999"} {
		s, _ := testenv.OpenEvents(t, a.URL+eventsPath, alice.Token, last)
		if id := expectHello(t, s); id != "0" {
			t.Errorf("Last-Event-ID %s: hello id %s, want 0 (alice has no kept event)", last, id)
		}
		if ev := s.NextEvent(t, 5*time.Second); ev.Event != "reset" || ev.Data != "{}" {
			t.Errorf("Last-Event-ID %s: %+v, want reset", last, ev)
		}
		s.Close()
	}
	if !strings.Contains(a.Logs.String(), "Last-Event-ID no longer kept") {
		t.Error("no log line for the reset")
	}
}

// TestJobEventsRefusals: no token, a malformed Last-Event-ID and the
// stream bounds are JSON errors with a code, logged, before any stream.
func TestJobEventsRefusals(t *testing.T) {
	e := newEnv(t, map[string]string{"GATEWAY_JOB_EVENTS_STREAMS_PER_USER": "2", "GATEWAY_JOB_EVENTS_STREAMS": "3"})
	url := e.gw.URL + eventsPath
	alice, bob := e.deps.SignUp(t, e.gw.URL), e.deps.SignUp(t, e.gw.URL)
	refused := func(t *testing.T, token, last string, status int, code, logged string) {
		t.Helper()
		s, resp := testenv.OpenEvents(t, url, token, last)
		if s != nil {
			t.Fatalf("stream opened, want %d", status)
		}
		if resp.Status != status || resp.ErrorCode() != code || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("%d %s %q, want %d %s JSON", resp.Status, resp.Header.Get("Content-Type"), resp.Body, status, code)
		}
		if !strings.Contains(e.gw.Logs.String(), logged) {
			t.Errorf("no log line with %q", logged)
		}
	}
	t.Run("ErrNoToken", func(t *testing.T) { refused(t, "", "", http.StatusUnauthorized, "unauthorized", `"status":401`) })
	t.Run("ErrBadToken", func(t *testing.T) {
		refused(t, alice.Token+"x", "", http.StatusUnauthorized, "unauthorized", `"status":401`)
	})
	for _, last := range []string{"abc", "-1", "1.5", "+7", "0x10", "9999999999999999999", "12345678901234567890"} {
		t.Run("ErrLastEventID"+last, func(t *testing.T) {
			refused(t, alice.Token, last, http.StatusBadRequest, "invalid", "Last-Event-ID must be")
		})
	}
	t.Run("ErrTooManyStreams", func(t *testing.T) {
		first, _ := testenv.OpenEvents(t, url, alice.Token, "")
		second, _ := testenv.OpenEvents(t, url, alice.Token, "")
		if first == nil || second == nil {
			t.Fatal("the first two streams were refused")
		}
		expectHello(t, first)
		expectHello(t, second)
		refused(t, alice.Token, "", http.StatusTooManyRequests, "rate_limited", "too many open event streams for this user")
		b1, _ := testenv.OpenEvents(t, url, bob.Token, "")
		if b1 == nil {
			t.Fatal("bob's first stream was refused")
		}
		expectHello(t, b1)
		refused(t, bob.Token, "", http.StatusTooManyRequests, "rate_limited", "too many open event streams on this instance")
		// A closed stream frees its place.
		first.Close()
		testenv.Eventually(t, 10*time.Second, func() bool {
			s, _ := testenv.OpenEvents(t, url, alice.Token, "")
			if s != nil {
				s.Close()
			}
			return s != nil
		}, "a closed stream never freed its place")
	})
}

// TestJobEventsEndAtShutdown: an open stream does not hold the drain: the
// gateway stops at once and the stream ends.
func TestJobEventsEndAtShutdown(t *testing.T) {
	e := newEnv(t, map[string]string{"SHUTDOWN_TIMEOUT": "20s"})
	alice := e.deps.SignUp(t, e.gw.URL)
	s, _ := testenv.OpenEvents(t, e.gw.URL+eventsPath, alice.Token, "")
	expectHello(t, s)
	start := time.Now()
	if err := e.gw.Main.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("shutdown took %v with a stream open", d)
	}
	if _, err := s.Next(5 * time.Second); err == nil || !strings.Contains(err.Error(), "EOF") {
		t.Errorf("stream after shutdown: %v, want its end", err)
	}
}

// TestJobEventsEndWhenTokenExpires: the stream ends at the token's expiry
// (the client reconnects with a fresh one).
func TestJobEventsEndWhenTokenExpires(t *testing.T) {
	deps := gatewaytest.StartDepsWith(t, &bins, "ACCESS_TOKEN_TTL=4s")
	gw := gatewaytest.StartGateway(t, deps, nil)
	alice := deps.SignUp(t, gw.URL)
	s, _ := testenv.OpenEvents(t, gw.URL+eventsPath, alice.Token, "")
	opened := time.Now()
	expectHello(t, s)
	_, err := s.Next(15 * time.Second)
	for err == nil {
		_, err = s.Next(15 * time.Second)
	}
	if !strings.Contains(err.Error(), "EOF") || time.Since(opened) > 8*time.Second {
		t.Errorf("stream ended after %v with %v, want an end at the token's expiry (4 s)", time.Since(opened), err)
	}
}
