// Package filestorage holds what describes the service as a whole: its
// OpenAPI document (openapi.yaml), which a test keeps in sync with the
// routes the API registers.
package filestorage

import _ "embed"

// OpenAPI is openapi.yaml: the HTTP API's description.
//
//go:embed openapi.yaml
var OpenAPI []byte
