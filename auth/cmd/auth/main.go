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
	"os"

	"github.com/audiomill/audiomill/auth/internal/app"
	"github.com/audiomill/audiomill/platform/service"
)

// version is set at build time: -ldflags "-X main.version=…".
var version = "dev"

func main() {
	os.Exit(service.Run(app.Spec(version)))
}
