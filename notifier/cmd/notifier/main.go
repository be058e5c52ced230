// Command notifier emails a job's owner when its MP3 is ready or why it
// failed. It consumes audio.ready and audio.failed; it registers in Consul for
// health and metrics only.
package main

import (
	"context"
	"os"

	"github.com/audiomill/audiomill/notifier/internal/mailer"
	"github.com/audiomill/audiomill/platform/httpapi"
	"github.com/audiomill/audiomill/platform/service"
)

// version is set at build time: -ldflags "-X main.version=…".
var version = "dev"

const (
	defaultPort     = 8105
	defaultSMTPAddr = "127.0.0.1:1025"
)

func main() {
	os.Exit(service.Run(service.Spec{Name: "notifier", Version: version, DefaultPort: defaultPort, Wire: wire}))
}

func wire(ctx context.Context, app *service.App) error {
	app.Server.AddCheck(httpapi.Check{Name: "smtp", Ping: mailer.Ping(app.Env.String("SMTP_ADDR", defaultSMTPAddr))})
	app.Redis()
	_, err := app.Broker(ctx)
	return err
}
