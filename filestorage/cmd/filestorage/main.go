// Command filestorage is audiomill's general file-storage service, used by
// the gateway and the converter and by other internal apps. Files live in
// MongoDB's GridFS or in a plain directory tree (FILESTORAGE_BACKEND).
package main

import (
	"os"

	"github.com/audiomill/audiomill/filestorage/internal/app"
	"github.com/audiomill/audiomill/platform/service"
)

// version is set at build time: -ldflags "-X main.version=…".
var version = "dev"

const defaultPort = 8102

func main() {
	os.Exit(service.Run(service.Spec{Name: app.Name, Version: version, DefaultPort: defaultPort, Wire: app.Wire}))
}
