package ffmpeg

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Defaults of ConvertOptions.
const (
	// DefaultMaxTime is the hard cap on one conversion, whatever the
	// video's duration.
	DefaultMaxTime = 60 * time.Minute
	// BaseTime is the part of a conversion's time limit that does not
	// depend on the duration (start-up, a slow disk, a busy machine).
	BaseTime = 2 * time.Minute
	// DefaultProgressEvery is the least time between two progress reports.
	DefaultProgressEvery = time.Second
	// waitDelay bounds the wait for ffmpeg's pipes after it was killed.
	waitDelay = 5 * time.Second
)

// ConvertOptions tune Convert.
type ConvertOptions struct {
	// Quality of the MP3 (DefaultQuality when zero).
	Quality Quality
	// Title goes to the MP3's ID3 title tag when not empty. No other tag of
	// the source is copied (phone videos carry locations and device names).
	Title string
	// Duration is the source's duration (from Probe): it scales the time
	// limit and turns ffmpeg's position into a percentage. 0: unknown.
	Duration time.Duration
	// MaxTime caps the time limit (DefaultMaxTime when zero).
	MaxTime time.Duration
	// OnProgress, when set, receives the percentage done, at most once per
	// ProgressEvery, from the goroutine reading ffmpeg's output.
	OnProgress func(percent int)
	// ProgressEvery is DefaultProgressEvery when zero.
	ProgressEvery time.Duration
}

// TimeLimit is how long a conversion of a source lasting duration may run:
// BaseTime plus the duration itself (ffmpeg extracts and encodes audio tens
// of times faster than real time), capped at maxTime; maxTime when the
// duration is unknown.
func TimeLimit(duration, maxTime time.Duration) time.Duration {
	if maxTime <= 0 {
		maxTime = DefaultMaxTime
	}
	if duration <= 0 {
		return maxTime
	}
	return min(maxTime, BaseTime+duration)
}

// Result describes the MP3 written.
type Result struct {
	Size        int64
	Duration    time.Duration
	BitrateKbps int
}

// Convert writes the first audio track of the file at in as an MP3 to out.
// Permanent failures (the input is at fault, or the time limit was hit)
// are *Failure; anything else (ffmpeg killed by a signal, ctx cancelled, a
// full disk) is a plain error worth retrying. out is removed on failure.
func (t Tools) Convert(ctx context.Context, in, out string, opts ConvertOptions) (res Result, err error) {
	defer func() {
		if err != nil {
			_ = os.Remove(out)
		}
	}()
	limit := TimeLimit(opts.Duration, opts.MaxTime)
	runCtx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()

	args := []string{"-nostdin", "-hide_banner", "-nostats", "-loglevel", "error", "-y",
		"-i", in, "-map", "0:a:0", "-vn", "-sn", "-dn", "-map_metadata", "-1",
		"-c:a", "libmp3lame"}
	args = append(args, opts.Quality.encoderArgs()...)
	args = append(args, "-id3v2_version", "3")
	if opts.Title != "" {
		args = append(args, "-metadata", "title="+opts.Title)
	}
	args = append(args, "-progress", "pipe:1", "-f", "mp3", out)
	cmd := exec.CommandContext(runCtx, t.FFmpeg, args...)
	setProcAttr(cmd)
	cmd.WaitDelay = waitDelay
	var stderr bytes.Buffer
	cmd.Stderr = &limitedBuffer{max: maxStderr, buf: &stderr}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return Result{}, fmt.Errorf("ffmpeg stdout: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return Result{}, fmt.Errorf("start ffmpeg: %w", err)
	}
	every := opts.ProgressEvery
	if every <= 0 {
		every = DefaultProgressEvery
	}
	outDuration := ParseProgress(stdout, opts.Duration, every, time.Now, opts.OnProgress)
	err = cmd.Wait()
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return Result{}, fmt.Errorf("conversion stopped: %w", ctx.Err())
	case errors.Is(runCtx.Err(), context.DeadlineExceeded):
		return Result{}, &Failure{Reason: TimeoutReason(int(math.Ceil(limit.Minutes()))),
			Detail: fmt.Sprintf("ffmpeg killed after %s", limit)}
	case killedBySignal(err):
		return Result{}, fmt.Errorf("ffmpeg killed by a signal: %w", err)
	default:
		detail := lastLine(stderr.String())
		if strings.Contains(detail, "No space left") || strings.Contains(detail, "Cannot allocate memory") {
			return Result{}, fmt.Errorf("ffmpeg: %s: %w", detail, err)
		}
		return Result{}, &Failure{Reason: ReasonUnreadable, Detail: "ffmpeg: " + detail}
	}
	st, err := os.Stat(out)
	if err != nil {
		return Result{}, fmt.Errorf("stat %s: %w", out, err)
	}
	if st.Size() > 0 && outDuration > 0 {
		// ffmpeg's last progress block has the MP3's duration: no second
		// ffprobe (~80 ms) needed.
		return Result{Size: st.Size(), Duration: outDuration, BitrateKbps: kbps(st.Size(), outDuration)}, nil
	}
	m, err := t.Probe(ctx, out)
	if _, bad := AsFailure(err); bad || err == nil && (st.Size() == 0 || m.Duration <= 0) {
		return Result{}, &Failure{Reason: ReasonEmptyAudio, Detail: fmt.Sprintf("the MP3 has %d bytes", st.Size())}
	}
	if err != nil {
		return Result{}, fmt.Errorf("probe the MP3: %w", err)
	}
	return Result{Size: st.Size(), Duration: m.Duration, BitrateKbps: m.BitrateKbps}, nil
}

