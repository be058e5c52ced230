package ffmpeg_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/audiomill/audiomill/converter/internal/convertertest"
	"github.com/audiomill/audiomill/converter/internal/ffmpeg"
)

// lyingMP3 writes an MP3 without a Xing header whose first second is at
// 320 kbit/s and the next 20 s at 32 kbit/s: ffmpeg estimates its duration
// from the first frames' bit rate, 3.85 s, and decodes 21 s.
func lyingMP3(t *testing.T, dir string) string {
	t.Helper()
	hi := generate(t, dir, "hi.mp3", args(tone, []string{"-t", "1", "-c:a", "libmp3lame", "-b:a", "320k", "-write_xing", "0", "-id3v2_version", "0"})...)
	lo := generate(t, dir, "lo.mp3", args(tone, []string{"-t", "20", "-c:a", "libmp3lame", "-b:a", "32k", "-write_xing", "0", "-id3v2_version", "0"})...)
	a, err := os.ReadFile(hi)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(lo)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, dir, "lying.mp3", append(a, b...))
}

// convertFails converts in with opts and tools and wants the failure
// reason, quickly, with no output left.
func convertFails(t *testing.T, tools ffmpeg.Tools, in string, opts ffmpeg.ConvertOptions, reason string, within time.Duration) *ffmpeg.Failure {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := filepath.Join(t.TempDir(), "out.mp3")
	start := time.Now()
	_, res, err := tools.ToMP3(ctx, in, out, opts)
	took := time.Since(start)
	f, ok := ffmpeg.AsFailure(err)
	if !ok || f.Reason != reason {
		t.Fatalf("ToMP3 = %+v, %v after %s; want the failure %q", res, err, took, reason)
	}
	if took > within {
		t.Fatalf("failed after %s, want within %s", took, within)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("output left behind: %v", err)
	}
	t.Logf("%v after %s", err, took)
	return f
}

// TestDurationBound: a source whose description says it is longer than
// MaxDuration fails at once, before it is converted: a 5 s video with a
// 2 s cap, and a 100 kB file that decodes to 27 h with the default cap.
func TestDurationBound(t *testing.T) {
	dir := t.TempDir()
	t.Run("LongerThanTheCap", func(t *testing.T) {
		in := generate(t, dir, "five.mp4", args(video, tone, []string{"-t", "5", "-c:v", "libx264", "-c:a", "aac"})...)
		convertFails(t, tools, in, ffmpeg.ConvertOptions{MaxDuration: 2 * time.Second},
			"the video is longer than 2 seconds, the longest we convert", 10*time.Second)
	})
	t.Run("TinyFileOfHours", func(t *testing.T) {
		convertFails(t, tools, convertertest.SlowWAV(t, dir), ffmpeg.ConvertOptions{},
			"the video is longer than 4 hours, the longest we convert", 5*time.Second)
	})
	// A description that says less than the source holds: -t stops the
	// MP3 past the cap, and that fails the same.
	t.Run("DescriptionTellsLess", func(t *testing.T) {
		convertFails(t, tools, lyingMP3(t, dir), ffmpeg.ConvertOptions{MaxDuration: 5 * time.Second},
			ffmpeg.DurationReason(5*time.Second), 10*time.Second)
	})
	t.Run("WithinTheCap", func(t *testing.T) {
		in := generate(t, dir, "two.mp4", args(video, tone, []string{"-t", "2", "-c:v", "libx264", "-c:a", "aac"})...)
		_, res, err := tools.ToMP3(context.Background(), in, filepath.Join(t.TempDir(), "out.mp3"), ffmpeg.ConvertOptions{MaxDuration: 2 * time.Second})
		if err != nil || res.Duration < 1900*time.Millisecond {
			t.Fatalf("ToMP3 = %+v, %v", res, err)
		}
	})
}

// TestOutputSizeBound: an MP3 that would be larger than MaxOutputBytes
// fails with the size reason.
func TestOutputSizeBound(t *testing.T) {
	dir := t.TempDir()
	in := generate(t, dir, "eight.mp4", args(video, tone, []string{"-t", "8", "-c:v", "libx264", "-c:a", "aac"})...)
	convertFails(t, tools, in, ffmpeg.ConvertOptions{MaxOutputBytes: 16 << 10},
		"the MP3 would be larger than 16 KiB, the largest we make", 20*time.Second)
	_, res, err := tools.ToMP3(context.Background(), in, filepath.Join(t.TempDir(), "out.mp3"), ffmpeg.ConvertOptions{MaxOutputBytes: 1 << 20})
	if err != nil || res.Size <= 16<<10 {
		t.Fatalf("with room: %+v, %v", res, err)
	}
}

