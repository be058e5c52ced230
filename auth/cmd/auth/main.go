// Command auth is audiomill's account and token service. It keeps users and
// signing keys in MongoDB and refresh tokens, rate limits and the token deny
// list in Redis.
//
//	auth              run the service
//	auth rotate-keys  make a new current signing key and exit
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/audiomill/audiomill/auth/internal/app"
	"github.com/audiomill/audiomill/platform/service"
)

// version is set at build time: -ldflags "-X main.version=…".
var version = "dev"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "rotate-keys" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		code := app.RotateKeys(ctx, os.Getenv, os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(service.Run(app.Spec(version)))
}
