package ffmpeg

import (
	"bufio"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf16"
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
	// DefaultMaxDuration is the longest source converted: a lecture, a
	// concert or a film fit; a file that decodes to days of audio does not.
	DefaultMaxDuration = 4 * time.Hour
	// DefaultMaxOutputBytes is the largest MP3 one conversion may write:
	// DefaultMaxDuration at 320 kbit/s, the highest quality, is 576 MB.
	DefaultMaxOutputBytes = 1 << 30
	// durationMargin is how far past MaxDuration ffmpeg's -t lets the MP3
	// run: a source whose description is within MaxDuration but whose
	// audio runs a little longer is not cut; one that went past the margin
	// lied about its duration, and fails.
	durationMargin = time.Second
	// waitDelay bounds the wait for ffmpeg's pipes after it was killed.
	waitDelay = 5 * time.Second
)

// ConvertOptions tune ToMP3.
type ConvertOptions struct {
	// Quality of the MP3 (DefaultQuality when zero).
	Quality Quality
	// MaxTime caps the time limit (DefaultMaxTime when zero).
	MaxTime time.Duration
	// MaxDuration is the longest source converted (DefaultMaxDuration when
	// zero): one whose description says it is longer fails at once with
	// DurationReason, and -t stops an MP3 that runs longer anyway (a
	// source that tells no duration, or a wrong one), which fails the same.
	MaxDuration time.Duration
	// MaxOutputBytes is the largest MP3 written (DefaultMaxOutputBytes
	// when zero): -fs stops ffmpeg there, and the conversion fails with
	// OutputSizeReason.
	MaxOutputBytes int64
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

// ToMP3 writes the first audio track of the file at in as an MP3 to out,
// keeping the source's title in its ID3 tag and no other tag (phone videos
// carry locations and device names).
//
// One ffmpeg process does it all, under t.Limits, reading only the file at
// in and only if its format is in FormatWhitelist: the description of the
// input it logs before converting supplies what ffprobe would (see banner):
// the duration (a source longer than opts.MaxDuration is refused there and
// then; the time limit, BaseTime plus the duration, and the progress
// percentage follow it; until then the limit is opts.MaxTime), the title
// (written as an ID3v2.3 tag once ffmpeg is done) and the reason of a
// failure: a video without an audio track is a *Failure with ReasonNoAudio,
// one ffmpeg cannot read or whose format is not allowed ReasonUnreadable,
// and the bounds hit a Failure saying which (TimeoutReason, DurationReason,
// OutputSizeReason, CPUReason, MemoryReason). Anything else (ffmpeg killed
// by a signal, ctx cancelled, a full disk) is a plain error worth retrying.
// out is removed on failure.
func (t Tools) ToMP3(ctx context.Context, in, out string, opts ConvertOptions) (media Media, res Result, err error) {
	defer func() {
		if err != nil {
			_ = os.Remove(out)
		}
	}()
	audio := out + ".audio" // the tag goes in front of it
	defer os.Remove(audio)
	maxDuration := cmp.Or(opts.MaxDuration, DefaultMaxDuration)
	maxBytes := cmp.Or(opts.MaxOutputBytes, DefaultMaxOutputBytes)

	var duration, limit atomic.Int64 // what the input's description tells, and the limit in force
	limit.Store(int64(TimeLimit(0, opts.MaxTime)))
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var timedOut, tooLong atomic.Bool
	begin := time.Now()
	timer := time.AfterFunc(time.Duration(limit.Load()), func() { timedOut.Store(true); cancel() })
	defer timer.Stop()
	log := &banner{onDuration: func(d time.Duration) {
		if d > maxDuration {
			// Refused before a second of it is converted.
			tooLong.Store(true)
			cancel()
			return
		}
		duration.Store(int64(d))
		l := TimeLimit(d, opts.MaxTime)
		limit.Store(int64(l))
		timer.Reset(max(0, l-time.Since(begin)))
	}}

	args := []string{"-nostdin", "-hide_banner", "-nostats", "-loglevel", "level+info", "-y"}
	args = append(args, inputArgs(in)...)
	args = append(args, "-map", "0:a:0", "-vn", "-sn", "-dn", "-map_metadata", "-1", "-c:a", "libmp3lame")
	args = append(args, opts.Quality.encoderArgs()...)
	args = append(args, "-id3v2_version", "0", // the tag is written afterwards
		"-t", strconv.FormatFloat((maxDuration+durationMargin).Seconds(), 'f', 3, 64),
		"-fs", strconv.FormatInt(maxBytes, 10),
		"-progress", "pipe:1", "-f", "mp3", "file:"+audio)
	cmd := exec.CommandContext(runCtx, t.FFmpeg, args...)
	cmd.WaitDelay = waitDelay
	cmd.Stderr = log
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return Media{}, Result{}, fmt.Errorf("ffmpeg stdout: %w", err)
	}
	if err := t.Limits.start(cmd); err != nil {
		return Media{}, Result{}, err
	}
	every := opts.ProgressEvery
	if every <= 0 {
		every = DefaultProgressEvery
	}
	outDuration := parseProgress(stdout, func() time.Duration { return time.Duration(duration.Load()) }, every, time.Now, opts.OnProgress)
	err = cmd.Wait()
	media, described := log.Media()
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return media, Result{}, fmt.Errorf("conversion stopped: %w", ctx.Err())
	case tooLong.Load():
		return media, Result{}, &Failure{Reason: DurationReason(maxDuration), Detail: "its description says " + media.Duration.String()}
	case timedOut.Load():
		l := time.Duration(limit.Load())
		return media, Result{}, &Failure{Reason: TimeoutReason(int(math.Ceil(l.Minutes()))),
			Detail: fmt.Sprintf("ffmpeg killed after %s", l)}
	case t.Limits.overCPU(cmd.ProcessState):
		return media, Result{}, &Failure{Reason: CPUReason(t.Limits.cpu()),
			Detail: fmt.Sprintf("ffmpeg used %s of CPU", cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime())}
	case killedBySignal(err):
		return media, Result{}, fmt.Errorf("ffmpeg killed by a signal: %w", err)
	default:
		detail := log.LastError()
		if format := log.RefusedFormat(); format != "" {
			return media, Result{}, &Failure{Reason: ReasonUnreadable, Detail: "format " + format + " is not in the whitelist"}
		}
		if strings.Contains(detail, "No space left") {
			return media, Result{}, fmt.Errorf("ffmpeg: %s: %w", detail, err)
		}
		if strings.Contains(detail, "Cannot allocate memory") {
			// Its address space is bounded: the input needs more than the
			// limit, and will again.
			return media, Result{}, &Failure{Reason: MemoryReason(t.Limits.memory()), Detail: "ffmpeg: " + detail}
		}
		if described && !media.HasAudio {
			return media, Result{}, &Failure{Reason: ReasonNoAudio, Detail: "format " + media.Format}
		}
		return media, Result{}, &Failure{Reason: ReasonUnreadable, Detail: "ffmpeg: " + detail}
	}
	if !described || !FormatAllowed(media.Format) {
		// ffmpeg enforces the whitelist; this is the second look.
		return media, Result{}, &Failure{Reason: ReasonUnreadable, Detail: "format " + strconv.Quote(media.Format) + " is not in the whitelist"}
	}
	st, err := os.Stat(audio)
	if err != nil {
		return media, Result{}, fmt.Errorf("stat %s: %w", audio, err)
	}
	if st.Size() >= maxBytes {
		return media, Result{}, &Failure{Reason: OutputSizeReason(maxBytes), Detail: fmt.Sprintf("ffmpeg stopped at %d bytes", st.Size())}
	}
	if st.Size() == 0 || outDuration <= 0 {
		// ffmpeg's last progress block has the MP3's duration; without it,
		// ask ffprobe.
		m, err := t.Probe(ctx, audio)
		if _, bad := AsFailure(err); bad || err == nil && (st.Size() == 0 || m.Duration <= 0) {
			return media, Result{}, &Failure{Reason: ReasonEmptyAudio, Detail: fmt.Sprintf("the MP3 has %d bytes", st.Size())}
		}
		if err != nil {
			return media, Result{}, fmt.Errorf("probe the MP3: %w", err)
		}
		outDuration = m.Duration
	}
	if outDuration > maxDuration+durationMargin/2 {
		// The description told less, or nothing; -t stopped it.
		return media, Result{}, &Failure{Reason: DurationReason(maxDuration),
			Detail: fmt.Sprintf("the MP3 reached %s; the description said %s", outDuration, media.Duration)}
	}
	n, err := prependTitle(out, audio, media.Title)
	if err != nil {
		return media, Result{}, err
	}
	return media, Result{Size: st.Size() + n, Duration: outDuration, BitrateKbps: kbps(st.Size(), outDuration)}, nil
}

