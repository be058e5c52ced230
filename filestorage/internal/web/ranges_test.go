package web_test

import (
	"errors"
	"testing"

	"github.com/audiomill/audiomill/filestorage/internal/web"
)

func TestParseRange(t *testing.T) {
	for _, c := range []struct {
		header string
		size   int64
		want   web.Range
		err    error
	}{
		{"bytes=0-99", 1000, web.Range{Start: 0, Length: 100}, nil},
		{"bytes=900-", 1000, web.Range{Start: 900, Length: 100}, nil},
		{"bytes=900-5000", 1000, web.Range{Start: 900, Length: 100}, nil},
		{"bytes=-100", 1000, web.Range{Start: 900, Length: 100}, nil},
		{"bytes=-5000", 1000, web.Range{Start: 0, Length: 1000}, nil},
		{"bytes = 5-5", 1000, web.Range{Start: 5, Length: 1}, nil},
		{"bytes=1000-", 1000, web.Range{}, web.ErrUnsatisfiable},
		{"bytes=-0", 1000, web.Range{}, web.ErrUnsatisfiable},
		{"bytes=0-", 0, web.Range{}, web.ErrUnsatisfiable},
		{"bytes=-1", 0, web.Range{}, web.ErrUnsatisfiable},
		{"bytes=5-1", 1000, web.Range{}, web.ErrIgnoredRange},
		{"bytes=0-1,5-6", 1000, web.Range{}, web.ErrIgnoredRange},
		{"bytes=a-b", 1000, web.Range{}, web.ErrIgnoredRange},
		{"bytes=+1-2", 1000, web.Range{}, web.ErrIgnoredRange},
		{"bytes=99999999999999999999-", 1000, web.Range{}, web.ErrIgnoredRange},
		{"items=0-1", 1000, web.Range{}, web.ErrIgnoredRange},
		{"bytes=", 1000, web.Range{}, web.ErrIgnoredRange},
		{"bytes=-", 1000, web.Range{}, web.ErrIgnoredRange},
		{"", 1000, web.Range{}, web.ErrIgnoredRange},
	} {
		got, err := web.ParseRange(c.header, c.size)
		if !errors.Is(err, c.err) || got != c.want {
			t.Errorf("ParseRange(%q, %d) = %+v, %v; want %+v, %v", c.header, c.size, got, err, c.want, c.err)
		}
	}
}

// FuzzParseRange: a range it accepts always lies inside the file.
func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"bytes=0-99", "bytes=-5", "bytes=10-", "bytes=1-2,3-4", "bytes=9223372036854775807-"} {
		f.Add(s, int64(1000))
	}
	f.Fuzz(func(t *testing.T, header string, size int64) {
		if size < 0 {
			size = -size
		}
		if size < 0 {
			return
		}
		r, err := web.ParseRange(header, size)
		if err != nil {
			if !errors.Is(err, web.ErrUnsatisfiable) && !errors.Is(err, web.ErrIgnoredRange) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if r.Start < 0 || r.Length <= 0 || r.Start+r.Length > size || r.Start+r.Length < r.Start {
			t.Fatalf("ParseRange(%q, %d) = %+v: outside the file", header, size, r)
		}
	})
}
