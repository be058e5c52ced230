package ffmpeg_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/audiomill/audiomill/converter/internal/ffmpeg"
)

// TestRefusesInputsThatOpenOtherFiles: files whose format makes ffmpeg open
// other files (a playlist, a concat list, an image pattern) fail as "not a
// video" and produce nothing, whether they name a file on this machine by
// path, by file: URL or beside them. Each would have converted the file it
// names (the image pattern, which has no sound, failed as a video without
// audio after reading the images).
func TestRefusesInputsThatOpenOtherFiles(t *testing.T) {
	dir := t.TempDir()
	secretMP3 := generate(t, dir, "secret.mp3", args(tone, []string{"-t", "2", "-c:a", "libmp3lame"})...)
	secretWAV := generate(t, dir, "secret.wav", args(tone, []string{"-t", "2"})...)
	generate(t, dir, "img001.png", args(video, []string{"-frames:v", "1"})...)
	// Each input is named "video", as the converter names the download, in
	// a directory of its own, except the ones that point beside themselves.
	input := func(name, content string) func() string {
		return func() string {
			sub := filepath.Join(dir, name)
			if err := os.Mkdir(sub, 0o700); err != nil {
				t.Fatal(err)
			}
			return writeFile(t, sub, "video", []byte(content))
		}
	}
	hls := func(uri string) string {
		return "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:2.0,\n" + uri + "\n#EXT-X-ENDLIST\n"
	}
	tests := []struct {
		name  string
		input func() string
	}{
		{"HLSPlaylistOfALocalMP3", input("hls-path", hls(secretMP3))},
		{"HLSPlaylistOfAFileURL", input("hls-url", hls("file:"+secretWAV))},
		{"HLSPlaylistBesideIt", func() string { return writeFile(t, dir, "beside.m3u8", []byte(hls("secret.mp3"))) }},
		{"FFconcatListBesideIt", func() string {
			return writeFile(t, dir, "list", []byte("ffconcat version 1.0\nfile secret.mp3\nfile secret.wav\n"))
		}},
		{"FFconcatListOfAFileURL", input("concat-url", "ffconcat version 1.0\nfile 'file:"+secretMP3+"'\n")},
		{"ImagePattern", func() string { return filepath.Join(dir, "img%03d.png") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			in := tc.input()
			out := filepath.Join(t.TempDir(), "out.mp3")
			media, res, err := tools.ToMP3(ctx, in, out, ffmpeg.ConvertOptions{})
			f, ok := ffmpeg.AsFailure(err)
			if !ok || f.Reason != ffmpeg.ReasonUnreadable {
				t.Fatalf("ToMP3 = %+v, %+v, %v; want the failure %q", media, res, err, ffmpeg.ReasonUnreadable)
			}
			t.Logf("refused: %v", err)
			if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("output left behind: %v", err)
			}
			m, err := tools.Probe(ctx, in)
			if f, ok := ffmpeg.AsFailure(err); !ok || f.Reason != ffmpeg.ReasonUnreadable {
				t.Fatalf("Probe = %+v, %v; want the failure %q", m, err, ffmpeg.ReasonUnreadable)
			}
		})
	}
}

// TestAllowedContainersConvert: a second of audio in each container of the
// whitelist that ffmpeg here writes converts, and ffprobe reads it.
func TestAllowedContainersConvert(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		file   string
		format string // ffprobe's format_name
		opts   []string
	}{
		{"a.mp4", "mov,mp4,m4a,3gp,3g2,mj2", []string{"-c:v", "libx264", "-c:a", "aac"}},
		{"a.3gp", "mov,mp4,m4a,3gp,3g2,mj2", []string{"-c:v", "mpeg4", "-c:a", "aac", "-ar", "16000", "-ac", "1"}},
		{"a.avi", "avi", []string{"-c:v", "mpeg4", "-c:a", "libmp3lame"}},
		{"a.flv", "flv", []string{"-c:v", "flv", "-c:a", "aac"}},
		{"a.ts", "mpegts", []string{"-c:v", "mpeg2video", "-c:a", "aac"}},
		{"a.mpg", "mpeg", []string{"-c:v", "mpeg2video", "-c:a", "mp2"}},
		{"a.wmv", "asf", []string{"-c:v", "wmv2", "-c:a", "wmav2"}},
		{"a.ogv", "ogg", []string{"-c:v", "libtheora", "-c:a", "libvorbis"}},
		{"a.wav", "wav", nil},
		{"a.mp3", "mp3", nil},
		{"a.aac", "aac", nil},
		{"a.flac", "flac", nil},
		{"a.aiff", "aiff", nil},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			inputs := tone
			if tc.opts != nil {
				inputs = args(video, tone)
			}
			in := generate(t, dir, tc.file, args(inputs, []string{"-t", "1"}, tc.opts)...)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			media, res, err := tools.ToMP3(ctx, in, filepath.Join(t.TempDir(), "out.mp3"), ffmpeg.ConvertOptions{})
			if err != nil || media.Format != tc.format || res.Duration < 900*time.Millisecond {
				t.Fatalf("ToMP3 = %+v, %+v, %v; want format %q and a second of MP3", media, res, err, tc.format)
			}
			if m, err := tools.Probe(ctx, in); err != nil || m.Format != tc.format {
				t.Fatalf("Probe = %+v, %v", m, err)
			}
		})
	}
}

func TestFormatAllowed(t *testing.T) {
	for _, ok := range []string{"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi", "mpegts", "wav", "mp3", "ogg"} {
		if !ffmpeg.FormatAllowed(ok) {
			t.Errorf("FormatAllowed(%q) = false", ok)
		}
	}
	for _, bad := range []string{"", ",", "hls", "hls,applehttp", "concat", "image2", "png_pipe", "sdp", "rtsp", "dash",
		"tty", "lavfi", "mov2", "m", "mp4 ", "movie"} {
		if ffmpeg.FormatAllowed(bad) {
			t.Errorf("FormatAllowed(%q) = true", bad)
		}
	}
}
