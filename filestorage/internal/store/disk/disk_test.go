package disk_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/audiomill/audiomill/filestorage/internal/store"
	"github.com/audiomill/audiomill/filestorage/internal/store/disk"
	"github.com/audiomill/audiomill/filestorage/internal/store/storetest"
)

func newBackend(tb testing.TB, dir string) *disk.Backend {
	tb.Helper()
	b, err := disk.New(dir, disk.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = b.Close() })
	return b
}

// leftovers counts temporary files, content without metadata and upload
// data without its state.
func leftovers(tb testing.TB, dir string) int {
	tb.Helper()
	n := 0
	tmp, _ := os.ReadDir(filepath.Join(dir, ".fs", "tmp"))
	n += len(tmp)
	ups, _ := os.ReadDir(filepath.Join(dir, ".fs", "uploads"))
	for _, e := range ups {
		if id, ok := strings.CutSuffix(e.Name(), ".data"); ok {
			if _, err := os.Stat(filepath.Join(dir, ".fs", "uploads", id+".json")); err != nil {
				n++
			}
		}
	}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			if rel == ".fs" {
				return filepath.SkipDir
			}
			return nil
		}
		if _, err := os.Stat(filepath.Join(dir, ".fs", "meta", rel)); err != nil {
			n++
		}
		return nil
	})
	return n
}

func TestBackendSuite(t *testing.T) {
	dirs := map[store.Backend]string{}
	storetest.Run(t, storetest.Harness{
		New: func(tb testing.TB) store.Backend {
			dir := tb.TempDir()
			b := newBackend(tb, dir)
			dirs[b] = dir
			return b
		},
		Leftovers: func(tb testing.TB, b store.Backend) int { return leftovers(tb, dirs[b]) },
	})
}

// The raw file is at <root>/<bucket>/<path>, readable by anyone on the server.
func TestRawLayout(t *testing.T) {
	dir := t.TempDir()
	b := newBackend(t, dir)
	if _, err := b.Put(context.Background(), store.PutRequest{Bucket: "docs", Path: "a/b.txt"}, strings.NewReader("hello")); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "docs", "a", "b.txt"))
	if err != nil || string(got) != "hello" {
		t.Fatalf("raw file = %q, %v", got, err)
	}
}

// A symlink planted inside the tree cannot lead a write or read outside it.
func TestSymlinkEscape(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	b := newBackend(t, dir)
	if _, err := b.Put(context.Background(), store.PutRequest{Bucket: "docs", Path: "x"}, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "docs", "link")); err != nil {
		t.Fatal(err)
	}
	_, err := b.Put(context.Background(), store.PutRequest{Bucket: "docs", Path: "link/evil"}, bytes.NewReader([]byte("evil")))
	if err == nil {
		t.Fatal("write through a symlink succeeded")
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("something was written outside the root: %v", entries)
	}
}

// A crash leaves a write's temporary file behind; the next start removes it
// once it is old enough not to be a write in progress, and keeps a fresh one.
func TestStartDropsStaleTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	b, err := disk.New(dir, disk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_ = b.Close()
	tmp := filepath.Join(dir, ".fs", "tmp")
	stale, fresh := filepath.Join(tmp, "cut-by-a-crash"), filepath.Join(tmp, "in-progress")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	b, err = disk.New(dir, disk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the stale temporary file is still there (%v)", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("the fresh temporary file was removed: %v", err)
	}
}

// TestPutLargerThanBackgroundSyncs streams a file past several background
// syncs (every 32 MiB) and reads back exactly what was sent.
func TestPutLargerThanBackgroundSyncs(t *testing.T) {
	dir := t.TempDir()
	b := newBackend(t, dir)
	ctx := context.Background()
	data := append(bytes.Repeat(storetest.Data(1<<20, 7), 70), storetest.Data(12345, 8)...) // 3 background syncs
	sum := sha256.Sum256(data)
	f, err := b.Put(ctx, store.PutRequest{Bucket: "big", Path: "f.bin", Owner: "o", SHA256: sum[:]}, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if f.Size != int64(len(data)) || f.SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("stored %d bytes, sha256 %s; want %d, %x", f.Size, f.SHA256, len(data), sum)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "big", "f.bin"))
	if err != nil || !bytes.Equal(raw, data) {
		t.Fatalf("the file on disk differs (%d bytes, %v)", len(raw), err)
	}
	if n := leftovers(t, dir); n != 0 {
		t.Fatalf("%d leftovers", n)
	}
}