// kbps is the average bit rate of size bytes lasting d, in kbit/s.
func kbps(size int64, d time.Duration) int {
	return int(math.Round(float64(size) * 8 / d.Seconds() / 1000))
}

// ParseProgress reads ffmpeg's -progress output (key=value lines, a block
// per update ending in progress=continue or progress=end) until EOF and
// returns the last output position it saw (at progress=end: the output's
// duration). With fn and a duration it calls fn with the percentage done,
// at most once per every (the first report as soon as there is one; 100 at
// progress=end always).
func ParseProgress(r io.Reader, duration time.Duration, every time.Duration, now func() time.Time, fn func(int)) time.Duration {
	report := fn != nil && duration > 0
	sc := bufio.NewScanner(r)
	var (
		posUS   float64
		last    time.Time
		sent    = -1
		started bool
	)
	for sc.Scan() {
		key, value, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok {
			continue
		}
		switch key {
		case "out_time_us", "out_time_ms": // both are microseconds
			if us, err := strconv.ParseInt(value, 10, 64); err == nil && us >= 0 {
				posUS = float64(us)
			}
		case "progress":
			if !report {
				continue
			}
			pct := int(math.Max(0, math.Min(100, math.Floor(posUS*100/(float64(duration)/1e3)))))
			if value == "end" {
				pct = 100
			} else if pct >= 100 {
				pct = 99 // 100 means done; wait for progress=end
			}
			t := now()
			if pct != sent && (value == "end" || !started || t.Sub(last) >= every) {
				fn(pct)
				sent, last, started = pct, t, true
			}
		}
	}
	_, _ = io.Copy(io.Discard, r)
	if posUS >= float64(math.MaxInt64/1000) {
		return 0
	}
	return time.Duration(posUS) * time.Microsecond
}

// ToMP3 probes the file at in and converts its audio to an MP3 at out,
// keeping its title. A video without an audio track is a *Failure with
// ReasonNoAudio. opts.Duration and opts.Title are taken from the probe.
func (t Tools) ToMP3(ctx context.Context, in, out string, opts ConvertOptions) (Media, Result, error) {
	m, err := t.Probe(ctx, in)
	if err != nil {
		return Media{}, Result{}, err
	}
	if !m.HasAudio {
		return m, Result{}, &Failure{Reason: ReasonNoAudio, Detail: "format " + m.Format}
	}
	opts.Duration, opts.Title = m.Duration, m.Title
	res, err := t.Convert(ctx, in, out, opts)
	return m, res, err
}
