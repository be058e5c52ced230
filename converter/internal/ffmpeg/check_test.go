package ffmpeg_test

import (
	"context"
	"testing"
	"time"

	"github.com/audiomill/audiomill/converter/internal/ffmpeg"
)

func TestCheck(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := (ffmpeg.Tools{FFmpeg: "ffmpeg", FFprobe: "ffprobe"}).Check(ctx); err != nil {
		t.Fatalf("ffmpeg is required (install Debian's ffmpeg: scripts/install.sh): %v", err)
	}
	if err := (ffmpeg.Tools{FFmpeg: "ffmpeg-missing", FFprobe: "ffprobe"}).Check(ctx); err == nil {
		t.Fatal("check passed with a missing binary")
	}
}
