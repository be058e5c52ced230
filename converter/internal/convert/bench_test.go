package convert_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/audiomill/audiomill/converter/internal/convertertest"
	"github.com/audiomill/audiomill/platform/events"

	"github.com/audiomill/audiomill/platform/testenv"
)

// BenchmarkConverterStep measures, for a 60 s 720p video, the wall time of
// the whole converter step (video.uploaded published → download from
// filestorage → ffprobe → ffmpeg → upload → audio.ready confirmed and
// received) next to plain ffmpeg with the same arguments on the same file,
// and the converter process's peak RSS (VmHWM; ffmpeg, a child process, is
// not included). The converter runs as its own process, with filestorage on
// the disk and on the GridFS backend.
func BenchmarkConverterStep(b *testing.B) {
	video := convertertest.Generate(b, "720p.mp4", []string{"-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30"},
		[]string{"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"},
		[]string{"-t", "60", "-ac", "2", "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", "-b:a", "128k"})
	st, err := os.Stat(video)
	if err != nil {
		b.Fatal(err)
	}
	for _, backend := range []string{"disk", "gridfs"} {
		b.Run(backend, func(b *testing.B) {
			e := convertertest.NewEnvWith(b, &bins, backend)
			videoID := e.Upload(video)
			p := e.StartConverter("CONVERTER_CONCURRENCY=1")
			// Warm up (first token, first connection to filestorage).
			warm := e.Job("warm-up")
			e.Publish(warm, e.VideoUploaded(videoID))
			e.Outcome(warm, 2*time.Minute)

			var step, plain time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				out := filepath.Join(b.TempDir(), "plain.mp3")
				start := time.Now()
				cmd := exec.Command("ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-loglevel", "error", "-y", "-i", video,
					"-map", "0:a:0", "-vn", "-sn", "-dn", "-map_metadata", "-1", "-c:a", "libmp3lame", "-q:a", "2",
					"-id3v2_version", "3", "-f", "mp3", out)
				if msg, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("plain ffmpeg: %v\n%s", err, msg)
				}
				plain += time.Since(start)

				job := e.Job("bench-" + strconv.Itoa(i))
				start = time.Now()
				e.Publish(job, e.VideoUploaded(videoID))
				if o := e.Outcome(job, 2*time.Minute); o.Type != events.TypeAudioReady {
					b.Fatalf("%s: %s", o.Type, o.Payload)
				}
				step += time.Since(start)
			}
			b.StopTimer()
			rss := vmHWM(b, p.Cmd.Process.Pid)
			n := float64(b.N)
			stepMS, plainMS := float64(step.Milliseconds())/n, float64(plain.Milliseconds())/n
			overhead := 100 * (stepMS - plainMS) / plainMS
			b.ReportMetric(stepMS, "converter-ms/op")
			b.ReportMetric(plainMS, "ffmpeg-ms/op")
			b.ReportMetric(overhead, "overhead-%")
			b.ReportMetric(float64(rss)/(1<<20), "converter-peak-RSS-MiB")
			fmt.Printf("converter step (%s, 60 s 720p, %.1f MB): %.0f ms; plain ffmpeg: %.0f ms; overhead %.0f ms (%.0f%%); converter peak RSS %.1f MiB (ffmpeg excluded)\n",
				backend, float64(st.Size())/1e6, stepMS, plainMS, stepMS-plainMS, overhead, float64(rss)/(1<<20))
			if i := strings.LastIndex(p.Output(), `"msg":"converted"`); i >= 0 {
				line := p.Output()[i:]
				if j := strings.IndexByte(line, '\n'); j >= 0 {
					line = line[:j]
				}
				fmt.Printf("  last job's split: %s\n", line)
			}
		})
	}
}

// vmHWM reads the peak resident set size of process pid, in bytes.
func vmHWM(tb testing.TB, pid int) int64 {
	m, err := testenv.ProcessMemory(pid)
	if err != nil {
		tb.Fatal(err)
	}
	return m.Peak
}
