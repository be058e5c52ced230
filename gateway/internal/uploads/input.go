package uploads

import (
	"mime"
	"path"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/audiomill/audiomill/platform/errs"
)

// Bounds of an upload's file name and content type. A file name longer
// than common file systems allow, or a content type longer than a sane
// media type with a parameter or two, is refused, not cut.
const (
	MaxFileNameBytes    = 255
	MaxContentTypeBytes = 127
	// DefaultContentType is an upload's content type when the client sends
	// none.
	DefaultContentType = "application/octet-stream"
)

// mediaTypes are the application/* media types a video or its audio comes
// as, besides video/* and audio/*.
var mediaTypes = map[string]bool{DefaultContentType: true, "application/ogg": true, "application/mp4": true}

// ValidName returns the name a client's file name is stored under: its base
// name (a client may send a path: "C:\clips\a.mp4" is "a.mp4"), without
// surrounding spaces. A name that is not valid UTF-8, holds a control
// character (C0, DEL, C1), a bidirectional or line-separator formatting
// character (they disguise a name in an email: "clip\u202Eexe.mp4"), is
// empty, or is longer than MaxFileNameBytes is errs.Invalid.
func ValidName(name string) (string, error) {
	if !utf8.ValidString(name) {
		return "", errs.E(errs.Invalid, "the file name is not valid UTF-8")
	}
	for _, r := range name {
		if unicode.IsControl(r) || isFormatting(r) {
			return "", errs.E(errs.Invalid, "the file name holds a control character (%U)", r)
		}
	}
	name = strings.TrimSpace(path.Base(strings.ReplaceAll(name, "\\", "/")))
	switch {
	case name == "" || name == "." || name == ".." || name == "/":
		return "", errs.E(errs.Invalid, "the file name is empty")
	case len(name) > MaxFileNameBytes:
		return "", errs.E(errs.Invalid, "the file name is longer than %d bytes", MaxFileNameBytes)
	}
	return name, nil
}

// isFormatting reports the characters that reorder or break a displayed
// line: bidirectional marks, embeddings, overrides and isolates, and the
// line and paragraph separators.
func isFormatting(r rune) bool {
	switch {
	case r == 0x061C, r == 0x200E, r == 0x200F, r == 0x2028, r == 0x2029:
		return true
	case r >= 0x202A && r <= 0x202E, r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}

// ValidContentType returns the content type a video is stored with: the
// client's, normalised (mime.FormatMediaType), or DefaultContentType when
// it sent none. One that is not a media type, is longer than
// MaxContentTypeBytes, or is not video/*, audio/*, application/octet-stream,
// application/ogg or application/mp4 is errs.Invalid.
func ValidContentType(ct string) (string, error) {
	if strings.TrimSpace(ct) == "" {
		return DefaultContentType, nil
	}
	if len(ct) > MaxContentTypeBytes {
		return "", errs.E(errs.Invalid, "the content type is longer than %d bytes", MaxContentTypeBytes)
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return "", errs.E(errs.Invalid, "the content type is not a media type")
	}
	major, minor, _ := strings.Cut(mt, "/")
	if minor == "" {
		return "", errs.E(errs.Invalid, "the content type is not a media type")
	}
	if major != "video" && major != "audio" && !mediaTypes[mt] {
		return "", errs.E(errs.Invalid, "the content type must be video/*, audio/* or application/octet-stream")
	}
	out := mime.FormatMediaType(mt, params)
	if out == "" || len(out) > MaxContentTypeBytes {
		return "", errs.E(errs.Invalid, "the content type is not a media type of at most %d bytes", MaxContentTypeBytes)
	}
	return out, nil
}
