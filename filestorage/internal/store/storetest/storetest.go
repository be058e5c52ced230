// Package storetest is the one test suite every store.Backend passes.
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/audiomill/audiomill/filestorage/internal/store"
	"github.com/audiomill/audiomill/platform/errs"
)

// Harness builds a fresh, empty backend for one test and tells how much
// partial data it holds.
type Harness struct {
	// New returns an empty backend, cleaned up when tb ends.
	New func(tb testing.TB) store.Backend
	// Leftovers counts stored pieces that belong to no file and no upload
	// (orphan chunks, temporary files); after a failed write it must be 0.
	Leftovers func(tb testing.TB, b store.Backend) int
	// Reopen returns a backend on what b stores, as the next process
	// would open it (b is closed first when it must be).
	Reopen func(tb testing.TB, b store.Backend) store.Backend
}

// Data returns n deterministic pseudo-random bytes.
func Data(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// SHA returns the hex SHA-256 of b.
func SHA(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

func put(t *testing.T, b store.Backend, bucket, path string, data []byte) store.File {
	t.Helper()
	f, err := b.Put(ctx(t), store.PutRequest{Bucket: bucket, Path: path, Owner: "alice", ContentType: "text/plain"}, bytes.NewReader(data))
	if err != nil {
		t.Fatalf("put %s/%s: %v", bucket, path, err)
	}
	return f
}

func read(t *testing.T, b store.Backend, f store.File, off, n int64) []byte {
	t.Helper()
	rc, err := b.Open(ctx(t), f, off, n)
	if err != nil {
		t.Fatalf("open %s: %v", f.Path, err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", f.Path, err)
	}
	return got
}

func wantCode(t *testing.T, err error, code errs.Code) {
	t.Helper()
	if errs.CodeOf(err) != code {
		t.Fatalf("err = %v, want code %s", err, code)
	}
}

func noLeftovers(t *testing.T, h Harness, b store.Backend) {
	t.Helper()
	if n := h.Leftovers(t, b); n != 0 {
		t.Fatalf("%d pieces of partial data left behind", n)
	}
}

// failingReader yields data then fails, like a dropped connection.
type failingReader struct {
	r io.Reader
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if errors.Is(err, io.EOF) {
		return n, errors.New("connection reset by peer")
	}
	return n, err
}

// Run runs the suite against the backends h builds.
func Run(t *testing.T, h Harness) {
	t.Run("PutStatRead", func(t *testing.T) {
		b := h.New(t)
		data := Data(3000, 1)
		f, err := b.Put(ctx(t), store.PutRequest{Bucket: "docs", Path: "a/b.txt", Owner: "alice", ContentType: "text/plain",
			Custom: map[string]string{"k": "v"}, IdempotencyKey: "key1"}, bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		if f.ID == "" || f.Size != 3000 || f.SHA256 != SHA(data) || f.Owner != "alice" || f.ContentType != "text/plain" || f.Custom["k"] != "v" || f.Created.IsZero() {
			t.Fatalf("put = %+v", f)
		}
		byID, err := b.Stat(ctx(t), f.ID)
		if err != nil || byID.Path != "a/b.txt" || byID.Bucket != "docs" || byID.SHA256 != f.SHA256 {
			t.Fatalf("stat = %+v, %v", byID, err)
		}
		byPath, err := b.StatPath(ctx(t), "docs", "a/b.txt")
		if err != nil || byPath.ID != f.ID || byPath.Custom["k"] != "v" || !byPath.Created.Equal(f.Created) {
			t.Fatalf("stat path = %+v, %v", byPath, err)
		}
		if got := read(t, b, f, 0, -1); !bytes.Equal(got, data) {
			t.Fatal("content differs")
		}
		idem, err := b.FindIdempotent(ctx(t), "docs", "alice", "key1")
		if err != nil || idem.ID != f.ID {
			t.Fatalf("find idempotent = %+v, %v", idem, err)
		}
		_, err = b.FindIdempotent(ctx(t), "docs", "bob", "key1")
		wantCode(t, err, errs.NotFound)
	})

	t.Run("EmptyFile", func(t *testing.T) {
		b := h.New(t)
		f := put(t, b, "docs", "empty", nil)
		if f.Size != 0 || f.SHA256 != SHA(nil) {
			t.Fatalf("put = %+v", f)
		}
		if got := read(t, b, f, 0, -1); len(got) != 0 {
			t.Fatalf("read %d bytes", len(got))
		}
	})

	t.Run("Ranges", func(t *testing.T) {
		b := h.New(t)
		data := Data(10_000, 2)
		f := put(t, b, "docs", "r.bin", data)
		for _, c := range []struct{ off, n int64 }{
			{0, 1}, {0, 10_000}, {999, 2}, {1000, 1000}, {1023, 3000}, {9999, 1}, {5000, -1}, {10_000, -1}, {4096, 100_000},
		} {
			end := int64(len(data))
			if c.n >= 0 {
				end = min(end, c.off+c.n)
			}
			if got := read(t, b, f, c.off, c.n); !bytes.Equal(got, data[c.off:end]) {
				t.Fatalf("range %d+%d: got %d bytes, want %d", c.off, c.n, len(got), end-c.off)
			}
		}
	})

	t.Run("ExclusiveConflict", func(t *testing.T) {
		b := h.New(t)
		first := put(t, b, "docs", "x", []byte("one"))
		_, err := b.Put(ctx(t), store.PutRequest{Bucket: "docs", Path: "x", Exclusive: true}, bytes.NewReader([]byte("two")))
		wantCode(t, err, errs.Conflict)
		if got := read(t, b, first, 0, -1); string(got) != "one" {
			t.Fatalf("content = %q", got)
		}
		noLeftovers(t, h, b)
	})

	t.Run("ReplaceGivesNewID", func(t *testing.T) {
		b := h.New(t)
		first := put(t, b, "docs", "x", []byte("one"))
		second := put(t, b, "docs", "x", []byte("two!"))
		if second.ID == first.ID {
			t.Fatal("replacement kept the id")
		}
		_, err := b.Stat(ctx(t), first.ID)
		wantCode(t, err, errs.NotFound)
		got, err := b.StatPath(ctx(t), "docs", "x")
		if err != nil || got.ID != second.ID || got.Size != 4 {
			t.Fatalf("stat = %+v, %v", got, err)
		}
		stats, err := b.Buckets(ctx(t), "")
		if err != nil || len(stats) != 1 || stats[0].Files != 1 || stats[0].Bytes != 4 {
			t.Fatalf("buckets = %+v, %v", stats, err)
		}
	})

	t.Run("ErrDigestMismatch", func(t *testing.T) {
		b := h.New(t)
		wrong := sha256.Sum256([]byte("something else"))
		_, err := b.Put(ctx(t), store.PutRequest{Bucket: "docs", Path: "d", SHA256: wrong[:]}, bytes.NewReader(Data(5000, 3)))
		wantCode(t, err, errs.Invalid)
		_, err = b.StatPath(ctx(t), "docs", "d")
		wantCode(t, err, errs.NotFound)
		noLeftovers(t, h, b)
		right := sha256.Sum256(Data(5000, 3))
		if _, err := b.Put(ctx(t), store.PutRequest{Bucket: "docs", Path: "d", SHA256: right[:]}, bytes.NewReader(Data(5000, 3))); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("ErrTooLarge", func(t *testing.T) {
		b := h.New(t)
		_, err := b.Put(ctx(t), store.PutRequest{Bucket: "docs", Path: "big", MaxSize: 4000}, bytes.NewReader(Data(9000, 4)))
		wantCode(t, err, errs.TooLarge)
		_, err = b.StatPath(ctx(t), "docs", "big")
		wantCode(t, err, errs.NotFound)
		noLeftovers(t, h, b)
		if _, err := b.Put(ctx(t), store.PutRequest{Bucket: "docs", Path: "big", MaxSize: 4000}, bytes.NewReader(Data(4000, 4))); err != nil {
			t.Fatalf("exactly at the limit: %v", err)
		}
	})

	t.Run("ErrBodyCut", func(t *testing.T) {
		b := h.New(t)
		_, err := b.Put(ctx(t), store.PutRequest{Bucket: "docs", Path: "cut"}, &failingReader{bytes.NewReader(Data(7000, 5))})
		if err == nil {
			t.Fatal("a cut body was stored")
		}
		_, err = b.StatPath(ctx(t), "docs", "cut")
		wantCode(t, err, errs.NotFound)
		noLeftovers(t, h, b)
	})

	t.Run("ErrInvalidNames", func(t *testing.T) {
		b := h.New(t)
		for _, p := range []string{"../x", "a/../../x", "/abs", "a//b", "a/", ".", "..", "a/./b", "a\x00b", "a\nb", "a\\..\\b", ""} {
			_, err := b.Put(ctx(t), store.PutRequest{Bucket: "docs", Path: p}, bytes.NewReader([]byte("x")))
			wantCode(t, err, errs.Invalid)
			_, err = b.StatPath(ctx(t), "docs", p)
			wantCode(t, err, errs.Invalid)
		}
		for _, bucket := range []string{"", "..", "a/b", "A", ".fs", "-x", "a.files"} {
			_, err := b.Put(ctx(t), store.PutRequest{Bucket: bucket, Path: "x"}, bytes.NewReader([]byte("x")))
			wantCode(t, err, errs.Invalid)
		}
		_, err := b.Move(ctx(t), store.MoveRequest{Bucket: "docs", From: "x", To: "../y", Owner: "alice"})
		wantCode(t, err, errs.Invalid)
		stats, err := b.Buckets(ctx(t), "")
		if err != nil || len(stats) != 0 {
			t.Fatalf("buckets = %+v, %v", stats, err)
		}
		noLeftovers(t, h, b)
	})

	t.Run("NotFound", func(t *testing.T) {
		b := h.New(t)
		put(t, b, "docs", "here", []byte("x"))
		for _, id := range []string{"", "nope", "000000000000000000000000", "../../etc/passwd"} {
			_, err := b.Stat(ctx(t), id)
			wantCode(t, err, errs.NotFound)
			wantCode(t, b.Delete(ctx(t), id), errs.NotFound)
		}
		_, err := b.StatPath(ctx(t), "docs", "missing")
		wantCode(t, err, errs.NotFound)
		_, err = b.StatPath(ctx(t), "other", "here")
		wantCode(t, err, errs.NotFound)
		_, err = b.Move(ctx(t), store.MoveRequest{Bucket: "docs", From: "missing", To: "y", Owner: "alice"})
		wantCode(t, err, errs.NotFound)
		_, err = b.GetUpload(ctx(t), "000000000000000000000000")
		wantCode(t, err, errs.NotFound)
	})

	t.Run("List", func(t *testing.T) {
		b := h.New(t)
		for _, p := range []string{"b/e/f", "a", "c-x", "b/d", "b/c", "b-a"} {
			put(t, b, "docs", p, []byte(p))
		}
		keys := func(p store.Page) []string {
			var out []string
			for _, e := range p.Entries {
				out = append(out, e.Key())
			}
			return out
		}
		list := func(o store.ListOptions) store.Page {
			t.Helper()
			p, err := b.List(ctx(t), "docs", o)
			if err != nil {
				t.Fatal(err)
			}
			return p
		}
		check := func(name string, got store.Page, want []string, more bool) {
			t.Helper()
			if !slices.Equal(keys(got), want) || got.More != more {
				t.Fatalf("%s = %v more=%v, want %v more=%v", name, keys(got), got.More, want, more)
			}
		}
		check("all", list(store.ListOptions{}), []string{"a", "b-a", "b/c", "b/d", "b/e/f", "c-x"}, false)
		check("folders", list(store.ListOptions{Delimiter: "/"}), []string{"a", "b-a", "b/", "c-x"}, false)
		check("in b/", list(store.ListOptions{Prefix: "b/", Delimiter: "/"}), []string{"b/c", "b/d", "b/e/"}, false)
		check("prefix b", list(store.ListOptions{Prefix: "b", Delimiter: "/"}), []string{"b-a", "b/"}, false)
		check("page 1", list(store.ListOptions{Delimiter: "/", Limit: 2}), []string{"a", "b-a"}, true)
		check("page 2", list(store.ListOptions{Delimiter: "/", Limit: 2, After: "b-a"}), []string{"b/", "c-x"}, false)
		check("after folder", list(store.ListOptions{Delimiter: "/", Limit: 2, After: "b/"}), []string{"c-x"}, false)
		check("after file", list(store.ListOptions{Limit: 2, After: "b/c"}), []string{"b/d", "b/e/f"}, true)
		check("no match", list(store.ListOptions{Prefix: "zz/"}), nil, false)
		if p := list(store.ListOptions{}); p.Entries[0].File == nil || p.Entries[0].File.Size != 1 {
			t.Fatalf("entry = %+v", p.Entries[0])
		}
		// Another owner's files are hidden from an owner-restricted listing.
		if _, err := b.Put(ctx(t), store.PutRequest{Bucket: "docs", Path: "b/zz", Owner: "bob"}, bytes.NewReader([]byte("x"))); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Put(ctx(t), store.PutRequest{Bucket: "docs", Path: "q/r", Owner: "bob"}, bytes.NewReader([]byte("x"))); err != nil {
			t.Fatal(err)
		}
		check("bob", list(store.ListOptions{Owner: "bob", Delimiter: "/"}), []string{"b/", "q/"}, false)
		check("alice", list(store.ListOptions{Owner: "alice", Prefix: "b/"}), []string{"b/c", "b/d", "b/e/f"}, false)
		for _, bad := range []store.ListOptions{{Prefix: "../"}, {Delimiter: ","}, {Prefix: "a//"}} {
			_, err := b.List(ctx(t), "docs", bad)
			wantCode(t, err, errs.Invalid)
		}
	})

	t.Run("Move", func(t *testing.T) {
		b := h.New(t)
		f := put(t, b, "docs", "in/a.txt", []byte("aaa"))
		put(t, b, "docs", "other", []byte("ooo"))
		moved, err := b.Move(ctx(t), store.MoveRequest{Bucket: "docs", From: "in/a.txt", To: "out/deep/a.txt", Owner: "alice"})
		if err != nil || moved.ID != f.ID || moved.Path != "out/deep/a.txt" {
			t.Fatalf("move = %+v, %v", moved, err)
		}
		got, err := b.Stat(ctx(t), f.ID)
		if err != nil || got.Path != "out/deep/a.txt" {
			t.Fatalf("stat after move = %+v, %v", got, err)
		}
		if c := read(t, b, got, 0, -1); string(c) != "aaa" {
			t.Fatalf("content = %q", c)
		}
		_, err = b.StatPath(ctx(t), "docs", "in/a.txt")
		wantCode(t, err, errs.NotFound)
		_, err = b.Move(ctx(t), store.MoveRequest{Bucket: "docs", From: "out/deep/a.txt", To: "other", Owner: "alice"})
		wantCode(t, err, errs.Conflict)
		if c := read(t, b, got, 0, -1); string(c) != "aaa" {
			t.Fatal("a refused move changed the file")
		}
		moved, err = b.Move(ctx(t), store.MoveRequest{Bucket: "docs", From: "out/deep/a.txt", To: "other", Overwrite: true, Owner: "alice"})
		if err != nil || moved.ID != f.ID {
			t.Fatalf("overwrite = %+v, %v", moved, err)
		}
		at, err := b.StatPath(ctx(t), "docs", "other")
		if err != nil || at.ID != f.ID || string(read(t, b, at, 0, -1)) != "aaa" {
			t.Fatalf("after overwrite = %+v, %v", at, err)
		}
		p, err := b.List(ctx(t), "docs", store.ListOptions{})
		if err != nil || len(p.Entries) != 1 {
			t.Fatalf("list = %+v, %v", p, err)
		}
	})

	t.Run("Delete", func(t *testing.T) {
		b := h.New(t)
		f := put(t, b, "docs", "a/b/c", []byte("abc"))
		put(t, b, "docs", "keep", []byte("k"))
		if err := b.Delete(ctx(t), f.ID); err != nil {
			t.Fatal(err)
		}
		_, err := b.Stat(ctx(t), f.ID)
		wantCode(t, err, errs.NotFound)
		_, err = b.StatPath(ctx(t), "docs", "a/b/c")
		wantCode(t, err, errs.NotFound)
		wantCode(t, b.Delete(ctx(t), f.ID), errs.NotFound)
		p, err := b.List(ctx(t), "docs", store.ListOptions{Delimiter: "/"})
		if err != nil || len(p.Entries) != 1 || p.Entries[0].Key() != "keep" {
			t.Fatalf("list = %+v, %v", p, err)
		}
		noLeftovers(t, h, b)
	})

	t.Run("BucketsAndUsage", func(t *testing.T) {
		b := h.New(t)
		put(t, b, "one", "x", make([]byte, 100))
		put(t, b, "one", "y", make([]byte, 50))
		put(t, b, "two", "z", make([]byte, 7))
		if _, err := b.Put(ctx(t), store.PutRequest{Bucket: "two", Path: "w", Owner: "bob"}, bytes.NewReader(make([]byte, 1000))); err != nil {
			t.Fatal(err)
		}
		stats, err := b.Buckets(ctx(t), "")
		slices.SortFunc(stats, func(a, b store.BucketStats) int { return cmpString(a.Name, b.Name) })
		if err != nil || !slices.Equal(stats, []store.BucketStats{{Name: "one", Files: 2, Bytes: 150}, {Name: "two", Files: 2, Bytes: 1007}}) {
			t.Fatalf("buckets = %+v, %v", stats, err)
		}
		if u, err := b.Usage(ctx(t), "alice"); err != nil || u != 157 {
			t.Fatalf("usage alice = %d, %v", u, err)
		}
		if u, err := b.Usage(ctx(t), "bob"); err != nil || u != 1000 {
			t.Fatalf("usage bob = %d, %v", u, err)
		}
		for name, want := range map[string]bool{"one": true, "two": true, "three": false} {
			if got, err := b.HasBucket(ctx(t), name); err != nil || got != want {
				t.Fatalf("has bucket %s = %v, %v", name, got, err)
			}
		}
		if u, err := b.Usage(ctx(t), "carol"); err != nil || u != 0 {
			t.Fatalf("usage carol = %d, %v", u, err)
		}

		// Below folders, replaced (by the same owner and by another), moved
		// and deleted: usage follows every change.
		usage := func(step string, wantAlice, wantBob int64) {
			t.Helper()
			for owner, want := range map[string]int64{"alice": wantAlice, "bob": wantBob} {
				if u, err := b.Usage(ctx(t), owner); err != nil || u != want {
					t.Fatalf("%s: usage %s = %d, %v; want %d", step, owner, u, err, want)
				}
			}
		}
		put(t, b, "one", "a/b/c", make([]byte, 30))
		usage("nested", 187, 1000)
		put(t, b, "one", "a/b/c", make([]byte, 10))
		usage("replaced", 167, 1000)
		// Another owner's file is replaced only by a write that may (an
		// admin's).
		if _, err := b.Put(ctx(t), store.PutRequest{Bucket: "two", Path: "w", Owner: "alice", Replace: store.ReplaceAny}, bytes.NewReader(make([]byte, 5))); err != nil {
			t.Fatal(err)
		}
		usage("replaced another owner's", 172, 0)
		if _, err := b.Move(ctx(t), store.MoveRequest{Bucket: "one", From: "a/b/c", To: "d/c", Owner: "alice"}); err != nil {
			t.Fatal(err)
		}
		usage("moved", 172, 0)
		x, err := b.StatPath(ctx(t), "one", "x")
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Delete(ctx(t), x.ID); err != nil {
			t.Fatal(err)
		}
		usage("deleted", 72, 0)
		stats, err = b.Buckets(ctx(t), "alice")
		slices.SortFunc(stats, func(a, b store.BucketStats) int { return cmpString(a.Name, b.Name) })
		if err != nil || !slices.Equal(stats, []store.BucketStats{{Name: "one", Files: 2, Bytes: 60}, {Name: "two", Files: 2, Bytes: 12}}) {
			t.Fatalf("alice's buckets = %+v, %v", stats, err)
		}
	})

	t.Run("Upload", func(t *testing.T) {
		b := h.New(t)
		data := Data(9_500, 6)
		u, err := b.CreateUpload(ctx(t), store.Upload{Bucket: "up", Path: "v/big.bin", Owner: "alice", ContentType: "video/mp4", Length: int64(len(data))})
		if err != nil || u.ID == "" || u.Offset != 0 || u.Expires.Before(time.Now()) {
			t.Fatalf("create = %+v, %v", u, err)
		}
		// Parts that end inside chunks, and one cut by a dropped connection.
		u, err = b.AppendUpload(ctx(t), u.ID, 0, bytes.NewReader(data[:1500]), nil)
		if err != nil || u.Offset != 1500 {
			t.Fatalf("append 1 = %+v, %v", u, err)
		}
		_, err = b.AppendUpload(ctx(t), u.ID, 1000, bytes.NewReader(data[1000:2000]), nil)
		wantCode(t, err, errs.Conflict)
		u, err = b.AppendUpload(ctx(t), u.ID, 1500, &failingReader{bytes.NewReader(data[1500:4100])}, nil)
		if err == nil || u.Offset != 4100 {
			t.Fatalf("cut append = %+v, %v (want the bytes before the cut kept)", u, err)
		}
		got, err := b.GetUpload(ctx(t), u.ID)
		if err != nil || got.Offset != 4100 || got.Path != "v/big.bin" || got.Length != 9_500 {
			t.Fatalf("get = %+v, %v", got, err)
		}
		_, err = b.CompleteUpload(ctx(t), u.ID, store.ReplaceOwn)
		wantCode(t, err, errs.Conflict)
		_, err = b.AppendUpload(ctx(t), u.ID, 4100, bytes.NewReader(append(slices.Clone(data[4100:]), 'x')), nil)
		wantCode(t, err, errs.TooLarge)
		// A part that fails verification (a wrong checksum) is discarded,
		// and so is a verified part cut short.
		errBad := errs.E(errs.Invalid, "checksum mismatch")
		u, err = b.AppendUpload(ctx(t), u.ID, 4100, bytes.NewReader(Data(2000, 99)), func() error { return errBad })
		if !errors.Is(err, errBad) || u.Offset != 4100 {
			t.Fatalf("append unverified = %+v, %v", u, err)
		}
		u, err = b.AppendUpload(ctx(t), u.ID, 4100, &failingReader{bytes.NewReader(Data(3000, 98))}, func() error { return nil })
		if err == nil || u.Offset != 4100 {
			t.Fatalf("append verified but cut = %+v, %v", u, err)
		}
		if got, err = b.GetUpload(ctx(t), u.ID); err != nil || got.Offset != 4100 {
			t.Fatalf("after discarded parts = %+v, %v", got, err)
		}
		u, err = b.AppendUpload(ctx(t), u.ID, got.Offset, bytes.NewReader(data[got.Offset:]), nil)
		if err != nil || u.Offset != 9_500 {
			t.Fatalf("append rest = %+v, %v", u, err)
		}
		f, err := b.CompleteUpload(ctx(t), u.ID, store.ReplaceOwn)
		if err != nil || f.ID == "" || f.Size != 9_500 || f.SHA256 != SHA(data) || f.Path != "v/big.bin" || f.ContentType != "video/mp4" || f.Owner != "alice" {
			t.Fatalf("complete = %+v, %v", f, err)
		}
		if c := read(t, b, f, 0, -1); !bytes.Equal(c, data) {
			t.Fatal("content differs")
		}
		if c := read(t, b, f, 1499, 2); !bytes.Equal(c, data[1499:1501]) {
			t.Fatal("range differs")
		}
		_, err = b.GetUpload(ctx(t), u.ID)
		wantCode(t, err, errs.NotFound)
		noLeftovers(t, h, b)
	})

	t.Run("UploadOneAppendAtATime", func(t *testing.T) {
		b := h.New(t)
		u, err := b.CreateUpload(ctx(t), store.Upload{Bucket: "up", Path: "busy", Owner: "alice", Length: 10_000})
		if err != nil {
			t.Fatal(err)
		}
		release := make(chan struct{})
		done := make(chan error, 1)
		pr, pw := io.Pipe()
		go func() {
			_, err := b.AppendUpload(ctx(t), u.ID, 0, pr, nil)
			done <- err
		}()
		if _, err := pw.Write(Data(100, 5)); err != nil { // the first append is under way
			t.Fatal(err)
		}
		_, err = b.AppendUpload(ctx(t), u.ID, 0, bytes.NewReader(Data(10, 6)), nil)
		if !errors.Is(err, store.ErrUploadLocked) {
			t.Fatalf("second append = %v, want ErrUploadLocked", err)
		}
		go func() { <-release; _ = pw.Close() }()
		close(release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		got, err := b.AppendUpload(ctx(t), u.ID, 100, bytes.NewReader(Data(10, 6)), nil)
		if err != nil || got.Offset != 110 {
			t.Fatalf("append after the first ended = %+v, %v", got, err)
		}
	})

	t.Run("UploadExpiryAndDelete", func(t *testing.T) {
		b := h.New(t)
		u, err := b.CreateUpload(ctx(t), store.Upload{Bucket: "up", Path: "gone", Owner: "alice", Length: 5000})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.AppendUpload(ctx(t), u.ID, 0, bytes.NewReader(Data(3000, 7)), nil); err != nil {
			t.Fatal(err)
		}
		ids, err := b.ExpiredUploads(ctx(t), time.Now())
		if err != nil || len(ids) != 0 {
			t.Fatalf("expired now = %v, %v", ids, err)
		}
		ids, err = b.ExpiredUploads(ctx(t), u.Expires.Add(time.Second))
		if err != nil || !slices.Equal(ids, []string{u.ID}) {
			t.Fatalf("expired later = %v, %v", ids, err)
		}
		if err := b.DeleteUpload(ctx(t), u.ID); err != nil {
			t.Fatal(err)
		}
		_, err = b.GetUpload(ctx(t), u.ID)
		wantCode(t, err, errs.NotFound)
		wantCode(t, b.DeleteUpload(ctx(t), u.ID), errs.NotFound)
		noLeftovers(t, h, b)
	})

	t.Run("ClaimBucket", func(t *testing.T) {
		b := h.New(t)
		for _, bucket := range []string{"one", "two", "one", "two"} {
			if err := b.ClaimBucket(ctx(t), bucket, "alice", 2); err != nil {
				t.Fatalf("claim %s: %v", bucket, err)
			}
		}
		if err := b.ClaimBucket(ctx(t), "three", "alice", 2); !errors.Is(err, store.ErrBucketLimit) {
			t.Fatalf("a third bucket with a cap of 2: %v, want ErrBucketLimit", err)
		}
		if ok, err := b.HasBucket(ctx(t), "three"); ok || err != nil {
			t.Fatalf("a refused claim made the bucket: %v, %v", ok, err)
		}
		// Claims are per owner; 0 is no cap.
		for _, bucket := range []string{"three", "four", "five"} {
			if err := b.ClaimBucket(ctx(t), bucket, "bob", 0); err != nil {
				t.Fatalf("bob claims %s: %v", bucket, err)
			}
		}
		// A bucket the owner holds files in (written before claims) is
		// theirs, at the cap too; a claim stays when its files go.
		put(t, b, "legacy", "x", []byte("x"))
		if err := b.ClaimBucket(ctx(t), "legacy", "alice", 2); err != nil {
			t.Fatalf("claim a bucket alice holds files in: %v", err)
		}
		x, _ := b.StatPath(ctx(t), "legacy", "x")
		if err := b.Delete(ctx(t), x.ID); err != nil {
			t.Fatal(err)
		}
		if err := b.ClaimBucket(ctx(t), "legacy", "alice", 2); err != nil {
			t.Fatalf("claim again: %v", err)
		}
		wantCode(t, b.ClaimBucket(ctx(t), "Bad.Name", "alice", 2), errs.Invalid)
		wantCode(t, b.ClaimBucket(ctx(t), "six", "", 2), errs.Invalid)

		// Concurrent claims never pass the cap.
		var wg sync.WaitGroup
		errc := make(chan error, 8)
		for i := range 8 {
			wg.Go(func() { errc <- b.ClaimBucket(ctx(t), "c"+strconv.Itoa(i), "carol", 3) })
		}
		wg.Wait()
		close(errc)
		claimed := 0
		for err := range errc {
			switch {
			case err == nil:
				claimed++
			case !errors.Is(err, store.ErrBucketLimit):
				t.Fatal(err)
			}
		}
		if claimed != 3 {
			t.Fatalf("8 concurrent claims with a cap of 3 made %d", claimed)
		}
	})

	runCommit(t, h)
	runMove(t, h)
	runQuota(t, h)
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
