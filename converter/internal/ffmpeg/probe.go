package ffmpeg

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

const (
	// probeTimeout bounds one ffprobe run: it reads headers, not the whole file.
	probeTimeout = 2 * time.Minute
	// maxProbeOutput bounds the description ffprobe prints and Probe reads:
	// a real file's is a few KiB; a file with thousands of streams or huge
	// tags is refused rather than held in memory.
	maxProbeOutput = 1 << 20
)

// Media is what ffprobe tells about a file.
type Media struct {
	// Duration is the container's duration (0 when ffprobe does not know it).
	Duration time.Duration
	// HasAudio is true when the file holds at least one audio stream.
	HasAudio bool
	// AudioCodec is the first audio stream's codec ("aac", "opus", …).
	AudioCodec string
	// Title is the file's title tag ("" when absent).
	Title string
	// BitrateKbps is the container's overall bit rate (0 when unknown).
	BitrateKbps int
	// Format is ffprobe's format name ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", …).
	Format string
}

type probeOutput struct {
	Streams []struct {
		CodecType string            `json:"codec_type"`
		CodecName string            `json:"codec_name"`
		Tags      map[string]string `json:"tags"`
	} `json:"streams"`
	Format struct {
		FormatName string            `json:"format_name"`
		Duration   string            `json:"duration"`
		BitRate    string            `json:"bit_rate"`
		Tags       map[string]string `json:"tags"`
	} `json:"format"`
}

// Probe describes the file at path, under t.Limits, reading only that file
// and only if its format is in FormatWhitelist. A file ffprobe cannot read,
// of a format not allowed, or whose description is longer than
// maxProbeOutput is a *Failure with ReasonUnreadable; an ffprobe killed by
// a signal or a cancelled ctx is a plain (transient) error.
func (t Tools) Probe(ctx context.Context, path string) (Media, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	args := append([]string{"-v", "error", "-print_format", "json", "-show_format", "-show_streams"}, inputArgs(path)...)
	cmd := exec.CommandContext(ctx, t.FFprobe, args...)
	var stderr bytes.Buffer
	stdout := &cappedBuffer{max: maxProbeOutput}
	cmd.Stdout, cmd.Stderr = stdout, &limitedBuffer{max: maxStderr, buf: &stderr}
	if err := t.Limits.start(cmd); err != nil {
		return Media{}, err
	}
	err := cmd.Wait()
	if err != nil {
		if ctx.Err() != nil || killedBySignal(err) {
			return Media{}, fmt.Errorf("ffprobe %s: %w (%s)", path, err, lastLine(stderr.String()))
		}
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return Media{}, &Failure{Reason: ReasonUnreadable, Detail: "ffprobe: " + lastLine(stderr.String())}
		}
		return Media{}, fmt.Errorf("run ffprobe: %w", err)
	}
	if stdout.over {
		return Media{}, &Failure{Reason: ReasonUnreadable, Detail: fmt.Sprintf("ffprobe's description is longer than %d bytes", maxProbeOutput)}
	}
	return parseProbe(stdout.buf.Bytes())
}

// cappedBuffer keeps the first max bytes written to it and notes whether
// there were more; it takes everything, so the writer never blocks.
type cappedBuffer struct {
	max  int
	buf  bytes.Buffer
	over bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); len(p) > room {
		b.over = true
		b.buf.Write(p[:max(room, 0)])
		return len(p), nil
	}
	b.buf.Write(p)
	return len(p), nil
}

// parseProbe reads ffprobe's JSON.
func parseProbe(raw []byte) (Media, error) {
	var out probeOutput
	if err := json.Unmarshal(raw, &out); err != nil {
		return Media{}, fmt.Errorf("parse ffprobe output: %w", err)
	}
	if out.Format.FormatName == "" {
		return Media{}, &Failure{Reason: ReasonUnreadable, Detail: "ffprobe found no container format"}
	}
	if !FormatAllowed(out.Format.FormatName) {
		return Media{}, &Failure{Reason: ReasonUnreadable, Detail: "format " + strconv.Quote(out.Format.FormatName) + " is not in the whitelist"}
	}
	m := Media{Format: out.Format.FormatName, Title: tag(out.Format.Tags, "title")}
	if d, err := strconv.ParseFloat(out.Format.Duration, 64); err == nil && d > 0 && !math.IsInf(d, 0) {
		m.Duration = time.Duration(d * float64(time.Second))
	}
	if b, err := strconv.ParseInt(out.Format.BitRate, 10, 64); err == nil && b > 0 {
		m.BitrateKbps = int((b + 500) / 1000)
	}
	for _, s := range out.Streams {
		if s.CodecType != "audio" {
			continue
		}
		if !m.HasAudio {
			m.HasAudio, m.AudioCodec = true, s.CodecName
			if m.Title == "" {
				m.Title = tag(s.Tags, "title")
			}
		}
	}
	return m, nil
}

// tag finds key in tags, ignoring case (Matroska writes TITLE).
func tag(tags map[string]string, key string) string {
	for k, v := range tags {
		if strings.EqualFold(k, key) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
