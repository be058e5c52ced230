package convert

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// tempPrefix starts the name of every job's temporary directory.
const tempPrefix = "audiomill-convert-"

// SweepTemp removes the job directories in dir older than age: those of a
// converter killed mid-job (kill -9, OOM). age must exceed the longest job,
// since replicas may share dir. It returns how many it removed.
func SweepTemp(dir string, age time.Duration, now time.Time) (int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("sweep %s: %w", dir, err)
	}
	removed := 0
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), tempPrefix) {
			continue
		}
		info, err := e.Info()
		if err != nil || now.Sub(info.ModTime()) < age {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return removed, fmt.Errorf("sweep %s: %w", e.Name(), err)
		}
		removed++
	}
	return removed, nil
}
