package convert_test

import (
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/audiomill/audiomill/converter/internal/convert"
	"github.com/audiomill/audiomill/converter/internal/convertertest"
	"github.com/audiomill/audiomill/converter/internal/ffmpeg"
	"github.com/audiomill/audiomill/filestorage/client"
	"github.com/audiomill/audiomill/platform/broker"
	"github.com/audiomill/audiomill/platform/events"
	"github.com/audiomill/audiomill/platform/testenv"
)

func TestConvertsAndStoresOneMP3PerJob(t *testing.T) {
	e := convertertest.NewEnv(t, &bins)
	e.RunConverter(e.Config())
	video := convertertest.Generate(t, "clip.mp4", convertertest.TestVideo(), convertertest.TestTone(), []string{"-t", "8", "-c:v", "libx264", "-c:a", "aac", "-metadata", "title=My holiday"})
	videoID := e.Upload(video)
	job := e.Job("ok")
	e.Publish(job, e.VideoUploaded(videoID))

	out := e.Outcome(job, time.Minute)
	if out.Type != events.TypeAudioReady {
		t.Fatalf("outcome %s: %s", out.Type, out.Payload)
	}
	ready, err := events.Decode[events.AudioReady](out.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if ready.VideoID != videoID || ready.OwnerID != "user-"+e.ID || ready.DurationSeconds < 7.9 || ready.DurationSeconds > 8.2 ||
		ready.BitrateKbps < 32 || ready.Size <= 0 || out.CorrelationID != "req-"+job {
		t.Fatalf("audio.ready %+v (correlation %q)", ready, out.CorrelationID)
	}
	// The MP3 is the video owner's file, under their folder, tagged with the job, titled.
	f, err := e.Files.Stat(testenv.Context(t, 10*time.Second), ready.AudioID)
	if err != nil {
		t.Fatal(err)
	}
	if f.Bucket != "audio" || f.Path != "user-"+e.ID+"/"+job+".mp3" || f.Size != ready.Size || f.ContentType != "audio/mpeg" ||
		f.Owner != "user-"+e.ID || f.Custom["owner_id"] != "user-"+e.ID || f.Custom["job_id"] != job {
		t.Fatalf("stored MP3 %+v", f)
	}
	dl, err := e.Files.Download(testenv.Context(t, 10*time.Second), ready.AudioID, client.Range{})
	if err != nil {
		t.Fatal(err)
	}
	local := filepath.Join(t.TempDir(), "out.mp3")
	data := must(readAll(dl))
	if err := os.WriteFile(local, data, 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := (ffmpeg.Tools{FFmpeg: "ffmpeg", FFprobe: "ffprobe"}).Probe(testenv.Context(t, 10*time.Second), local)
	if err != nil || m.AudioCodec != "mp3" || m.Title != "My holiday" {
		t.Fatalf("downloaded MP3: %+v, %v", m, err)
	}
	// Progress came before the outcome, never beyond 100.
	for _, p := range e.EventsOf(job, events.TypeAudioProgress) {
		pr, err := events.Decode[events.AudioProgress](p.Payload)
		if err != nil || pr.VideoID != videoID {
			t.Fatalf("progress %s: %v", p.Payload, err)
		}
	}

	// The same job again (a redelivery): announced again, no second MP3.
	e.Publish(job, e.VideoUploaded(videoID))
	testenv.Eventually(t, 30*time.Second, func() bool { return len(e.EventsOf(job, events.TypeAudioReady)) == 2 },
		"the redelivered job was not announced again")
	again, _ := events.Decode[events.AudioReady](e.EventsOf(job, events.TypeAudioReady)[1].Payload)
	if again.AudioID != ready.AudioID || again.Size != ready.Size {
		t.Fatalf("redelivery announced %+v, want %+v", again, ready)
	}
	if n := len(e.MP3s()); n != 1 {
		t.Fatalf("%d MP3s stored, want 1", n)
	}
}

func TestBadInput(t *testing.T) {
	e := convertertest.NewEnv(t, &bins)
	c := e.RunConverter(e.Config())
	reg := prometheus.NewRegistry()
	if err := c.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	random := make([]byte, 32<<10)
	_, _ = rand.Read(random)
	write := func(name string, data []byte) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	whole := must(os.ReadFile(convertertest.Generate(t, "whole.mp4", convertertest.TestVideo(), convertertest.TestTone(), []string{"-t", "3", "-c:v", "libx264", "-c:a", "aac"})))
	tests := []struct {
		name   string
		video  func() string // "" uploads nothing: the id does not exist
		reason string        // "" means audio.ready
	}{
		{"ZeroBytes", func() string { return write("empty.mp4", nil) }, ffmpeg.ReasonUnreadable},
		{"RandomBytes", func() string { return write("random.mp4", random) }, ffmpeg.ReasonUnreadable},
		{"TextRenamedMP4", func() string { return write("notes.mp4", []byte(strings.Repeat("just text\n", 50))) }, ffmpeg.ReasonUnreadable},
		{"NoAudioTrack", func() string {
			return convertertest.Generate(t, "silent.mp4", convertertest.TestVideo(), []string{"-t", "2", "-c:v", "libx264"})
		}, ffmpeg.ReasonNoAudio},
		{"TruncatedMP4", func() string { return write("truncated.mp4", whole[:len(whole)/2]) }, ffmpeg.ReasonUnreadable},
		{"IndexAtEnd", func() string { return write("moov-at-end.mp4", whole) }, ""},
		{"UnderOneSecond", func() string {
			return convertertest.Generate(t, "short.mp4", convertertest.TestVideo(), convertertest.TestTone(), []string{"-t", "0.5", "-c:v", "libx264", "-c:a", "aac"})
		}, ""},
		{"WebMOpus", func() string {
			return convertertest.Generate(t, "clip.webm", convertertest.TestVideo(), convertertest.TestTone(), []string{"-t", "2", "-c:v", "libvpx", "-deadline", "realtime", "-c:a", "libopus"})
		}, ""},
		{"MKVOpus", func() string {
			return convertertest.Generate(t, "clip.mkv", convertertest.TestVideo(), convertertest.TestTone(), []string{"-t", "2", "-c:v", "mpeg4", "-c:a", "libopus"})
		}, ""},
		{"VideoDoesNotExist", nil, convert.ReasonVideoMissing},
	}
	for _, tc := range tests {
		job := e.Job(tc.name)
		videoID := "no-such-file-" + e.ID
		if tc.video != nil {
			videoID = e.Upload(tc.video())
		}
		e.Publish(job, e.VideoUploaded(videoID))
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := e.Outcome(e.Job(tc.name), time.Minute)
			if tc.reason == "" {
				if out.Type != events.TypeAudioReady {
					t.Fatalf("got %s %s, want audio.ready", out.Type, out.Payload)
				}
				return
			}
			failed, err := events.Decode[events.AudioFailed](out.Payload)
			if out.Type != events.TypeAudioFailed || err != nil || failed.Reason != tc.reason || failed.Retryable {
				t.Fatalf("got %s %s, want audio.failed %q", out.Type, out.Payload, tc.reason)
			}
		})
	}
	// Permanent failures are handled, not dead-lettered; only invalid messages are.
	if dead := e.Dead(); len(dead) != 0 {
		t.Fatalf("dead letters after bad videos: %v", dead)
	}
	want := "converter_jobs_total{result=\"failed\"} 6\nconverter_jobs_total{result=\"ready\"} 4\n"
	if err := testutil.GatherAndCompare(reg, strings.NewReader("# HELP converter_jobs_total Deliveries handled, by result (ready, announced, failed, retry, exhausted, invalid).\n# TYPE converter_jobs_total counter\n"+want), "converter_jobs_total"); err != nil {
		t.Fatal(err)
	}
}

