// Command auth is audiomill's account and token service. It keeps users,
// service clients and signing keys in PostgreSQL and refresh tokens, rate
// limits and the token deny list in Redis.
//
//	auth                     run the service
//	auth rotate-keys         make a new current signing key and exit
//	auth migrate-from-mongo  copy the users and signing keys of a stack's
//	                         MongoDB (MONGO_URI, MONGO_DATABASE) into
//	                         PostgreSQL (DATABASE_URL) and exit; re-running
//	                         copies nothing twice
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/audiomill/audiomill/auth/internal/app"
	"github.com/audiomill/audiomill/platform/service"
)

// version is set at build time: -ldflags "-X main.version=…".
var version = "dev"

func main() {
	commands := map[string]func(context.Context, func(string) string, io.Writer, io.Writer) int{
		"rotate-keys":        app.RotateKeys,
		"migrate-from-mongo": app.MigrateFromMongo,
	}
	if len(os.Args) > 1 {
		command, ok := commands[os.Args[1]]
		if !ok {
			fmt.Fprintf(os.Stderr, "auth: unknown command %q; want rotate-keys or migrate-from-mongo, or none to run the service\n", os.Args[1])
			os.Exit(2)
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		code := command(ctx, os.Getenv, os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(service.Run(app.Spec(version)))
}
