package web

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/audiomill/audiomill/platform/errs"
)

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
