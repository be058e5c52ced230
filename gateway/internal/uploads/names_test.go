package uploads

import (
	"mime"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/events"
)

func TestValidName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"clip.mp4", "clip.mp4"},
		{"holiday clip.mp4", "holiday clip.mp4"},
		// A client's path is normalised to its base name.
		{"../../etc/passwd", "passwd"},
		{`C:\Users\me\video.avi`, "video.avi"},
		{"  spaced.mov  ", "spaced.mov"},
		{"café.webm", "café.webm"},
		{"👩‍👩‍👧.mp4", "👩‍👩‍👧.mp4"}, // a zero-width joiner is not a control
		{strings.Repeat("a", MaxFileNameBytes), strings.Repeat("a", MaxFileNameBytes)},
	} {
		got, err := ValidName(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ValidName(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for name, in := range map[string]string{
		"ErrEmpty":         "",
		"ErrSlash":         "/",
		"ErrDot":           ".",
		"ErrDotDot":        "a/..",
		"ErrBlank":         "   ",
		"ErrInvalidUTF8":   "\xff\xfe.mp4",
		"ErrNewline":       "a\r\nb.mp4",
		"ErrNUL":           "a\x00.mp4",
		"ErrDEL":           "a\x7f.mp4",
		"ErrC1":            "a\u0085.mp4",
		"ErrRightToLeft":   "clip\u202Eexe.mp4",
		"ErrIsolate":       "clip\u2066.mp4",
		"ErrLineSeparator": "clip\u2028.mp4",
		"ErrTooLong":       strings.Repeat("a", MaxFileNameBytes+1),
		"ErrTooLongRunes":  strings.Repeat("é", 128),
	} {
		if got, err := ValidName(in); err == nil || errs.CodeOf(err) != errs.Invalid {
			t.Errorf("%s: ValidName(%q) = %q, %v; want invalid", name, in, got, err)
		}
	}
}

func FuzzValidName(f *testing.F) {
	for _, s := range []string{"clip.mp4", "../x", "a\x00b", `\\server\share\f.mp4`, strings.Repeat("ü", 600), "a\u202eb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := ValidName(in)
		if err != nil {
			return
		}
		if out == "" || !utf8.ValidString(out) || len(out) > MaxFileNameBytes || strings.ContainsAny(out, "/\\\r\n\x00\u202e") {
			t.Fatalf("ValidName(%q) = %q", in, out)
		}
	})
}

func TestValidContentType(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", DefaultContentType},
		{"video/mp4", "video/mp4"},
		{"Video/MP4", "video/mp4"},
		{"video/webm; codecs=\"vp9, opus\"", "video/webm; codecs=\"vp9, opus\""},
		{"audio/mpeg", "audio/mpeg"},
		{"application/octet-stream", "application/octet-stream"},
		{"application/ogg", "application/ogg"},
		{"video/" + strings.Repeat("x", MaxContentTypeBytes-6), "video/" + strings.Repeat("x", MaxContentTypeBytes-6)},
	} {
		got, err := ValidContentType(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ValidContentType(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for name, in := range map[string]string{
		"ErrTooLong":      "video/" + strings.Repeat("x", MaxContentTypeBytes-5),
		"ErrTooLong200":   "video/" + strings.Repeat("x", 194),
		"ErrNotMediaType": "not a media type",
		"ErrNoSubtype":    "video",
		"ErrBadParam":     "video/mp4; =x",
		"ErrHTML":         "text/html",
		"ErrScript":       "application/javascript",
		"ErrImage":        "image/svg+xml",
		"ErrMultipart":    "multipart/form-data; boundary=x",
		"ErrNewline":      "video/mp4\r\nX-Injected: 1",
	} {
		if got, err := ValidContentType(in); err == nil || errs.CodeOf(err) != errs.Invalid {
			t.Errorf("%s: ValidContentType(%q) = %q, %v; want invalid", name, in, got, err)
		}
	}
}

func FuzzValidContentType(f *testing.F) {
	for _, s := range []string{"video/mp4", "", "video/webm; codecs=vp9", "text/html", strings.Repeat("v", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := ValidContentType(in)
		if err != nil {
			return
		}
		if len(out) > MaxContentTypeBytes || len(out) > events.MaxIDLength || strings.ContainsAny(out, "\r\n") {
			t.Fatalf("ValidContentType(%q) = %q", in, out)
		}
		if _, _, err := mime.ParseMediaType(out); err != nil {
			t.Fatalf("ValidContentType(%q) = %q, not a media type: %v", in, out, err)
		}
	})
}

func TestOwnerDir(t *testing.T) {
	for in, want := range map[string]string{
		"6b043cbc30d0377afdaeb2aa": "6b043cbc30d0377afdaeb2aa",
		"service:gateway":          "service_gateway",
		"a/../b":                   "a____b",
	} {
		if got := ownerDir(in); got != want {
			t.Errorf("ownerDir(%q) = %q, want %q", in, got, want)
		}
	}
}
