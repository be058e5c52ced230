package convert_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/audiomill/audiomill/converter/internal/convert"
	"github.com/audiomill/audiomill/converter/internal/convertertest"
	"github.com/audiomill/audiomill/converter/internal/ffmpeg"
	"github.com/audiomill/audiomill/platform/events"
)

// failedWith waits for job's outcome and fails the test unless it is an
// audio.failed with reason, not retryable.
func failedWith(t *testing.T, e *convertertest.Env, job, reason string) {
	t.Helper()
	out := e.Outcome(job, time.Minute)
	failed, err := events.Decode[events.AudioFailed](out.Payload)
	if out.Type != events.TypeAudioFailed || err != nil || failed.Reason != reason || failed.Retryable {
		t.Fatalf("job %s: got %s %s, want audio.failed %q", job, out.Type, out.Payload, reason)
	}
}

// TestForgedEventForAnotherUsersVideo: a video.uploaded naming another
// user's video (a forged event) fails with the owner reason; the video is
// only stat'ed, never downloaded, and no MP3 is stored for either user.
// The same video with its owner's event converts.
func TestForgedEventForAnotherUsersVideo(t *testing.T) {
	e := convertertest.NewEnv(t, &bins)
	e.RunConverter(e.Config())
	victim := "victim-" + e.ID
	videoID := e.UploadAs(victim, convertertest.Generate(t, "private.mp4", convertertest.TestVideo(), convertertest.TestTone(),
		[]string{"-t", "2", "-c:v", "libx264", "-c:a", "aac"}))

	forged := e.Job("forged")
	e.Publish(forged, e.VideoUploaded(videoID)) // owner_id: this env's user, not the victim
	failedWith(t, e, forged, convert.ReasonNotOwner)
	if n := len(e.MP3s()); n != 0 {
		t.Fatalf("%d MP3s stored for the forger", n)
	}
	logs := e.Storage.Output()
	if !strings.Contains(logs, `"method":"HEAD","path":"/v1/files/`+videoID+`"`) {
		t.Fatalf("the converter never asked filestorage whose the video is:\n%s", convertertest.Tail(logs, 3000))
	}
	if strings.Contains(logs, `"method":"GET","path":"/v1/files/`+videoID+`"`) {
		t.Fatalf("the converter downloaded another user's video:\n%s", convertertest.Tail(logs, 3000))
	}

	// The victim's own job converts, into the victim's folder.
	own := e.Job("own")
	p := e.VideoUploaded(videoID)
	p.OwnerID, p.OwnerEmail = victim, victim+"@example.com"
	e.Publish(own, p)
	ready := e.AssertOneReady(own)
	f, err := e.Files.Stat(t.Context(), ready.AudioID)
	if err != nil || f.Owner != victim || f.Path != victim+"/"+own+".mp3" {
		t.Fatalf("the owner's MP3: %+v, %v", f, err)
	}
}

// TestPlaylistOfALocalFileIsNotAVideo: an uploaded HLS playlist naming an
// MP3 on the converter's disk (which ffmpeg converted) fails as not a video and stores
// nothing; an MP4 uploaded beside it converts.
func TestPlaylistOfALocalFileIsNotAVideo(t *testing.T) {
	e := convertertest.NewEnv(t, &bins)
	e.RunConverter(e.Config())
	secret := convertertest.Generate(t, "secret.mp3", convertertest.TestTone(), []string{"-t", "3", "-c:a", "libmp3lame"})
	playlist := filepath.Join(t.TempDir(), "playlist.m3u8")
	body := "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:3\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:3.0,\n" + secret + "\n#EXT-X-ENDLIST\n"
	if err := os.WriteFile(playlist, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	mp4 := convertertest.Generate(t, "real.mp4", convertertest.TestVideo(), convertertest.TestTone(), []string{"-t", "2", "-c:v", "libx264", "-c:a", "aac"})

	hls, real := e.Job("hls"), e.Job("mp4")
	e.Publish(hls, e.VideoUploaded(e.Upload(playlist)))
	e.Publish(real, e.VideoUploaded(e.Upload(mp4)))
	failedWith(t, e, hls, ffmpeg.ReasonUnreadable)
	e.AssertOneReady(real)
	if n := len(e.MP3s()); n != 1 {
		t.Fatalf("%d MP3s stored, want only the MP4's", n)
	}
}

// TestBoundsFailJobsWithTheirReasons: with small bounds configured, a
// longer video and a tiny file of hours fail with the duration reason in
// seconds, a larger MP3 with the size reason; a video within them
// converts.
func TestBoundsFailJobsWithTheirReasons(t *testing.T) {
	e := convertertest.NewEnv(t, &bins)
	cfg := e.Config()
	cfg.MaxDuration, cfg.MaxOutputBytes = 10*time.Second, 64<<10
	cfg.Quality, _ = ffmpeg.ParseQuality("128k")
	e.RunConverter(cfg)
	clip := func(name string, seconds string) string {
		return e.Upload(convertertest.Generate(t, name, convertertest.TestVideo(), convertertest.TestTone(),
			[]string{"-t", seconds, "-c:v", "libx264", "-c:a", "aac"}))
	}
	longer, hours, larger, within := e.Job("longer"), e.Job("hours"), e.Job("larger"), e.Job("within")
	start := time.Now()
	e.Publish(longer, e.VideoUploaded(clip("fifteen.mp4", "15")))
	e.Publish(hours, e.VideoUploaded(e.Upload(convertertest.SlowWAV(t, t.TempDir()))))
	e.Publish(larger, e.VideoUploaded(clip("nine.mp4", "9"))) // 9 s at 128 kbit/s: 144 kB
	e.Publish(within, e.VideoUploaded(clip("three.mp4", "3")))
	failedWith(t, e, longer, "the video is longer than 10 seconds, the longest we convert")
	failedWith(t, e, hours, "the video is longer than 10 seconds, the longest we convert")
	failedWith(t, e, larger, "the MP3 would be larger than 64 KiB, the largest we make")
	e.AssertOneReady(within)
	if took := time.Since(start); took > 30*time.Second {
		t.Fatalf("the bounded jobs took %s", took)
	}
	if n := len(e.MP3s()); n != 1 {
		t.Fatalf("%d MP3s stored, want only the one within the bounds", n)
	}
}

// TestCPUTimeBoundFailsTheJob: a runaway within the duration cap (the
// 27-hour file with a 100-hour cap) is stopped at its CPU time limit and
// fails with the CPU reason.
func TestCPUTimeBoundFailsTheJob(t *testing.T) {
	e := convertertest.NewEnv(t, &bins)
	e.Tools.Limits = ffmpeg.Limits{CPUTime: time.Second}
	cfg := e.Config()
	cfg.MaxDuration = 100 * time.Hour
	e.RunConverter(cfg)
	job := e.Job("runaway")
	start := time.Now()
	e.Publish(job, e.VideoUploaded(e.Upload(convertertest.SlowWAV(t, t.TempDir()))))
	failedWith(t, e, job, "the conversion needed more than 1 second of processor time")
	if took := time.Since(start); took > 30*time.Second {
		t.Fatalf("the runaway was stopped after %s", took)
	}
	if n := len(e.MP3s()); n != 0 {
		t.Fatalf("%d MP3s stored", n)
	}
}
