package ffmpeg

import (
	"bytes"
	"cmp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxLogLine bounds one line of ffmpeg's log kept by banner; the rest of a
// longer line is dropped.
const maxLogLine = 4096

// banner reads ffmpeg's log (stderr, written with -loglevel level+info) as
// ffmpeg writes it. From the description of the input that ffmpeg prints
// before it converts, it learns what ffprobe would tell (the format, the
// duration, the bit rate, the title and the first audio stream), so one
// process does the work of two: ffprobe beside ffmpeg cost 60 % of ffmpeg's
// own CPU time on a 40 s video. It also keeps the last error line, the
// detail of a failure. It is an io.Writer for exec.Cmd.Stderr; Media and
// LastError are read after the command's Wait.
type banner struct {
	// onDuration is called once the input's duration is known.
	onDuration func(time.Duration)

	mu       sync.Mutex
	partial  []byte // the line being written
	level    string // the level of the last prefixed line
	section  string // "input" inside the first input's description, "audio" inside its first audio stream's, "" after
	sawInput bool
	media    Media
	lastErr  string
	refused  string // the demuxer refused by -format_whitelist
}

// Write implements io.Writer.
func (b *banner) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			b.partial = appendBounded(b.partial, p)
			break
		}
		b.partial = appendBounded(b.partial, p[:i])
		b.line(strings.TrimRight(string(b.partial), "\r"))
		b.partial = b.partial[:0]
		p = p[i+1:]
	}
	return n, nil
}

func appendBounded(dst, p []byte) []byte {
	if room := maxLogLine - len(dst); len(p) > room {
		p = p[:max(room, 0)]
	}
	return append(dst, p...)
}

// Media returns what the input's description told; ok is false when ffmpeg
// printed none (it could not read the input).
func (b *banner) Media() (m Media, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.partial) > 0 {
		b.line(string(b.partial))
		b.partial = b.partial[:0]
	}
	return b.media, b.sawInput
}

// RefusedFormat returns the name of the demuxer ffmpeg refused because it
// is not in FormatWhitelist ("" when none was).
func (b *banner) RefusedFormat() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.refused
}

// LastError returns the last line logged at level error or worse, with its
// continuation lines ("" when there is none).
func (b *banner) LastError() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lastErr
}

// line reads one line of the log: "[level] text", "[component @ 0x…]
// [level] text" (a demuxer's, a decoder's…), or a continuation of the
// previous line's message without a prefix.
func (b *banner) line(s string) {
	text, component := s, ""
	if strings.HasPrefix(text, "[") {
		if c, rest, ok := strings.Cut(text[1:], "] "); ok && strings.Contains(c, " @ 0x") {
			component, _, _ = strings.Cut(c, " @ ")
			text = rest
		}
	}
	if strings.HasPrefix(text, "[") {
		if level, rest, ok := strings.Cut(text[1:], "] "); ok && !strings.ContainsAny(level, " ") {
			b.level, text = level, rest
			if isErrorLevel(level) {
				b.lastErr = strings.TrimSpace(text)
				if strings.HasPrefix(text, "Format not on whitelist") && b.refused == "" {
					b.refused = cmp.Or(component, "unknown")
				}
				return
			}
		}
	} else if isErrorLevel(b.level) {
		if t := strings.TrimSpace(text); t != "" {
			b.lastErr += " " + t
		}
		return
	}
	// The description of the input is ffmpeg's own, never a component's.
	if b.level != "info" || component != "" {
		return
	}
	b.describe(text)
}

func isErrorLevel(level string) bool {
	return level == "error" || level == "fatal" || level == "panic"
}

// describe reads a line of ffmpeg's description of its first input:
//
//	Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'video':
//	  Metadata:
//	    title           : My talk
//	  Duration: 00:00:40.02, start: 0.000000, bitrate: 110 kb/s
//	  Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, …
//	    Metadata:
//	      title           : Commentary
//	Stream mapping:
func (b *banner) describe(text string) {
	if strings.HasPrefix(text, "Input #0, ") {
		format := strings.TrimPrefix(text, "Input #0, ")
		if i := strings.LastIndex(format, ", from '"); i >= 0 {
			format = format[:i]
		}
		b.sawInput, b.section, b.media.Format = true, "input", format
		return
	}
	if b.section == "" {
		return
	}
	if !strings.HasPrefix(text, "  ") { // the next top-level block: Input #1, Stream mapping, Output #0
		b.section = ""
		return
	}
	indent := len(text) - len(strings.TrimLeft(text, " "))
	body := strings.TrimSpace(text)
	switch {
	case indent == 2 && strings.HasPrefix(body, "Duration: "):
		b.duration(body)
	case indent == 2 && strings.HasPrefix(body, "Stream #0:"):
		b.section = "input"
		if _, codec, ok := strings.Cut(body, ": Audio: "); ok && !b.media.HasAudio {
			name, _, _ := strings.Cut(codec, " ")
			b.media.HasAudio, b.media.AudioCodec = true, strings.TrimSuffix(name, ",")
			b.section = "audio"
		}
	case indent == 4 && b.section == "input":
		b.tag(body)
	case indent == 6 && b.section == "audio":
		b.tag(body)
	}
}

// tag reads "key : value"; the title of the container wins over the first
// audio stream's, as with ffprobe.
func (b *banner) tag(body string) {
	key, value, ok := strings.Cut(body, ":")
	if !ok || !strings.EqualFold(strings.TrimSpace(key), "title") || b.media.Title != "" {
		return
	}
	b.media.Title = strings.TrimSpace(value)
}

// duration reads "Duration: 00:00:40.02, start: 0.000000, bitrate: 110 kb/s"
// (either may be N/A).
func (b *banner) duration(body string) {
	for field := range strings.SplitSeq(body, ", ") {
		key, value, _ := strings.Cut(field, ": ")
		switch key {
		case "Duration":
			if d, ok := parseClock(value); ok && d > 0 {
				b.media.Duration = d
				if b.onDuration != nil {
					b.onDuration(d)
				}
			}
		case "bitrate":
			if kbps, err := strconv.Atoi(strings.TrimSuffix(value, " kb/s")); err == nil && kbps > 0 {
				b.media.BitrateKbps = kbps
			}
		}
	}
}

// parseClock parses HH:MM:SS.ff.
func parseClock(s string) (time.Duration, bool) {
	h, rest, ok1 := strings.Cut(s, ":")
	m, sec, ok2 := strings.Cut(rest, ":")
	if !ok1 || !ok2 {
		return 0, false
	}
	hours, err1 := strconv.Atoi(h)
	minutes, err2 := strconv.Atoi(m)
	seconds, err3 := strconv.ParseFloat(sec, 64)
	if err1 != nil || err2 != nil || err3 != nil || hours < 0 || minutes < 0 || seconds < 0 {
		return 0, false
	}
	return time.Duration(hours)*time.Hour + time.Duration(minutes)*time.Minute +
		time.Duration(seconds*float64(time.Second)), true
}
