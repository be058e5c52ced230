// Command converter turns uploaded videos into MP3s with ffmpeg. It consumes
// video.uploaded and publishes audio.ready or audio.failed; it registers in
// Consul for health and metrics only. See internal/app for what it wires.
package main

import (
	"os"

	"github.com/audiomill/audiomill/converter/internal/app"
	"github.com/audiomill/audiomill/platform/service"
)

// version is set at build time: -ldflags "-X main.version=…".
var version = "dev"

func main() {
	os.Exit(service.Run(app.Spec(version)))
}
