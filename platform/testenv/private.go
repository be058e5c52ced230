package testenv

import (
	"io/fs"
	"path/filepath"
	"testing"
)

// PrivateEntries walks dir, fails tb on every entry open to group or
// others (a file or directory other local users could read), and returns
// how many entries it walked, dir included.
func PrivateEntries(tb testing.TB, dir string) int {
	tb.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if perm := info.Mode().Perm(); perm&0o077 != 0 {
			tb.Errorf("%s has mode %v: open to other users", p, perm)
		}
		n++
		return nil
	})
	if err != nil {
		tb.Fatalf("walk %s: %v", dir, err)
	}
	return n
}
