package filecache_test

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/audiomill/audiomill/filestorage/internal/store/filecache"
	"github.com/audiomill/audiomill/platform/testenv"
)

func put(t *testing.T, c *filecache.Cache, id, data string, size int64) {
	t.Helper()
	w := c.Writer(id)
	if _, err := io.Copy(w, strings.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	w.Commit(size)
}

func read(t *testing.T, c *filecache.Cache, id string, size int64) (string, bool) {
	t.Helper()
	f, ok := c.Open(id, size)
	if !ok {
		return "", false
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), true
}

func TestCache(t *testing.T) {
	parent := t.TempDir()
	c, err := filecache.New(parent, 10)
	if err != nil {
		t.Fatal(err)
	}
	put(t, c, "a", "aaaa", 4)
	put(t, c, "b", "bbbb", 4)
	if got, ok := read(t, c, "a", 4); !ok || got != "aaaa" {
		t.Fatalf("a = %q, %v", got, ok)
	}
	if _, ok := c.Open("a", 5); ok {
		t.Fatal("an entry of another size was served")
	}
	// c makes 12 bytes: b, the least recently used, goes.
	put(t, c, "c", "cccc", 4)
	if _, ok := read(t, c, "b", 4); ok {
		t.Fatal("b was not evicted")
	}
	for _, id := range []string{"a", "c"} {
		if _, ok := read(t, c, id, 4); !ok {
			t.Fatalf("%s was evicted", id)
		}
	}
	// Bad input: more than the bound, fewer bytes than told, an aborted
	// entry. None is kept, none evicts anything.
	put(t, c, "big", "0123456789ab", 12)
	put(t, c, "short", "xy", 3)
	w := c.Writer("aborted")
	_, _ = w.Write([]byte("zz"))
	w.Abort()
	for _, id := range []string{"big", "short", "aborted"} {
		if _, ok := c.Open(id, 12); ok {
			t.Fatalf("%s was kept", id)
		}
	}
	if _, ok := read(t, c, "a", 4); !ok {
		t.Fatal("a was evicted by an entry that was not kept")
	}
	c.Remove("a")
	if _, ok := c.Open("a", 4); ok {
		t.Fatal("a removed but still served")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 0 {
		t.Fatalf("Close left %d entries in the parent directory", len(entries))
	}
}

// A write that fails (the directory is gone) never fails the body it is
// teed from; the entry is just not kept.
func TestWriterNeverFails(t *testing.T) {
	c, err := filecache.New(t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close() // its directory is gone
	w := c.Writer("x")
	data := bytes.Repeat([]byte("x"), 1000)
	if n, err := w.Write(data); n != len(data) || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	w.Commit(int64(len(data)))
	if _, ok := c.Open("x", int64(len(data))); ok {
		t.Fatal("an entry that could not be written is served")
	}
}

func TestNewRefusesNoBound(t *testing.T) {
	if _, err := filecache.New(t.TempDir(), 0); err == nil {
		t.Fatal("a cache of 0 bytes was made")
	}
}

// The copies are the service's alone: the cache's directory is 0700 and
// its files 0600.
func TestPrivateModes(t *testing.T) {
	parent := t.TempDir()
	c, err := filecache.New(parent, 100)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	put(t, c, "a", "aaaa", 4)
	w := c.Writer("pending") // a copy still being written
	if _, err := io.WriteString(w, "pp"); err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	dirs, err := os.ReadDir(parent)
	if err != nil || len(dirs) != 1 {
		t.Fatalf("cache directories = %v, %v", dirs, err)
	}
	if n := testenv.PrivateEntries(t, filepath.Join(parent, dirs[0].Name())); n != 3 {
		t.Fatalf("walked %d entries, want the directory and 2 files", n)
	}
}
