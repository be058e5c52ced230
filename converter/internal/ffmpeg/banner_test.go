package ffmpeg

import (
	"strings"
	"testing"
	"time"
)

func TestBanner(t *testing.T) {
	tests := []struct {
		name    string
		log     string
		want    Media
		ok      bool
		lastErr string
	}{
		{
			name: "MP4WithTitle",
			log: `[info] Input #0, mov,mp4,m4a,3gp,3g2,mj2, from '/tmp/job/video':
[info]   Metadata:
[info]     major_brand     : isom
[info]     title           : Talk: part 1
[info]   Duration: 00:01:40.50, start: 0.000000, bitrate: 110 kb/s
[info]   Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p, 320x240, 34 kb/s (default)
[info]     Metadata:
[info]       title           : not the video's
[info]   Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, mono, fltp, 69 kb/s (default)
[info] Stream mapping:
[info]   Stream #0:1 -> #0:0 (aac (native) -> mp3 (libmp3lame))
[info] Output #0, mp3, to '/tmp/job/audio.mp3':
[info]   Metadata:
[info]     title           : the output's
[info]   Duration: 00:09:00.00, start: 0.000000, bitrate: N/A
`,
			want: Media{Format: "mov,mp4,m4a,3gp,3g2,mj2", Title: "Talk: part 1", Duration: 100500 * time.Millisecond,
				BitrateKbps: 110, HasAudio: true, AudioCodec: "aac"},
			ok: true,
		},
		{
			name: "TitleOfTheFirstAudioStreamAndChapters",
			log: `[info] Input #0, matroska,webm, from 'video':
[info]   Duration: 00:00:02.00, start: 0.000000, bitrate: N/A
[info]   Chapters:
[info]     Chapter #0:0: start 0.000000, end 1.000000
[info]       Metadata:
[info]         title           : Chapter 1
[info]   Stream #0:0: Audio: opus, 48000 Hz, mono, fltp (default)
[info]     Metadata:
[info]       TITLE           : Commentary
[info]   Stream #0:1: Audio: vorbis, 48000 Hz, mono, fltp
[info]     Metadata:
[info]       title           : Second
`,
			want: Media{Format: "matroska,webm", Title: "Commentary", Duration: 2 * time.Second, HasAudio: true, AudioCodec: "opus"},
			ok:   true,
		},
		{
			name: "NoAudio",
			log: `[info] Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'video':
[info]   Duration: N/A, start: 0.000000, bitrate: N/A
[info]   Stream #0:0[0x1](und): Video: h264 (High 4:4:4 Predictive), yuv444p, 160x120 (default)
[fatal] Stream map '0:a:0' matches no streams.
To ignore this, add a trailing '?' to the map.
`,
			want:    Media{Format: "mov,mp4,m4a,3gp,3g2,mj2"},
			ok:      true,
			lastErr: "Stream map '0:a:0' matches no streams. To ignore this, add a trailing '?' to the map.",
		},
		{
			name:    "Unreadable",
			log:     "[error] video: Invalid data found when processing input\n",
			lastErr: "video: Invalid data found when processing input",
		},
		{
			name:    "UnterminatedLastLine",
			log:     "[warning] something odd\n[error] video: End of file",
			lastErr: "video: End of file",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var told time.Duration
			b := &banner{onDuration: func(d time.Duration) { told = d }}
			// Written in pieces that cut lines, as a pipe delivers them.
			for chunk := range slices(tc.log, 7) {
				if _, err := b.Write([]byte(chunk)); err != nil {
					t.Fatal(err)
				}
			}
			got, ok := b.Media()
			if got != tc.want || ok != tc.ok {
				t.Fatalf("Media() = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
			if told != tc.want.Duration {
				t.Fatalf("onDuration got %s, want %s", told, tc.want.Duration)
			}
			if e := b.LastError(); e != tc.lastErr {
				t.Fatalf("LastError() = %q, want %q", e, tc.lastErr)
			}
		})
	}
}

// A demuxer's line ("[hls @ 0x…] [error] …") names the format refused by
// the whitelist; a component's lines never end or feed the description.
func TestBannerComponentLines(t *testing.T) {
	b := &banner{}
	_, _ = b.Write([]byte("[hls @ 0x55930710d980] [error] Format not on whitelist 'mov,mp4'\n[error] file:video: Invalid argument\n"))
	if got := b.RefusedFormat(); got != "hls" {
		t.Fatalf("RefusedFormat() = %q, want hls", got)
	}
	if _, ok := b.Media(); ok {
		t.Fatal("a refused input was described")
	}
	b = &banner{}
	_, _ = b.Write([]byte(`[info] Input #0, wav, from 'file:video':
[aac @ 0x5600] [info] a component's line
[info]   Duration: 00:00:02.00, bitrate: 705 kb/s
[info]   Stream #0:0: Audio: pcm_s16le ([1][0][0][0] / 0x0001), 44100 Hz, mono, s16, 705 kb/s
`))
	m, ok := b.Media()
	if !ok || m.Duration != 2*time.Second || m.AudioCodec != "pcm_s16le" || b.RefusedFormat() != "" {
		t.Fatalf("Media() = %+v, %v; refused %q", m, ok, b.RefusedFormat())
	}
}

func TestBannerBoundsLongLines(t *testing.T) {
	b := &banner{}
	_, _ = b.Write([]byte("[error] " + strings.Repeat("x", 10*maxLogLine) + "\n"))
	if n := len(b.LastError()); n > maxLogLine {
		t.Fatalf("kept a line of %d bytes, want at most %d", n, maxLogLine)
	}
}

func FuzzBanner(f *testing.F) {
	f.Add("[info] Input #0, mp4, from 'x':\n[info]   Duration: 00:00:01.00, start: 0, bitrate: 1 kb/s\n[info]   Stream #0:0: Audio: aac\n")
	f.Add("[info] Input #0, x\n[info]   Duration: 99999999999:99:99.99\n[error] y\nz")
	f.Fuzz(func(t *testing.T, log string) {
		b := &banner{onDuration: func(d time.Duration) {
			if d <= 0 {
				t.Fatalf("onDuration(%s)", d)
			}
		}}
		_, _ = b.Write([]byte(log))
		m, _ := b.Media()
		if m.Duration < 0 || m.BitrateKbps < 0 || len(b.LastError()) > maxLogLine+len(log) {
			t.Fatalf("media %+v", m)
		}
	})
}

// slices cuts s into pieces of n bytes.
func slices(s string, n int) func(func(string) bool) {
	return func(yield func(string) bool) {
		for len(s) > 0 {
			k := min(n, len(s))
			if !yield(s[:k]) {
				return
			}
			s = s[k:]
		}
	}
}