// prependTitle writes out: an ID3v2.3 tag holding title (none when title is
// empty), then the MP3 at audio. It returns the tag's size.
func prependTitle(out, audio, title string) (int64, error) {
	tag := ID3Title(title)
	if len(tag) == 0 {
		if err := os.Rename(audio, out); err != nil {
			return 0, fmt.Errorf("move the MP3 into place: %w", err)
		}
		return 0, nil
	}
	src, err := os.Open(audio)
	if err != nil {
		return 0, fmt.Errorf("open the MP3: %w", err)
	}
	defer src.Close()
	dst, err := os.OpenFile(out, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, fmt.Errorf("create %s: %w", out, err)
	}
	_, err = dst.Write(tag)
	if err == nil {
		_, err = io.Copy(dst, src)
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("write %s: %w", out, err)
	}
	return int64(len(tag)), nil
}

// maxTitleRunes bounds the title written to the tag.
const maxTitleRunes = 512

// ID3Title returns an ID3v2.3 tag with title as its TIT2 frame (at most
// maxTitleRunes runes; ISO-8859-1 when it is ASCII, else UTF-16 with a byte
// order mark), or nothing when title is empty.
func ID3Title(title string) []byte {
	title = strings.ToValidUTF8(title, "\uFFFD")
	if r := []rune(title); len(r) > maxTitleRunes {
		title = string(r[:maxTitleRunes])
	}
	if title == "" {
		return nil
	}
	var text []byte
	if isASCII(title) {
		text = append([]byte{0}, title...)
	} else {
		text = []byte{1, 0xFF, 0xFE}
		for _, u := range utf16.Encode([]rune(title)) {
			text = binary.LittleEndian.AppendUint16(text, u)
		}
	}
	frame := append([]byte("TIT2"), 0, 0, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(frame[4:8], uint32(len(text)))
	frame = append(frame, text...)
	size := len(frame)
	// The tag size is "syncsafe": 7 bits per byte.
	tag := []byte{'I', 'D', '3', 3, 0, 0, byte(size >> 21 & 0x7F), byte(size >> 14 & 0x7F), byte(size >> 7 & 0x7F), byte(size & 0x7F)}
	return append(tag, frame...)
}

func isASCII(s string) bool {
	for i := range len(s) {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// kbps is the average bit rate of size bytes lasting d, in kbit/s.
func kbps(size int64, d time.Duration) int {
	return int(math.Round(float64(size) * 8 / d.Seconds() / 1000))
}

// ParseProgress reads ffmpeg's -progress output (key=value lines, a block
// per update ending in progress=continue or progress=end) until EOF and
// returns the last output position it saw (at progress=end: the output's
// duration). With fn and a duration it calls fn with the percentage done,
// at most once per every (the first report as soon as there is one); with
// fn it reports 100 at progress=end always, even while the duration is
// still unknown.
func ParseProgress(r io.Reader, duration time.Duration, every time.Duration, now func() time.Time, fn func(int)) time.Duration {
	return parseProgress(r, func() time.Duration { return duration }, every, now, fn)
}

// parseProgress is ParseProgress with a duration that may become known (or
// change) while ffmpeg runs.
func parseProgress(r io.Reader, duration func() time.Duration, every time.Duration, now func() time.Time, fn func(int)) time.Duration {
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
			// The end is 100 % whether or not the duration is known (a
			// source whose container tells none).
			d := duration()
			if fn == nil || d <= 0 && value != "end" {
				continue
			}
			var pct int
			if d > 0 {
				pct = int(math.Max(0, math.Min(100, math.Floor(posUS*100/(float64(d)/1e3)))))
			}
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