func TestInvalidMessagesGoToDeadLetters(t *testing.T) {
	e := convertertest.NewEnv(t, &bins)
	e.RunConverter(e.Config())
	valid := e.VideoUploaded("v1")
	missingOwner := valid
	missingOwner.OwnerID = ""
	noJob, err := broker.NewEnvelope(events.TypeVideoUploaded, "", "", valid)
	if err != nil {
		t.Fatal(err)
	}
	wrongType, _ := broker.NewEnvelope(events.TypeAudioReady, e.Job("type"), "", valid)
	missing, _ := broker.NewEnvelope(events.TypeVideoUploaded, e.Job("fields"), "", missingOwner)
	slashJob, _ := broker.NewEnvelope(events.TypeVideoUploaded, e.Job("a/../b"), "", valid)
	bodies := map[string]string{"NotJSON": "this is not json {", "Undecodable": `{"id":1}`}
	for name, env := range map[string]broker.Envelope{"NoJobID": noJob, "WrongType": wrongType, "MissingFields": missing, "JobIDWithSlash": slashJob} {
		b, err := env.Encode()
		if err != nil {
			t.Fatal(err)
		}
		bodies[name] = string(b)
	}
	for _, b := range bodies {
		e.PublishRaw(b)
	}
	var dead map[string]string
	testenv.Eventually(t, 30*time.Second, func() bool { dead = e.Dead(); return len(dead) == len(bodies) },
		"dead letters: %d, want %d", len(dead), len(bodies))
	for name, b := range bodies {
		if reason := dead[b]; reason != broker.ReasonUndecodable && reason != broker.ReasonPermanent {
			t.Errorf("%s: dead-letter reason %q", name, reason)
		}
	}
	if evs := e.EventsOf(e.Job("fields"), ""); len(evs) != 0 {
		t.Fatalf("events for an invalid message: %v", evs)
	}
}

