// Package tus holds what both of audiomill's tus 1.0.0 servers
// (filestorage's uploads and the gateway's /api/v1/uploads) do the same
// way: the protocol's version and the headers of every answer, a PATCH's
// content type, the checksum extension's status and Upload-Metadata.
package tus

import (
	"encoding/base64"
	"net/http"
	"strings"

	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/httpapi"
)

// The protocol's version (Tus-Resumable), the content type of a PATCH, and
// the longest Upload-Metadata the servers read.
const (
	Version          = "1.0.0"
	ContentType      = "application/offset+octet-stream"
	MaxMetadataBytes = 8192
	// StatusChecksumMismatch is the checksum extension's answer to a part
	// whose Upload-Checksum does not match it (the part is discarded).
	StatusChecksumMismatch = 460
)

// Begin sets the headers of every tus answer (Tus-Resumable, and
// Cache-Control: no-store) and checks the request's Tus-Resumable: another
// version is errs.Invalid with status 412 and Tus-Version.
func Begin(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Tus-Resumable", Version)
	w.Header().Set("Cache-Control", "no-store")
	if r.Header.Get("Tus-Resumable") != Version {
		w.Header().Set("Tus-Version", Version)
		return httpapi.WithStatus(http.StatusPreconditionFailed, errs.E(errs.Invalid, "Tus-Resumable must be %s", Version))
	}
	return nil
}

// CheckPatch refuses a PATCH whose Content-Type is not ContentType
// (errs.Invalid with status 415).
func CheckPatch(r *http.Request) error {
	if r.Header.Get("Content-Type") != ContentType {
		return httpapi.WithStatus(http.StatusUnsupportedMediaType, errs.E(errs.Invalid, "Content-Type must be %s", ContentType))
	}
	return nil
}

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
