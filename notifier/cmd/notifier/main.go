// Command notifier emails a job's owner when its MP3 is ready or why it
// failed. It consumes audio.ready and audio.failed (queue notifier.audio);
// it registers in Consul for health and metrics only. See internal/app for
// what it wires.
package main

import (
	"os"

	"github.com/audiomill/audiomill/notifier/internal/app"
	"github.com/audiomill/audiomill/platform/service"
)

// version is set at build time: -ldflags "-X main.version=…".
var version = "dev"

func main() {
	os.Exit(service.Run(app.Spec(version)))
}
