// Command gateway is audiomill's public API: the only service the edge sends
// users to. It owns the jobs (in PostgreSQL, with their outbox), streams
// uploads into filestorage and publishes video.uploaded. See internal/app
// for what it wires.
//
//	gateway                     run the service
//	gateway migrate-from-mongo  copy the jobs of an earlier gateway's MongoDB
//	                            (MONGO_URI, MONGO_DATABASE) into PostgreSQL
//	                            (DATABASE_URL) and exit; safe to run again
package main

import (
	"os"

	"github.com/audiomill/audiomill/gateway/internal/app"
	"github.com/audiomill/audiomill/platform/service"
)

// version is set at build time: -ldflags "-X main.version=…".
var version = "dev"

func main() {
	os.Exit(service.Run(app.Spec(version)))
}
