package storetest

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/audiomill/audiomill/filestorage/internal/store"
	"github.com/audiomill/audiomill/platform/errs"
)

// wantIntact checks that the file at f's path is still f, with content.
func wantIntact(t *testing.T, b store.Backend, f store.File, content []byte) {
	t.Helper()
	got, err := b.StatPath(ctx(t), f.Bucket, f.Path)
	if err != nil || got.ID != f.ID || got.Owner != f.Owner || got.Size != f.Size {
		t.Fatalf("%s/%s = %+v, %v; want %+v untouched", f.Bucket, f.Path, got, err, f)
	}
	if c := read(t, b, got, 0, -1); !bytes.Equal(c, content) {
		t.Fatalf("%s/%s holds %q, want %q", f.Bucket, f.Path, c, content)
	}
}

// wantQuota checks that err is the quota's refusal.
func wantQuota(t *testing.T, err error) {
	t.Helper()
	if errs.CodeOf(err) != errs.TooLarge || !store.IsQuotaExceeded(err) {
		t.Fatalf("err = %v, want the quota's too_large", err)
	}
}

func usage(t *testing.T, b store.Backend, owner string) int64 {
	t.Helper()
	u, err := b.Usage(ctx(t), owner)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// runCommit checks that a write takes its path only if, at its commit, the
// path is free or holds a file of the same owner (or the write may replace
// anyone's): the owner is checked in the commit's atomic step, not only
// when the write began.
func runCommit(t *testing.T, h Harness) {
	t.Run("ErrTakeoverAtResumableCommit", func(t *testing.T) {
		b := h.New(t)
		data := Data(2500, 40)
		// alice opens an upload while the path is free...
		u, err := b.CreateUpload(ctx(t), store.Upload{Bucket: "docs", Path: "shared/x", Owner: "alice", Length: int64(len(data))})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.AppendUpload(ctx(t), u.ID, 0, bytes.NewReader(data), nil); err != nil {
			t.Fatal(err)
		}
		// ...bob stores a file there meanwhile...
		bobs, err := b.Put(ctx(t), store.PutRequest{Bucket: "docs", Path: "shared/x", Owner: "bob"}, bytes.NewReader([]byte("bob's")))
		if err != nil {
			t.Fatal(err)
		}
		// ...and alice's commit must not replace it.
		_, err = b.CompleteUpload(ctx(t), u.ID, store.ReplaceOwn)
		wantCode(t, err, errs.Conflict)
		wantIntact(t, b, bobs, []byte("bob's"))
		if _, err := b.Stat(ctx(t), u.ID); errs.CodeOf(err) != errs.NotFound {
			t.Fatalf("the losing upload's file exists by id: %v", err)
		}
		_, err = b.GetUpload(ctx(t), u.ID)
		wantCode(t, err, errs.NotFound) // the upload ended with its commit
		noLeftovers(t, h, b)
		if u := usage(t, b, "alice"); u != 0 {
			t.Fatalf("alice's usage = %d after her commit lost", u)
		}
	})

	t.Run("ErrTakeoverAtStreamingCommit", func(t *testing.T) {
		b := h.New(t)
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		go func() {
			_, err := b.Put(ctx(t), store.PutRequest{Bucket: "docs", Path: "slow", Owner: "alice"}, pr)
			done <- err
		}()
		// alice's write is under way (its first bytes are taken)...
		if _, err := pw.Write(Data(3000, 41)); err != nil {
			t.Fatal(err)
		}
		bobs, err := b.Put(ctx(t), store.PutRequest{Bucket: "docs", Path: "slow", Owner: "bob"}, bytes.NewReader([]byte("bob's")))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pw.Write(Data(3000, 42)); err != nil {
			t.Fatal(err)
		}
		_ = pw.Close()
		wantCode(t, <-done, errs.Conflict)
		wantIntact(t, b, bobs, []byte("bob's"))
		noLeftovers(t, h, b)
	})

	t.Run("ReplaceOwnAndAny", func(t *testing.T) {
		b := h.New(t)
		put(t, b, "docs", "mine", []byte("one"))
		again := put(t, b, "docs", "mine", []byte("two")) // alice replaces her own
		wantIntact(t, b, again, []byte("two"))
		// An admin's write (ReplaceAny) replaces anyone's, resumable too.
		u, err := b.CreateUpload(ctx(t), store.Upload{Bucket: "docs", Path: "mine", Owner: "service", Length: 5})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.AppendUpload(ctx(t), u.ID, 0, bytes.NewReader([]byte("admin")), nil); err != nil {
			t.Fatal(err)
		}
		f, err := b.CompleteUpload(ctx(t), u.ID, store.ReplaceAny)
		if err != nil {
			t.Fatal(err)
		}
		wantIntact(t, b, f, []byte("admin"))
		f, err = b.Put(ctx(t), store.PutRequest{Bucket: "docs", Path: "mine", Owner: "bob", Replace: store.ReplaceAny}, bytes.NewReader([]byte("b")))
		if err != nil {
			t.Fatal(err)
		}
		wantIntact(t, b, f, []byte("b"))
		if ua, us, ub := usage(t, b, "alice"), usage(t, b, "service"), usage(t, b, "bob"); ua != 0 || us != 0 || ub != 1 {
			t.Fatalf("usage alice %d, service %d, bob %d; want 0, 0, 1", ua, us, ub)
		}
	})
}

// runQuota checks that writes reserve their bytes of the owner's quota
// atomically, so that concurrent writes never store more than it together,
// and that every way a write ends releases its reservation.
func runQuota(t *testing.T, h Harness) {
	const quota = 10
	tus := func(b store.Backend, path string, n int) (store.Upload, error) {
		return b.CreateUpload(ctx(t), store.Upload{Bucket: "q", Path: path, Owner: "alice", Length: int64(n), Quota: quota})
	}
	finish := func(t *testing.T, b store.Backend, u store.Upload, data []byte) (store.File, error) {
		t.Helper()
		if _, err := b.AppendUpload(ctx(t), u.ID, 0, bytes.NewReader(data), nil); err != nil {
			t.Fatal(err)
		}
		return b.CompleteUpload(ctx(t), u.ID, store.ReplaceOwn)
	}

	t.Run("ErrResumableOverQuota", func(t *testing.T) {
		b := h.New(t)
		var mu sync.Mutex
		var created []store.Upload
		var wg sync.WaitGroup
		for i := range 5 {
			wg.Go(func() {
				u, err := tus(b, fmt.Sprintf("f%d", i), 10)
				mu.Lock()
				defer mu.Unlock()
				if err == nil {
					created = append(created, u)
				} else {
					wantQuota(t, err)
				}
			})
		}
		wg.Wait()
		if len(created) != 1 {
			t.Fatalf("%d uploads of 10 bytes were accepted under a quota of 10", len(created))
		}
		if _, err := finish(t, b, created[0], Data(10, 43)); err != nil {
			t.Fatal(err)
		}
		if u := usage(t, b, "alice"); u != 10 {
			t.Fatalf("usage = %d, want 10", u)
		}
		_, err := tus(b, "g", 1)
		wantQuota(t, err)
		// Deleting frees the quota.
		f, err := b.StatPath(ctx(t), "q", created[0].Path)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Delete(ctx(t), f.ID); err != nil {
			t.Fatal(err)
		}
		if u := usage(t, b, "alice"); u != 0 {
			t.Fatalf("usage after delete = %d", u)
		}
		if _, err := tus(b, "g", 10); err != nil {
			t.Fatalf("after the delete: %v", err)
		}
	})

	t.Run("ErrOneShotOverQuota", func(t *testing.T) {
		b := h.New(t)
		// Parallel writes, with a declared length and without: what they
		// store together never passes the quota.
		for _, hint := range []int64{4, 0} {
			var wg sync.WaitGroup
			for i := range 6 {
				wg.Go(func() {
					req := store.PutRequest{Bucket: "q", Path: fmt.Sprintf("p%d-%d", hint, i), Owner: "alice", Quota: quota, SizeHint: hint}
					if _, err := b.Put(ctx(t), req, bytes.NewReader(Data(4, uint64(i)))); err != nil {
						wantQuota(t, err)
					}
				})
			}
			wg.Wait()
			stats, err := b.Buckets(ctx(t), "alice")
			if err != nil {
				t.Fatal(err)
			}
			// With a declared length each write holds 4 bytes: two fit. A
			// body of unknown length holds ahead of what it has stored
			// (ReserveStep, here all that is left), so it may be alone.
			total, used := store.TotalBytes(stats), usage(t, b, "alice")
			if total > quota || total != used || total != 8 && (hint != 0 || total != 4) {
				t.Fatalf("hint %d: stored %d bytes (usage %d) under a quota of %d", hint, total, used, quota)
			}
			page, err := b.List(ctx(t), "q", store.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range page.Entries {
				if err := b.Delete(ctx(t), e.File.ID); err != nil {
					t.Fatal(err)
				}
			}
		}
		// A body of unknown length is refused once it passes what is left.
		_, err := b.Put(ctx(t), store.PutRequest{Bucket: "q", Path: "big", Owner: "alice", Quota: quota}, bytes.NewReader(Data(11, 44)))
		wantQuota(t, err)
		_, err = b.Put(ctx(t), store.PutRequest{Bucket: "q", Path: "big", Owner: "alice", Quota: quota, SizeHint: 11}, bytes.NewReader(Data(11, 44)))
		wantQuota(t, err)
		noLeftovers(t, h, b)
		if _, err := b.Put(ctx(t), store.PutRequest{Bucket: "q", Path: "big", Owner: "alice", Quota: quota}, bytes.NewReader(Data(10, 44))); err != nil {
			t.Fatalf("exactly the quota: %v", err)
		}
	})

	t.Run("FailedWritesRelease", func(t *testing.T) {
		b := h.New(t)
		wrong := make([]byte, 32)
		_, err := b.Put(ctx(t), store.PutRequest{Bucket: "q", Path: "d", Owner: "alice", Quota: quota, SizeHint: 10, SHA256: wrong}, bytes.NewReader(Data(10, 45)))
		wantCode(t, err, errs.Invalid)
		_, err = b.Put(ctx(t), store.PutRequest{Bucket: "q", Path: "d", Owner: "alice", Quota: quota, SizeHint: 10}, &failingReader{bytes.NewReader(Data(6, 45))})
		if err == nil {
			t.Fatal("a cut body was stored")
		}
		_, err = b.Put(ctx(t), store.PutRequest{Bucket: "q", Path: "d", Owner: "alice", Quota: quota, MaxSize: 5}, bytes.NewReader(Data(6, 45)))
		wantCode(t, err, errs.TooLarge)
		// An upload deleted (as the sweep deletes an expired one) releases
		// its reservation.
		u, err := tus(b, "t", 10)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.DeleteUpload(ctx(t), u.ID); err != nil {
			t.Fatal(err)
		}
		// An upload that lost its path to another owner releases it too.
		u, err = tus(b, "taken", 10)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Put(ctx(t), store.PutRequest{Bucket: "q", Path: "taken", Owner: "bob"}, bytes.NewReader([]byte("x"))); err != nil {
			t.Fatal(err)
		}
		_, err = finish(t, b, u, Data(10, 46))
		wantCode(t, err, errs.Conflict)
		// All of the quota is there.
		u, err = tus(b, "all", 10)
		if err != nil {
			t.Fatalf("after failed writes: %v", err)
		}
		if _, err := finish(t, b, u, Data(10, 47)); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("Replace", func(t *testing.T) {
		b := h.New(t)
		p := func(path string, n int, seed uint64) (store.File, error) {
			return b.Put(ctx(t), store.PutRequest{Bucket: "q", Path: path, Owner: "alice", Quota: quota}, bytes.NewReader(Data(n, seed)))
		}
		if _, err := p("c", 8, 48); err != nil {
			t.Fatal(err)
		}
		// A replace needs room only for what it adds.
		if _, err := p("c", 9, 49); err != nil {
			t.Fatalf("replace within the quota: %v", err)
		}
		if u := usage(t, b, "alice"); u != 9 {
			t.Fatalf("usage = %d, want 9", u)
		}
		_, err := p("c", 11, 50)
		wantQuota(t, err)
		// The file a replace was credited with goes away while it streams:
		// its commit finds nothing to free, and is refused.
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		go func() {
			_, err := b.Put(ctx(t), store.PutRequest{Bucket: "q", Path: "c", Owner: "alice", Quota: quota}, pr)
			done <- err
		}()
		if _, err := pw.Write(Data(5, 51)); err != nil {
			t.Fatal(err)
		}
		c, err := b.StatPath(ctx(t), "q", "c")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Move(ctx(t), store.MoveRequest{Bucket: "q", From: "c", To: "moved", Owner: "alice"}); err != nil {
			t.Fatal(err)
		}
		if _, err := pw.Write(Data(4, 52)); err != nil {
			t.Fatal(err)
		}
		_ = pw.Close()
		wantQuota(t, <-done)
		if u := usage(t, b, "alice"); u != 9 {
			t.Fatalf("usage = %d, want 9 (the moved file alone)", u)
		}
		if got, err := b.StatPath(ctx(t), "q", "moved"); err != nil || got.ID != c.ID {
			t.Fatalf("moved = %+v, %v", got, err)
		}
		noLeftovers(t, h, b)
	})

	t.Run("UsageAfterRestart", func(t *testing.T) {
		if h.Reopen == nil {
			t.Fatal("the harness cannot reopen its backend")
		}
		b := h.New(t)
		put(t, b, "one", "a/x", make([]byte, 100))
		put(t, b, "one", "a/y", make([]byte, 50))
		put(t, b, "two", "z", make([]byte, 7))
		put(t, b, "two", "z", make([]byte, 9))
		if _, err := b.Put(ctx(t), store.PutRequest{Bucket: "two", Path: "w", Owner: "bob"}, bytes.NewReader(make([]byte, 1000))); err != nil {
			t.Fatal(err)
		}
		y, err := b.StatPath(ctx(t), "one", "a/y")
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Delete(ctx(t), y.ID); err != nil {
			t.Fatal(err)
		}
		// An upload in progress keeps its reservation across a restart.
		if _, err := b.CreateUpload(ctx(t), store.Upload{Bucket: "two", Path: "up", Owner: "bob", Length: 500, Quota: 1600}); err != nil {
			t.Fatal(err)
		}
		b = h.Reopen(t, b)
		for owner, want := range map[string]int64{"alice": 109, "bob": 1000, "carol": 0} {
			if u := usage(t, b, owner); u != want {
				t.Fatalf("usage of %s after restart = %d, want %d", owner, u, want)
			}
		}
		_, err = b.CreateUpload(ctx(t), store.Upload{Bucket: "two", Path: "up2", Owner: "bob", Length: 101, Quota: 1600})
		wantQuota(t, err)
		if _, err := b.CreateUpload(ctx(t), store.Upload{Bucket: "two", Path: "up2", Owner: "bob", Length: 100, Quota: 1600}); err != nil {
			t.Fatal(err)
		}
	})
}
