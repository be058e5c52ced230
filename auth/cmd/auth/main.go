// Command auth is audiomill's account and token service. It keeps users and
// signing keys in MongoDB and refresh tokens and rate limits in Redis.
package main

import (
	"context"
	"os"

	"github.com/audiomill/audiomill/platform/service"
)

// version is set at build time: -ldflags "-X main.version=…".
var version = "dev"

const defaultPort = 8101

func main() {
	os.Exit(service.Run(service.Spec{Name: "auth", Version: version, DefaultPort: defaultPort, Wire: wire}))
}

func wire(_ context.Context, app *service.App) error {
	if _, err := app.Mongo("audiomill_auth"); err != nil {
		return err
	}
	app.Redis()
	return nil
}
