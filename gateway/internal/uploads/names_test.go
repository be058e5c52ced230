package uploads

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/audiomill/audiomill/platform/events"
)

func TestCleanName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"clip.mp4", "clip.mp4"},
		{"holiday clip.mp4", "holiday clip.mp4"},
		{"../../etc/passwd", "passwd"},
		{`C:\Users\me\video.avi`, "video.avi"},
		{"a\r\nb.mp4", "ab.mp4"},
		{"  spaced.mov  ", "spaced.mov"},
		{"café.webm", "café.webm"},
		{"", ""},
		{"/", ""},
		{".", ""},
		{"\xff\xfe", ""},
	} {
		if got := cleanName(tc.in); got != tc.want {
			t.Errorf("cleanName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := cleanName(strings.Repeat("é", 1000)); len(got) > events.MaxFileNameLength || !utf8.ValidString(got) {
		t.Errorf("long name: %d bytes, valid %v", len(got), utf8.ValidString(got))
	}
}

func FuzzCleanName(f *testing.F) {
	for _, s := range []string{"clip.mp4", "../x", "a\x00b", `\\server\share\f.mp4`, strings.Repeat("ü", 600)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := cleanName(in)
		if out == "" {
			return
		}
		if !utf8.ValidString(out) || len(out) > events.MaxFileNameLength || strings.ContainsAny(out, "/\\\r\n\x00") {
			t.Fatalf("cleanName(%q) = %q", in, out)
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
