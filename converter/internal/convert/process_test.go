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

	"github.com/audiomill/audiomill/converter/internal/convertertest"
	"github.com/audiomill/audiomill/platform/events"
	"github.com/audiomill/audiomill/platform/testenv"
)

// longVideo is a 15-minute video (a tiny black picture, mono noise, about
// 4 MB) whose conversion takes a few seconds: long enough to interrupt.
var longVideo = sync.OnceValues(func() (string, error) {
	p := filepath.Join(bins.Dir, "long.mp4")
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

func TestKill9MidConversionRedeliversAndStoresOneMP3(t *testing.T) {
	e := convertertest.NewEnv(t, &bins)
	videoID := e.Upload(mustLongVideo(t))
	first := e.StartConverter("CONVERTER_CONCURRENCY=1")
	job := e.Job("killed")
	e.Publish(job, e.VideoUploaded(videoID))
	e.WaitProgress(job)
	first.Kill()
	if evs := e.EventsOf(job, events.TypeAudioReady); len(evs) != 0 {
		t.Fatal("the job finished before the kill: the video is too short to test this")
	}

	second := e.StartConverter("CONVERTER_CONCURRENCY=1")
	ready := e.AssertOneReady(job)
	if ready.DurationSeconds < 899 || ready.DurationSeconds > 901 {
		t.Fatalf("audio.ready %+v", ready)
	}
	if n := len(e.MP3s()); n != 1 {
		t.Fatalf("%d MP3s stored for the job, want 1", n)
	}
	if !strings.Contains(second.Output(), `"msg":"converted"`) {
		t.Fatalf("the second converter did not convert the job:\n%s", second.Output())
	}
}

func TestTwoConvertersConvertEachJobOnce(t *testing.T) {
	e := convertertest.NewEnv(t, &bins)
	videoID := e.Upload(convertertest.Generate(t, "clip.mp4", convertertest.TestVideo(), convertertest.TestTone(), []string{"-t", "20", "-c:v", "libx264", "-c:a", "aac"}))
	a := e.StartConverter("CONVERTER_CONCURRENCY=1")
	b := e.StartConverter("CONVERTER_CONCURRENCY=1")
	const jobs = 8
	var ids []string
	for i := range jobs {
		job := e.Job("pair-" + string(rune('a'+i)))
		ids = append(ids, job)
		e.Publish(job, e.VideoUploaded(videoID))
	}
	for _, job := range ids {
		e.AssertOneReady(job)
	}
	if n := len(e.MP3s()); n != jobs {
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
	cmd := exec.Command(bins.Path("converter"))
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
func terminateMidJob(t *testing.T, e *convertertest.Env, name, grace string, exitWithin time.Duration) (*testenv.Process, string) {
	t.Helper()
	videoID := e.Upload(mustLongVideo(t))
	p := e.StartConverter("CONVERTER_CONCURRENCY=1", "CONVERTER_GRACE_PERIOD="+grace)
	job := e.Job(name)
	e.Publish(job, e.VideoUploaded(videoID))
	e.WaitProgress(job)
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
	e := convertertest.NewEnv(t, &bins)
	_, job := terminateMidJob(t, e, "graceful", "60s", 70*time.Second)
	e.AssertOneReady(job)
	if dead := e.Dead(); len(dead) != 0 {
		t.Fatalf("dead letters: %v", dead)
	}
	// Progress: at most one event a second.
	progress := e.EventsOf(job, events.TypeAudioProgress)
	for i := 1; i < len(progress); i++ {
		if gap := progress[i].OccurredAt.Sub(progress[i-1].OccurredAt); gap < 900*time.Millisecond {
			t.Fatalf("progress events %s apart", gap)
		}
	}
}

func TestSIGTERMHandsTheJobBackAfterTheGracePeriod(t *testing.T) {
	e := convertertest.NewEnv(t, &bins)
	p, job := terminateMidJob(t, e, "handed-back", "0s", 20*time.Second)
	if !strings.Contains(p.Output(), "grace period over") || len(e.EventsOf(job, events.TypeAudioReady)) != 0 {
		t.Fatalf("the job was not handed back:\n%s", convertertest.Tail(p.Output(), 4000))
	}
	e.StartConverter("CONVERTER_CONCURRENCY=1")
	e.AssertOneReady(job)
	if n := len(e.MP3s()); n != 1 {
		t.Fatalf("%d MP3s stored, want 1", n)
	}
}
