// Package ffmpeg runs ffmpeg and ffprobe for the converter.
package ffmpeg

import (
	"context"
	"fmt"
	"os/exec"
)

// Tools are the paths (or names on PATH) of the binaries the converter
// runs, and the limits each of their processes runs under.
type Tools struct {
	FFmpeg  string
	FFprobe string
	// Limits bound every ffmpeg and ffprobe process (the defaults when zero).
	Limits Limits
}

// Check is the readiness check: nil when both binaries are found and
// executable. It only looks them up (no process per check: Consul calls
// /readyz every second).
func (t Tools) Check(context.Context) error {
	for _, bin := range []string{t.FFmpeg, t.FFprobe} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("find %s: %w", bin, err)
		}
	}
	return nil
}
