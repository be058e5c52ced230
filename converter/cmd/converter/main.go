// Command converter turns uploaded videos into MP3s with ffmpeg. It consumes
// video.uploaded and publishes audio.ready or audio.failed; it registers in
// Consul for health and metrics only.
package main

import (
	"os"

	"github.com/audiomill/audiomill/converter/internal/convert"
	"github.com/audiomill/audiomill/platform/service"
)

// version is set at build time: -ldflags "-X main.version=…".
var version = "dev"

const defaultPort = 8104

func main() {
	os.Exit(service.Run(service.Spec{Name: "converter", Version: version, DefaultPort: defaultPort, Unrouted: true, Wire: convert.Wire}))
}
