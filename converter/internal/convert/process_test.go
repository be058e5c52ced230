package convert_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/audiomill/audiomill/platform/events"
	"github.com/audiomill/audiomill/platform/testenv"
)

// longVideo is a 15-minute video (a tiny black picture, mono noise, about
// 4 MB) whose conversion takes a few seconds: long enough to interrupt.
var longVideo = sync.OnceValues(func() (string, error) {
	p := filepath.Join(fixtureDir, "long.mp4")
	out, err := exec.Command("ffmpeg", "-nostdin", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", "color=c=black:s=32x32:r=1", "-f", "lavfi", "-i", "anoisesrc=sample_rate=44100:amplitude=0.3",
		"-t", "900", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-b:a", "32k", "-ac", "1", p).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%w: %s", err, out)
	}
	return p, nil
})

func mustLongVideo(t testing.TB) string {
	t.Helper()
	p, err := longVideo()
	if err != nil {
		t.Fatalf("generate the long video (ffmpeg is required): %v", err)
	}
	return p
}

// waitProgress waits until job's conversion is under way (a progress event
// below 100 %).
func (e *env) waitProgress(job string) {
	e.t.Helper()
	testenv.Eventually(e.t, time.Minute, func() bool {
		for _, ev := range e.eventsOf(job, events.TypeAudioProgress) {
			p, err := events.Decode[events.AudioProgress](ev.Payload)
			if err == nil && p.Percent < 100 {
				return true
			}
		}
		return false
	}, "job %s never reported progress", job)
}

func (e *env) assertOneReady(job string) events.AudioReady {
	e.t.Helper()
	out := e.outcome(job, 2*time.Minute)
	if out.Type != events.TypeAudioReady {
		e.t.Fatalf("job %s: %s %s", job, out.Type, out.Payload)
	}
	time.Sleep(500 * time.Millisecond) // a duplicate would be right behind
	if n := len(e.eventsOf(job, events.TypeAudioReady)); n != 1 {
		e.t.Fatalf("job %s: %d audio.ready events, want 1", job, n)
	}
	ready, err := events.Decode[events.AudioReady](out.Payload)
	if err != nil {
		e.t.Fatal(err)
	}
	return ready
}

func TestKill9MidConversionRedeliversAndStoresOneMP3(t *testing.T) {
	e := newEnv(t)
	videoID := e.upload(mustLongVideo(t))
	first := e.startConverter("CONVERTER_CONCURRENCY=1")
	job := e.job("killed")
	e.publish(job, e.videoUploaded(videoID))
	e.waitProgress(job)
	first.Kill()
	if evs := e.eventsOf(job, events.TypeAudioReady); len(evs) != 0 {
		t.Fatal("the job finished before the kill: the video is too short to test this")
	}

	second := e.startConverter("CONVERTER_CONCURRENCY=1")
	ready := e.assertOneReady(job)
	if ready.DurationSeconds < 899 || ready.DurationSeconds > 901 {
		t.Fatalf("audio.ready %+v", ready)
	}
	if n := len(e.mp3s()); n != 1 {
		t.Fatalf("%d MP3s stored for the job, want 1", n)
	}
	if !strings.Contains(second.Output(), `"msg":"converted"`) {
		t.Fatalf("the second converter did not convert the job:\n%s", second.Output())
	}
}

func TestTwoConvertersConvertEachJobOnce(t *testing.T) {
	e := newEnv(t)
	videoID := e.upload(generate(t, "clip.mp4", testVideo, testTone, []string{"-t", "20", "-c:v", "libx264", "-c:a", "aac"}))
	a := e.startConverter("CONVERTER_CONCURRENCY=1")
	b := e.startConverter("CONVERTER_CONCURRENCY=1")
	const jobs = 8
	var ids []string
	for i := range jobs {
		job := e.job("pair-" + string(rune('a'+i)))
		ids = append(ids, job)
		e.publish(job, e.videoUploaded(videoID))
	}
	for _, job := range ids {
		e.assertOneReady(job)
	}
	if n := len(e.mp3s()); n != jobs {
		t.Fatalf("%d MP3s stored, want %d", n, jobs)
	}
	ca, cb := strings.Count(a.Output(), `"msg":"converted"`), strings.Count(b.Output(), `"msg":"converted"`)
	if ca+cb != jobs || ca == 0 || cb == 0 {
		t.Fatalf("conversions: %d + %d, want %d shared by both", ca, cb, jobs)
	}
	// Each converter's /metrics counts its own.
	for p, n := range map[*testenv.Process]int{a: ca, b: cb} {
		resp, err := http.Get("http://" + p.Addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("converter_jobs_total{result=\"ready\"} %d\n", n); !strings.Contains(string(body), want) {
			t.Fatalf("/metrics lacks %q", want)
		}
	}
}

func TestStartFailsNamingMissingVariables(t *testing.T) {
	cmd := exec.Command(binaries["converter"])
	cmd.Env = append(os.Environ(), "PORT=0", "SERVICE_CLIENT_ID=", "SERVICE_CLIENT_SECRET=", "CONVERTER_MP3_QUALITY=loud")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("exit: %v, want code 2\n%s", err, out)
	}
	for _, v := range []string{"SERVICE_CLIENT_ID", "SERVICE_CLIENT_SECRET", "CONVERTER_MP3_QUALITY"} {
		if !strings.Contains(string(out), v) {
			t.Errorf("output does not name %s:\n%s", v, out)
		}
	}
}

// terminateMidJob starts a converter with grace, gives it a long video to
// convert, sends it SIGTERM once the job reports progress and waits up to
// exitWithin for it to exit.
func terminateMidJob(t *testing.T, e *env, name, grace string, exitWithin time.Duration) (*testenv.Process, string) {
	t.Helper()
	videoID := e.upload(mustLongVideo(t))
	p := e.startConverter("CONVERTER_CONCURRENCY=1", "CONVERTER_GRACE_PERIOD="+grace)
	job := e.job(name)
	e.publish(job, e.videoUploaded(videoID))
	e.waitProgress(job)
	if err := p.Terminate(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Exited:
	case <-time.After(exitWithin):
		t.Fatal("the converter did not exit")
	}
	return p, job
}

func TestSIGTERMFinishesTheJobWithinTheGracePeriod(t *testing.T) {
	e := newEnv(t)
	_, job := terminateMidJob(t, e, "graceful", "60s", 70*time.Second)
	e.assertOneReady(job)
	if dead := e.dead(); len(dead) != 0 {
		t.Fatalf("dead letters: %v", dead)
	}
	// Progress: at most one event a second.
	progress := e.eventsOf(job, events.TypeAudioProgress)
	for i := 1; i < len(progress); i++ {
		if gap := progress[i].OccurredAt.Sub(progress[i-1].OccurredAt); gap < 900*time.Millisecond {
			t.Fatalf("progress events %s apart", gap)
		}
	}
}

func TestSIGTERMHandsTheJobBackAfterTheGracePeriod(t *testing.T) {
	e := newEnv(t)
	p, job := terminateMidJob(t, e, "handed-back", "0s", 20*time.Second)
	if !strings.Contains(p.Output(), "grace period over") || len(e.eventsOf(job, events.TypeAudioReady)) != 0 {
		t.Fatalf("the job was not handed back:\n%s", tail(p.Output(), 4000))
	}
	e.startConverter("CONVERTER_CONCURRENCY=1")
	e.assertOneReady(job)
	if n := len(e.mp3s()); n != 1 {
		t.Fatalf("%d MP3s stored, want 1", n)
	}
}
