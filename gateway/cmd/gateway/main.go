// Command gateway is audiomill's public API: the only service the edge sends
// users to. It owns the jobs collection, streams uploads into filestorage and
// publishes video.uploaded.
package main

import (
	"context"
	"os"

	"github.com/audiomill/audiomill/platform/service"
)

// version is set at build time: -ldflags "-X main.version=…".
var version = "dev"

const defaultPort = 8103

func main() {
	os.Exit(service.Run(service.Spec{Name: "gateway", Version: version, DefaultPort: defaultPort, Wire: wire}))
}

func wire(ctx context.Context, app *service.App) error {
	if _, err := app.Mongo("audiomill_gateway"); err != nil {
		return err
	}
	app.Redis()
	_, err := app.Broker(ctx)
	return err
}
