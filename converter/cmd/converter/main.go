// Command converter turns uploaded videos into MP3s with ffmpeg. It consumes
// video.uploaded and publishes audio.ready or audio.failed; it registers in
// Consul for health and metrics only.
package main

import (
	"context"
	"os"

	"github.com/audiomill/audiomill/converter/internal/ffmpeg"
	"github.com/audiomill/audiomill/platform/httpapi"
	"github.com/audiomill/audiomill/platform/service"
)

// version is set at build time: -ldflags "-X main.version=…".
var version = "dev"

const defaultPort = 8104

func main() {
	os.Exit(service.Run(service.Spec{Name: "converter", Version: version, DefaultPort: defaultPort, Wire: wire}))
}

func wire(ctx context.Context, app *service.App) error {
	tools := ffmpeg.Tools{
		FFmpeg:  app.Env.String("FFMPEG_PATH", "ffmpeg"),
		FFprobe: app.Env.String("FFPROBE_PATH", "ffprobe"),
	}
	app.Server.AddCheck(httpapi.Check{Name: "ffmpeg", Ping: tools.Check})
	_, err := app.Broker(ctx)
	return err
}
