// Command filestorage is audiomill's general file-storage service, used by the
// gateway and the converter and by other internal apps. Files live in
// MongoDB's GridFS.
package main

import (
	"context"
	"os"

	"github.com/audiomill/audiomill/platform/service"
)

// version is set at build time: -ldflags "-X main.version=…".
var version = "dev"

const defaultPort = 8102

func main() {
	os.Exit(service.Run(service.Spec{Name: "filestorage", Version: version, DefaultPort: defaultPort, Wire: wire}))
}

func wire(_ context.Context, app *service.App) error {
	_, err := app.Mongo("audiomill_files")
	return err
}
