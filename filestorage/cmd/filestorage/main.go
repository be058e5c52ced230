// Command filestorage is audiomill's general file-storage service, used by
// the gateway and the converter and by other internal apps. Files live in
// MongoDB's GridFS or in a plain directory tree (FILESTORAGE_BACKEND). See
// internal/app for what it wires.
package main

import (
	"os"

	"github.com/audiomill/audiomill/filestorage/internal/app"
	"github.com/audiomill/audiomill/platform/service"
)

// version is set at build time: -ldflags "-X main.version=…".
var version = "dev"

func main() {
	os.Exit(service.Run(app.Spec(version)))
}
