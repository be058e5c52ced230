// Package tus holds what both of audiomill's tus 1.0.0 servers
// (filestorage's uploads and the gateway's /api/v1/uploads) read the same
// way: the protocol's version, its content type and Upload-Metadata.
package tus

import (
	"encoding/base64"
	"strings"

	"github.com/audiomill/audiomill/platform/errs"
)

// The protocol's version (Tus-Resumable), the content type of a PATCH, and
// the longest Upload-Metadata the servers read.
const (
	Version          = "1.0.0"
	ContentType      = "application/offset+octet-stream"
	MaxMetadataBytes = 8192
)

// ParseMetadata decodes Upload-Metadata: "key base64value,key2,…" (a key
// may come without a value). A header longer than MaxMetadataBytes, a
// malformed pair, a repeated key or a value that is not base64 is
// errs.Invalid.
func ParseMetadata(s string) (map[string]string, error) {
	out := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	if len(s) > MaxMetadataBytes {
		return nil, errs.E(errs.Invalid, "Upload-Metadata is longer than %d bytes", MaxMetadataBytes)
	}
	for pair := range strings.SplitSeq(s, ",") {
		key, val, _ := strings.Cut(strings.TrimSpace(pair), " ")
		if key == "" || strings.ContainsAny(key, " \t") {
			return nil, errs.E(errs.Invalid, "malformed Upload-Metadata")
		}
		if _, dup := out[key]; dup {
			return nil, errs.E(errs.Invalid, "Upload-Metadata repeats key %q", key)
		}
		dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(val))
		if err != nil {
			return nil, errs.E(errs.Invalid, "Upload-Metadata value of %q is not base64", key)
		}
		out[key] = string(dec)
	}
	return out, nil
}
