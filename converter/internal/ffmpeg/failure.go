package ffmpeg

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Reasons of a Failure: sentences a person understands, sent to the user in
// audio.failed.
const (
	// ReasonUnreadable: ffprobe or ffmpeg cannot make sense of the file.
	ReasonUnreadable = "the file is not a video ffmpeg can read"
	// ReasonNoAudio: the video has no sound to convert.
	ReasonNoAudio = "the video has no audio track"
	// ReasonEmptyAudio: there is an audio track but nothing in it could be decoded.
	ReasonEmptyAudio = "the video's audio track is empty or cannot be decoded"
)

// maxStderr bounds how much of a tool's stderr is kept for error messages.
const maxStderr = 16 << 10

// Failure is a permanent conversion failure: the input is at fault and
// converting it again gives the same result.
type Failure struct {
	// Reason is for the user (one of the Reason constants, or the timeout's).
	Reason string
	// Detail is for the logs (the tool's last error line).
	Detail string
}

// Error implements error.
func (f *Failure) Error() string {
	if f.Detail == "" {
		return f.Reason
	}
	return f.Reason + " (" + f.Detail + ")"
}

// AsFailure returns the *Failure in err's chain, if any.
func AsFailure(err error) (*Failure, bool) {
	var f *Failure
	ok := errors.As(err, &f)
	return f, ok
}

// TimeoutReason is the reason of a conversion stopped after limit.
func TimeoutReason(minutes int) string {
	if minutes == 1 {
		return "conversion took longer than 1 minute"
	}
	return fmt.Sprintf("conversion took longer than %d minutes", minutes)
}

// DurationReason is the reason of a source longer than limit (its
// description says so, or the MP3 reached the limit).
func DurationReason(limit time.Duration) string {
	return "the video is longer than " + humanDuration(limit) + ", the longest we convert"
}

// OutputSizeReason is the reason of an MP3 that would be larger than limit
// bytes.
func OutputSizeReason(limit int64) string {
	return "the MP3 would be larger than " + humanBytes(limit) + ", the largest we make"
}

// CPUReason is the reason of an ffmpeg stopped at its CPU time limit.
func CPUReason(limit time.Duration) string {
	return "the conversion needed more than " + humanDuration(limit) + " of processor time"
}

// MemoryReason is the reason of an ffmpeg that ran out of its memory limit.
func MemoryReason(limit int64) string {
	return "the conversion needed more than " + humanBytes(limit) + " of memory"
}

// humanDuration says d in the largest unit that divides it: "4 hours",
// "90 minutes", "2 seconds", "1.5 seconds".
func humanDuration(d time.Duration) string {
	unit := func(n int64, name string) string {
		if n == 1 {
			return "1 " + name
		}
		return strconv.FormatInt(n, 10) + " " + name + "s"
	}
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		return unit(int64(d/time.Hour), "hour")
	case d >= time.Minute && d%time.Minute == 0:
		return unit(int64(d/time.Minute), "minute")
	case d%time.Second == 0:
		return unit(int64(d/time.Second), "second")
	}
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + " seconds"
}

// humanBytes says n bytes in the largest binary unit that divides it
// ("1 GiB", "640 MiB", "20000 bytes").
func humanBytes(n int64) string {
	for _, u := range []struct {
		size int64
		name string
	}{{1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}} {
		if n >= u.size && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + " " + u.name
		}
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// killedBySignal reports whether err is the exit of a process ended by a
// signal (OOM killer, an operator, SIGKILL at a timeout).
func killedBySignal(err error) bool {
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return false
	}
	ws, ok := exit.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled()
}

// lastLine returns the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// limitedBuffer keeps the last max bytes written to it (approximately: it
// drops the older half when full).
type limitedBuffer struct {
	max int
	buf *bytes.Buffer
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) > b.max {
		p = p[len(p)-b.max:]
	}
	if b.buf.Len()+len(p) > b.max {
		keep := b.buf.Bytes()[b.buf.Len()-b.max/2:]
		kept := append([]byte(nil), keep...)
		b.buf.Reset()
		b.buf.Write(kept)
	}
	b.buf.Write(p)
	return n, nil
}
