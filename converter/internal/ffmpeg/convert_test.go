package ffmpeg_test

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/audiomill/audiomill/converter/internal/ffmpeg"
)

var tools = ffmpeg.Tools{FFmpeg: "ffmpeg", FFprobe: "ffprobe"}

// generate runs ffmpeg to make a fixture in dir and returns its path.
func generate(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	full := append([]string{"-nostdin", "-hide_banner", "-loglevel", "error", "-y"}, args...)
	full = append(full, p)
	if out, err := exec.Command("ffmpeg", full...).CombinedOutput(); err != nil {
		t.Fatalf("generate %s (ffmpeg is required: scripts/install.sh): %v\n%s", name, err, out)
	}
	return p
}

// Sources of the fixtures: a small test picture and a sine tone.
var (
	video = []string{"-f", "lavfi", "-i", "testsrc=size=160x120:rate=10"}
	tone  = []string{"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"}
)

func args(parts ...[]string) []string {
	var all []string
	for _, p := range parts {
		all = append(all, p...)
	}
	return all
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestToMP3(t *testing.T) {
	dir := t.TempDir()
	random := make([]byte, 64<<10)
	_, _ = rand.Read(random)
	mp4 := generate(t, dir, "moov-at-end.mp4", args(video, tone, []string{"-t", "3", "-c:v", "libx264", "-c:a", "aac",
		"-metadata", "title=Ünïcode title"})...)
	whole, err := os.ReadFile(mp4)
	if err != nil {
		t.Fatal(err)
	}
	faststart := generate(t, dir, "faststart.mp4", args(video, tone, []string{"-t", "3", "-c:v", "libx264", "-c:a", "aac", "-movflags", "+faststart"})...)
	fsBytes, err := os.ReadFile(faststart)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		input   func() string
		reason  string        // "" means success
		minDur  time.Duration // of the MP3, on success
		maxDur  time.Duration
		title   string
		quality string
	}{
		{name: "ZeroBytes", input: func() string { return writeFile(t, dir, "empty.mp4", nil) }, reason: ffmpeg.ReasonUnreadable},
		{name: "RandomBytes", input: func() string { return writeFile(t, dir, "random.mp4", random) }, reason: ffmpeg.ReasonUnreadable},
		{name: "TextRenamedMP4", input: func() string {
			return writeFile(t, dir, "text.mp4", []byte(strings.Repeat("this is not a video, just some text\n", 100)))
		}, reason: ffmpeg.ReasonUnreadable},
		{name: "NoAudioTrack", input: func() string {
			return generate(t, dir, "silent.mp4", args(video, []string{"-t", "2", "-c:v", "libx264"})...)
		}, reason: ffmpeg.ReasonNoAudio},
		{name: "TruncatedMP4IndexAtEnd", input: func() string {
			return writeFile(t, dir, "truncated.mp4", whole[:len(whole)/2])
		}, reason: ffmpeg.ReasonUnreadable},
		// With the index first, what arrived is still playable: converted as far as it goes.
		{name: "TruncatedMP4IndexFirst", input: func() string {
			return writeFile(t, dir, "truncated-faststart.mp4", fsBytes[:len(fsBytes)*2/3])
		}, minDur: 100 * time.Millisecond, maxDur: 3 * time.Second},
		{name: "IndexAtEnd", input: func() string { return mp4 }, minDur: 2900 * time.Millisecond, maxDur: 3100 * time.Millisecond, title: "Ünïcode title"},
		{name: "UnderOneSecond", input: func() string {
			return generate(t, dir, "short.mp4", args(video, tone, []string{"-t", "0.4", "-c:v", "libx264", "-c:a", "aac"})...)
		}, minDur: 300 * time.Millisecond, maxDur: 600 * time.Millisecond},
		{name: "MKVOpus", input: func() string {
			return generate(t, dir, "clip.mkv", args(video, tone, []string{"-t", "2", "-c:v", "mpeg4", "-c:a", "libopus", "-metadata", "title=Matroska"})...)
		}, minDur: 1900 * time.Millisecond, maxDur: 2200 * time.Millisecond, title: "Matroska"},
		{name: "WebMOpus", input: func() string {
			return generate(t, dir, "clip.webm", args(video, tone, []string{"-t", "2", "-c:v", "libvpx", "-deadline", "realtime", "-c:a", "libopus"})...)
		}, minDur: 1900 * time.Millisecond, maxDur: 2200 * time.Millisecond},
		{name: "CBRQuality", input: func() string { return mp4 }, quality: "128k", title: "Ünïcode title", minDur: 2900 * time.Millisecond, maxDur: 3100 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out := filepath.Join(t.TempDir(), "out.mp3")
			opts := ffmpeg.ConvertOptions{}
			if tc.quality != "" {
				q, err := ffmpeg.ParseQuality(tc.quality)
				if err != nil {
					t.Fatal(err)
				}
				opts.Quality = q
			}
			in := tc.input()
			media, res, err := tools.ToMP3(ctx, in, out, opts)
			if tc.reason != "" {
				f, ok := ffmpeg.AsFailure(err)
				if !ok || f.Reason != tc.reason {
					t.Fatalf("err = %v, want a failure %q", err, tc.reason)
				}
				if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("output left behind after a failure: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("convert: %v", err)
			}
			if res.Duration < tc.minDur || res.Duration > tc.maxDur || res.Size <= 0 || res.BitrateKbps <= 0 {
				t.Fatalf("result %+v, want a duration in [%s, %s]", res, tc.minDur, tc.maxDur)
			}
			// What ffmpeg's own description of the input told is what ffprobe tells.
			probed, err := tools.Probe(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			if media.Format != probed.Format || !media.HasAudio || media.AudioCodec != probed.AudioCodec ||
				media.Title != probed.Title || (media.Duration-probed.Duration).Abs() > 10*time.Millisecond {
				t.Fatalf("ToMP3 read the input as %+v, ffprobe as %+v", media, probed)
			}
			m, err := tools.Probe(ctx, out)
			if err != nil {
				t.Fatal(err)
			}
			if m.AudioCodec != "mp3" || m.Title != tc.title {
				t.Fatalf("MP3 probe %+v, want codec mp3 and title %q", m, tc.title)
			}
			if tc.quality == "128k" && (res.BitrateKbps < 120 || res.BitrateKbps > 136) {
				t.Fatalf("bitrate %d kbps, want about 128", res.BitrateKbps)
			}
		})
	}
}

func TestConvertTimeout(t *testing.T) {
	dir := t.TempDir()
	in := generate(t, dir, "in.mp4", args(video, tone, []string{"-t", "20", "-c:v", "libx264", "-c:a", "aac"})...)
	out := filepath.Join(dir, "out.mp3")
	_, _, err := tools.ToMP3(context.Background(), in, out, ffmpeg.ConvertOptions{MaxTime: 20 * time.Millisecond})
	f, ok := ffmpeg.AsFailure(err)
	if !ok || f.Reason != "conversion took longer than 1 minute" {
		t.Fatalf("err = %v, want the timeout failure", err)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("output left behind: %v", err)
	}
}

func TestConvertCancelledIsTransient(t *testing.T) {
	dir := t.TempDir()
	in := generate(t, dir, "in.mp4", args(video, tone, []string{"-t", "20", "-c:v", "libx264", "-c:a", "aac"})...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	_, _, err := tools.ToMP3(ctx, in, filepath.Join(dir, "out.mp3"), ffmpeg.ConvertOptions{})
	if err == nil {
		t.Fatal("converted despite the cancelled context")
	}
	if _, ok := ffmpeg.AsFailure(err); ok {
		t.Fatalf("a cancelled conversion is a permanent failure: %v", err)
	}
}

func TestConvertProgress(t *testing.T) {
	dir := t.TempDir()
	in := generate(t, dir, "in.mp4", args(video, tone, []string{"-t", "30", "-c:v", "libx264", "-c:a", "aac"})...)
	var got []int
	_, _, err := tools.ToMP3(context.Background(), in, filepath.Join(dir, "out.mp3"), ffmpeg.ConvertOptions{
		OnProgress: func(p int) { got = append(got, p) }, ProgressEvery: time.Nanosecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 || got[len(got)-1] != 100 {
		t.Fatalf("progress %v, want reports ending at 100", got)
	}
	for i := 1; i < len(got); i++ {
		if got[i] < got[i-1] {
			t.Fatalf("progress went back: %v", got)
		}
	}
}

func TestTimeLimit(t *testing.T) {
	tests := []struct {
		duration, max, want time.Duration
	}{
		{0, 0, ffmpeg.DefaultMaxTime},
		{0, 10 * time.Minute, 10 * time.Minute},
		{time.Minute, 0, 3 * time.Minute},
		{2 * time.Hour, 0, ffmpeg.DefaultMaxTime},
		{10 * time.Minute, 5 * time.Minute, 5 * time.Minute},
	}
	for _, tc := range tests {
		if got := ffmpeg.TimeLimit(tc.duration, tc.max); got != tc.want {
			t.Errorf("TimeLimit(%s, %s) = %s, want %s", tc.duration, tc.max, got, tc.want)
		}
	}
}

func TestParseQuality(t *testing.T) {
	for _, ok := range []string{"V0", "V2", "v9", "32k", "128k", "320k"} {
		if _, err := ffmpeg.ParseQuality(ok); err != nil {
			t.Errorf("ParseQuality(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "V10", "2", "16k", "321k", "128", "128kbps", "best"} {
		if _, err := ffmpeg.ParseQuality(bad); err == nil {
			t.Errorf("ParseQuality(%q) accepted", bad)
		}
	}
}

// The tag ToMP3 writes in front of ffmpeg's MP3 is one ffprobe reads back:
// ASCII, Latin, and beyond the BMP; a long title is cut at 512 runes.
func TestID3Title(t *testing.T) {
	dir := t.TempDir()
	mp3 := generate(t, dir, "bare.mp3", args(tone, []string{"-t", "1", "-c:a", "libmp3lame", "-id3v2_version", "0"})...)
	audio, err := os.ReadFile(mp3)
	if err != nil {
		t.Fatal(err)
	}
	if tag := ffmpeg.ID3Title(""); tag != nil {
		t.Fatalf("an empty title gave a %d-byte tag", len(tag))
	}
	long := strings.Repeat("ab", 400)
	for _, tc := range []struct{ title, want string }{
		{"plain title", "plain title"},
		{"Ünïcode — ♫ 🎵", "Ünïcode — ♫ 🎵"},
		{long, long[:512]},
	} {
		tag := ffmpeg.ID3Title(tc.title)
		path := writeFile(t, dir, "tagged.mp3", append(tag, audio...))
		m, err := tools.Probe(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		if m.Title != tc.want || m.AudioCodec != "mp3" {
			t.Errorf("title %q: probe %+v, want title %q", tc.title, m, tc.want)
		}
	}
}
