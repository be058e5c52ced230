package web

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/audiomill/audiomill/platform/errs"
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

func TestLocaleOf(t *testing.T) {
	for in, want := range map[string]string{
		"":                        "",
		"zh-CN,zh;q=0.9,en;q=0.8": "zh-CN",
		"en;q=0.5":                "en",
		"*":                       "",
		strings.Repeat("x", 50):   "",
	} {
		r, _ := http.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Accept-Language", in)
		if got := localeOf(r); got != want {
			t.Errorf("localeOf(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMP3Name(t *testing.T) {
	for in, want := range map[string]string{"clip.mp4": "clip.mp3", "noext": "noext.mp3", ".hidden": ".hidden.mp3", "a.b.mov": "a.b.mp3"} {
		if got := mp3Name(in); got != want {
			t.Errorf("mp3Name(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLimitedReader(t *testing.T) {
	t.Run("UnderTheLimit", func(t *testing.T) {
		lr := &limitedReader{r: strings.NewReader("12345"), max: 5}
		b, err := io.ReadAll(lr)
		if err != nil || string(b) != "12345" || lr.sourceErr(5) != nil {
			t.Fatalf("%q %v %v", b, err, lr.sourceErr(5))
		}
	})
	t.Run("ErrOverTheLimit", func(t *testing.T) {
		lr := &limitedReader{r: strings.NewReader("123456789"), max: 5}
		b, err := io.ReadAll(lr)
		if !errors.Is(err, errTooLarge) || len(b) > 6 || errs.CodeOf(lr.sourceErr(5)) != errs.TooLarge {
			t.Fatalf("%q %v", b, err)
		}
	})
	t.Run("ErrClientGone", func(t *testing.T) {
		lr := &limitedReader{r: io.MultiReader(strings.NewReader("12"), errReader{}), max: 5}
		_, err := io.ReadAll(lr)
		if err == nil || errs.CodeOf(lr.sourceErr(5)) != errs.Invalid {
			t.Fatalf("%v %v", err, lr.sourceErr(5))
		}
	})
	t.Run("ErrBodyLimit", func(t *testing.T) {
		lr := &limitedReader{r: errReader{err: &http.MaxBytesError{Limit: 5}}, max: 100}
		_, _ = io.ReadAll(lr)
		if errs.CodeOf(lr.sourceErr(100)) != errs.TooLarge {
			t.Fatalf("%v", lr.sourceErr(100))
		}
	})
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	return 0, io.ErrUnexpectedEOF
}