func TestTransientFailuresRetryThenDeadLetter(t *testing.T) {
	e := convertertest.NewEnv(t, &bins)
	cfg := e.Config()
	// Nothing listens at this filestorage: every attempt fails.
	files, err := client.New(client.Options{BaseURL: "http://127.0.0.1:1", Token: client.StaticToken("unused")})
	if err != nil {
		t.Fatal(err)
	}
	e.RunConverterWith(cfg, files)
	job := e.Job("unavailable")
	e.Publish(job, e.VideoUploaded("v-"+e.ID))
	out := e.Outcome(job, 30*time.Second)
	failed, err := events.Decode[events.AudioFailed](out.Payload)
	if out.Type != events.TypeAudioFailed || err != nil || !failed.Retryable || !strings.Contains(failed.Reason, "3 times") {
		t.Fatalf("got %s %s, want a retryable audio.failed after 3 attempts", out.Type, out.Payload)
	}
	var dead map[string]string
	testenv.Eventually(t, 10*time.Second, func() bool { dead = e.Dead(); return len(dead) == 1 }, "no dead letter")
	for _, reason := range dead {
		if reason != broker.ReasonMaxAttempts {
			t.Fatalf("dead-letter reason %q, want %q", reason, broker.ReasonMaxAttempts)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func readAll(d *client.Download) ([]byte, error) {
	defer d.Close()
	return io.ReadAll(d)
}

// TestFFmpegSlotsBoundConversionsNotJobs: with one ffmpeg slot and three
// jobs in hand, never two ffmpeg run at once, while another job is in hand
// (downloading, waiting or uploading) during a conversion; every job ends
// ready.
func TestFFmpegSlotsBoundConversionsNotJobs(t *testing.T) {
	e := convertertest.NewEnv(t, &bins)
	cfg := e.Config()
	cfg.Concurrency, cfg.Prefetch = 1, 3
	c := e.RunConverter(cfg)
	reg := prometheus.NewRegistry()
	if err := c.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	gauge := func(name string) float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Error(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == name {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		return 0
	}
	stop, sampled := make(chan struct{}), make(chan struct{})
	var mostRunning, mostBeside float64
	go func() {
		defer close(sampled)
		for {
			running, inHand := gauge("converter_ffmpeg_running"), gauge("converter_jobs_in_flight")
			mostRunning = max(mostRunning, running)
			if running > 0 {
				mostBeside = max(mostBeside, inHand-running)
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()

	videoID := e.Upload(convertertest.Generate(t, "slots.mp4", convertertest.TestVideo(), convertertest.TestTone(), []string{"-t", "6", "-c:v", "libx264", "-c:a", "aac"}))
	jobs := []string{e.Job("slot-1"), e.Job("slot-2"), e.Job("slot-3")}
	for _, job := range jobs {
		e.Publish(job, e.VideoUploaded(videoID))
	}
	for _, job := range jobs {
		if out := e.Outcome(job, time.Minute); out.Type != events.TypeAudioReady {
			t.Fatalf("outcome of %s: %s %s", job, out.Type, out.Payload)
		}
	}
	close(stop)
	<-sampled
	if mostRunning != 1 {
		t.Errorf("at most %v ffmpeg ran at once, want exactly 1 (CONVERTER_CONCURRENCY)", mostRunning)
	}
	if mostBeside < 1 {
		t.Errorf("no other job was in hand while ffmpeg ran (at most %v): downloads and uploads do not overlap conversions", mostBeside)
	}
}