// TestCPUTimeBound: a runaway (the 27-hour file, allowed by its duration
// cap) is stopped at its CPU time limit with the CPU reason.
func TestCPUTimeBound(t *testing.T) {
	limited := tools
	limited.Limits = ffmpeg.Limits{CPUTime: time.Second}
	f := convertFails(t, limited, convertertest.SlowWAV(t, t.TempDir()), ffmpeg.ConvertOptions{MaxDuration: 100 * time.Hour},
		"the conversion needed more than 1 second of processor time", 30*time.Second)
	if !strings.Contains(f.Detail, "CPU") {
		t.Fatalf("detail %q", f.Detail)
	}
}

// TestLimitsAreSetOnTheProcess reads the limits of a running ffmpeg in
// /proc: the CPU time and the address space configured.
func TestLimitsAreSetOnTheProcess(t *testing.T) {
	dir := t.TempDir()
	in := convertertest.SlowWAV(t, dir)
	limited := tools
	limited.Limits = ffmpeg.Limits{CPUTime: 90 * time.Second, Memory: 768 << 20}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, _, err := limited.ToMP3(ctx, in, filepath.Join(dir, "out.mp3"), ffmpeg.ConvertOptions{MaxDuration: 100 * time.Hour})
		done <- err
	}()
	defer func() { cancel(); <-done }()

	var limits string
	deadline := time.Now().Add(20 * time.Second)
	for limits == "" && time.Now().Before(deadline) {
		if pid := processWith(t, "file:"+in); pid > 0 {
			if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/limits"); err == nil {
				limits = string(b)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if limits == "" {
		t.Fatal("no ffmpeg converting the file was found in /proc")
	}
	for _, want := range [][]string{{"Max cpu time", "90", "92", "seconds"}, {"Max address space", "805306368", "805306368", "bytes"}} {
		if !hasLimit(limits, want) {
			t.Errorf("limits of ffmpeg:\n%s\nwant %q", limits, want)
		}
	}
	select {
	case err := <-done:
		t.Fatalf("ffmpeg ended while checked: %v", err)
	default:
	}
}

// processWith returns the pid of a child of this process whose command
// line has the argument arg (0 when there is none).
func processWith(t *testing.T, arg string) int {
	t.Helper()
	self := strconv.Itoa(os.Getpid())
	tasks, _ := os.ReadDir("/proc/" + self + "/task")
	for _, task := range tasks {
		children, _ := os.ReadFile("/proc/" + self + "/task/" + task.Name() + "/children")
		for _, pid := range strings.Fields(string(children)) {
			cmdline, _ := os.ReadFile("/proc/" + pid + "/cmdline")
			for _, a := range strings.Split(string(cmdline), "\x00") {
				if a == arg {
					n, _ := strconv.Atoi(pid)
					return n
				}
			}
		}
	}
	return 0
}

// hasLimit reports whether /proc/PID/limits has the line want (name,
// soft, hard, unit).
func hasLimit(limits string, want []string) bool {
	for line := range strings.SplitSeq(limits, "\n") {
		if rest, ok := strings.CutPrefix(line, want[0]); ok && strings.Join(strings.Fields(rest), " ") == strings.Join(want[1:], " ") {
			return true
		}
	}
	return false
}

// TestProbeBoundsItsOutput: a file whose description is longer than Probe
// reads (a 1.5 MB title) is refused as unreadable.
func TestProbeBoundsItsOutput(t *testing.T) {
	dir := t.TempDir()
	meta := writeFile(t, dir, "meta.txt", []byte(";FFMETADATA1\ntitle="+strings.Repeat("x", 1_500_000)+"\n"))
	in := generate(t, dir, "tagged.mkv", args(tone, []string{"-i", meta, "-map", "0", "-map_metadata", "1", "-t", "1", "-c:a", "libopus"})...)
	m, err := tools.Probe(context.Background(), in)
	if f, ok := ffmpeg.AsFailure(err); !ok || f.Reason != ffmpeg.ReasonUnreadable || !strings.Contains(f.Detail, "longer than") {
		t.Fatalf("Probe = %+v, %v; want the unreadable failure", m, err)
	}
	// The same with a short title is read.
	small := generate(t, dir, "small.mkv", args(tone, []string{"-t", "1", "-c:a", "libopus", "-metadata", "title=short"})...)
	if m, err := tools.Probe(context.Background(), small); err != nil || m.Title != "short" {
		t.Fatalf("Probe = %+v, %v", m, err)
	}
}
