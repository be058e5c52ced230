package convert_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/audiomill/audiomill/converter/internal/convert"
)

func TestSweepTemp(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	mk := func(name string, age time.Duration) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Join(p, "sub"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, now.Add(-age), now.Add(-age)); err != nil {
			t.Fatal(err)
		}
		return p
	}
	old := mk("audiomill-convert-old", 3*time.Hour)
	fresh := mk("audiomill-convert-fresh", time.Minute)
	other := mk("someone-else", 5*time.Hour)
	n, err := convert.SweepTemp(dir, 2*time.Hour, now)
	if err != nil || n != 1 {
		t.Fatalf("swept %d, %v; want 1", n, err)
	}
	for p, want := range map[string]bool{old: false, fresh: true, other: true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s exists: %v, want %v", p, err == nil, want)
		}
	}
}
