package store_test

import (
	"path"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/audiomill/audiomill/filestorage/internal/store"
	"github.com/audiomill/audiomill/platform/errs"
)

func TestValidatePath(t *testing.T) {
	long := strings.Repeat("a", store.MaxSegmentBytes+1)
	deep := strings.Repeat("a/", store.MaxDepth) + "a"
	for _, c := range []struct {
		path string
		ok   bool
	}{
		{"a", true}, {"a/b/c.txt", true}, {"héllo wörld/ø.mp3", true}, {"a..b", true}, {".hidden", true}, {"...", true},
		{"", false}, {"..", false}, {".", false}, {"../etc/passwd", false}, {"a/../b", false}, {"a/./b", false},
		{"/abs", false}, {"a/", false}, {"a//b", false}, {"a\x00b", false}, {"a\nb", false}, {"a\x7fb", false},
		{"a\u0085b", false}, {"a\\b", false}, {"\xff", false}, {long, false}, {deep, false},
		{strings.Repeat("abcdefgh/", 200), false},
	} {
		err := store.ValidatePath(c.path)
		if (err == nil) != c.ok {
			t.Errorf("ValidatePath(%q) = %v, want ok=%v", c.path, err, c.ok)
		}
		if err != nil && errs.CodeOf(err) != errs.Invalid {
			t.Errorf("ValidatePath(%q) code = %s", c.path, errs.CodeOf(err))
		}
	}
}

func TestValidateBucket(t *testing.T) {
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"videos", true}, {"a", true}, {"my-app_2", true}, {"", false}, {"A", false}, {"-a", false}, {"_a", false},
		{"a.files", false}, {".fs", false}, {"a/b", false}, {"..", false}, {strings.Repeat("a", 64), false},
	} {
		if err := store.ValidateBucket(c.name); (err == nil) != c.ok {
			t.Errorf("ValidateBucket(%q) = %v, want ok=%v", c.name, err, c.ok)
		}
	}
}

// FuzzValidatePath: an accepted path is clean, relative, bounded and stays
// inside its bucket when joined to it.
func FuzzValidatePath(f *testing.F) {
	for _, s := range []string{"a/b", "../x", "a/./b", "a\x00", "ü/ö", "a//b", "/", ".hidden/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if store.ValidatePath(p) != nil {
			return
		}
		if !utf8.ValidString(p) || len(p) > store.MaxPathBytes || strings.Count(p, "/")+1 > store.MaxDepth {
			t.Fatalf("accepted %q", p)
		}
		if path.Clean(p) != p || path.IsAbs(p) || p == ".." || strings.HasPrefix(p, "../") || strings.ContainsAny(p, "\x00\\\n\r") {
			t.Fatalf("accepted unclean %q", p)
		}
		if j := path.Join("/bucket", p); !strings.HasPrefix(j, "/bucket/") {
			t.Fatalf("%q escapes the bucket: %s", p, j)
		}
	})
}
