package tus

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/audiomill/audiomill/platform/errs"
)

func TestParseMetadata(t *testing.T) {
	b := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	got, err := ParseMetadata("filename " + b("a b.mp4") + ", filetype " + b("video/mp4") + ",is_confidential")
	if err != nil || got["filename"] != "a b.mp4" || got["filetype"] != "video/mp4" || len(got) != 3 {
		t.Fatalf("ParseMetadata = %v, %v", got, err)
	}
	if got, err := ParseMetadata("  "); err != nil || len(got) != 0 {
		t.Errorf("empty = %v, %v", got, err)
	}
	for name, in := range map[string]string{
		"ErrNotBase64":  "filename a.mp4!",
		"ErrRepeated":   "filename " + b("a") + ",filename " + b("b"),
		"ErrEmptyKey":   "filename " + b("a") + ",",
		"ErrTooLong":    "filename " + strings.Repeat("A", MaxMetadataBytes),
		"ErrKeyWithTab": "file\tname " + b("a"),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseMetadata(in); errs.CodeOf(err) != errs.Invalid {
				t.Errorf("ParseMetadata(%.40q) error %v, want invalid", in, err)
			}
		})
	}
}

func FuzzParseMetadata(f *testing.F) {
	f.Add("filename YS5tcDQ=,filetype dmlkZW8vbXA0")
	f.Add("a,b c")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMetadata(s)
		if err != nil && errs.CodeOf(err) != errs.Invalid {
			t.Fatalf("error of code %s: %v", errs.CodeOf(err), err)
		}
		if err == nil && len(s) > MaxMetadataBytes {
			t.Fatalf("accepted %d bytes", len(s))
		}
		for k := range m {
			if k == "" || strings.ContainsAny(k, " \t") {
				t.Fatalf("key %q", k)
			}
		}
	})
}
