package disk_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/audiomill/audiomill/filestorage/internal/store"
	"github.com/audiomill/audiomill/filestorage/internal/store/disk"
	"github.com/audiomill/audiomill/filestorage/internal/store/storetest"
	"github.com/audiomill/audiomill/platform/testenv"
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
		Reopen: func(tb testing.TB, b store.Backend) store.Backend {
			if err := b.(*disk.Backend).Close(); err != nil {
				tb.Fatal(err)
			}
			nb := newBackend(tb, dirs[b])
			dirs[nb] = dirs[b]
			return nb
		},
	})
}

// The raw file is at <root>/<bucket>/<path>, readable by the service's user.
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

// Nothing filestorage writes under its directory is open to other local
// users: files are 0600, directories 0700 (the root included), whatever
// the umask lets through.
func TestPrivateModes(t *testing.T) {
	dir := t.TempDir()
	b, err := disk.New(dir, disk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := b.Put(ctx, store.PutRequest{Bucket: "docs", Path: "a/b/c.txt", Owner: "o", IdempotencyKey: "k"}, strings.NewReader("secret")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Move(ctx, store.MoveRequest{Bucket: "docs", From: "a/b/c.txt", To: "d/e.txt", Owner: "o"}); err != nil {
		t.Fatal(err)
	}
	done, err := b.CreateUpload(ctx, store.Upload{Bucket: "docs", Path: "up/done", Owner: "o", Length: 3, Quota: 100})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.AppendUpload(ctx, done.ID, 0, strings.NewReader("abc"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CompleteUpload(ctx, done.ID, store.ReplaceOwn); err != nil {
		t.Fatal(err)
	}
	open, err := b.CreateUpload(ctx, store.Upload{Bucket: "docs", Path: "up/open", Owner: "o", Length: 10, Quota: 100})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.AppendUpload(ctx, open.ID, 0, strings.NewReader("half"), nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil { // writes the usage counters
		t.Fatal(err)
	}
	checkPrivate(t, dir, 10)
}

// checkPrivate fails on any entry under dir open to group or others; dir
// must hold at least min entries.
func checkPrivate(t *testing.T, dir string, min int) {
	t.Helper()
	if n := testenv.PrivateEntries(t, dir); n < min {
		t.Fatalf("walked %d entries, want at least %d", n, min)
	}
}

// A directory written by a version before, with wider modes, is closed to
// other users at start: its root becomes 0700.
func TestStartMakesRootPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "files")
	if err := os.MkdirAll(filepath.Join(dir, "docs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "docs", "old.txt"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	newBackend(t, dir)
	info, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o700 {
		t.Fatalf("root mode = %v, want 0700", perm)
	}
}

// Two processes must not share a directory: the second New is refused
// until the first closes.
func TestOneProcessPerDirectory(t *testing.T) {
	dir := t.TempDir()
	b, err := disk.New(dir, disk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if second, err := disk.New(dir, disk.Options{}); err == nil || !strings.Contains(err.Error(), "in use") {
		if second != nil {
			_ = second.Close()
		}
		t.Fatalf("second New = %v, want refused", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	newBackend(t, dir)
}

// The usage counters are written at Close and read back at start; a start
// without them (the first one on data written before, one after a crash,
// which leaves none) or with unreadable ones counts the files again.
func TestUsageCounters(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	b, err := disk.New(dir, disk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i, owner := range []string{"alice", "bob", "alice"} {
		if _, err := b.Put(ctx, store.PutRequest{Bucket: "docs", Path: fmt.Sprintf("f%d", i), Owner: owner}, bytes.NewReader(make([]byte, 10*(i+1)))); err != nil {
			t.Fatal(err)
		}
	}
	usageFile := filepath.Join(dir, ".fs", "usage.json")
	if _, err := os.Stat(usageFile); !os.IsNotExist(err) {
		t.Fatalf("usage.json exists while the backend runs (%v): a crash would leave it stale", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"alice": 40, "bob": 20}
	check := func(step string) {
		t.Helper()
		b, err := disk.New(dir, disk.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		for owner, n := range want {
			if u, err := b.Usage(ctx, owner); err != nil || u != n {
				t.Fatalf("%s: usage %s = %d, %v; want %d", step, owner, u, err, n)
			}
		}
	}
	check("read back")
	for step, corrupt := range map[string]func() error{
		"without counters": func() error { return os.Remove(usageFile) },
		"garbled counters": func() error { return os.WriteFile(usageFile, []byte("{not json"), 0o600) },
		"counters of a version to come": func() error {
			return os.WriteFile(usageFile, []byte(`{"version":99,"used":{"alice":1}}`), 0o600)
		},
	} {
		if err := corrupt(); err != nil {
			t.Fatal(err)
		}
		check(step)
	}
}
