package storetest

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/audiomill/audiomill/filestorage/internal/store"
	"github.com/audiomill/audiomill/platform/errs"
)

// runMove checks that a move touches only the files its request allows, in
// its own atomic step: under ReplaceOwn the file moved and a file it would
// replace must be the mover's, whatever the caller checked before.
func runMove(t *testing.T, h Harness) {
	// bob's file sits where alice moves to, in another folder and in the
	// same one (GridFS changes one folder document or two).
	for _, to := range []string{"elsewhere/taken", "src/taken"} {
		for _, overwrite := range []bool{true, false} {
			name := "ErrTakeoverAtMove/" + strings.ReplaceAll(to, "/", "_")
			if overwrite {
				name += "/overwrite"
			}
			t.Run(name, func(t *testing.T) {
				b := h.New(t)
				alices := put(t, b, "docs", "src/a", []byte("alice's"))
				bobs, err := b.Put(ctx(t), store.PutRequest{Bucket: "docs", Path: to, Owner: "bob"}, bytes.NewReader([]byte("bob's")))
				if err != nil {
					t.Fatal(err)
				}
				_, err = b.Move(ctx(t), store.MoveRequest{Bucket: "docs", From: "src/a", To: to, Overwrite: overwrite,
					Owner: "alice", Replace: store.ReplaceOwn})
				wantCode(t, err, errs.Conflict)
				if got, want := errs.MessageOf(err), errs.MessageOf(store.ErrPathTaken("docs", to)); got != want {
					t.Fatalf("message = %q, want %q (naming no owner)", got, want)
				}
				wantIntact(t, b, alices, []byte("alice's"))
				wantIntact(t, b, bobs, []byte("bob's"))
				if f, err := b.Stat(ctx(t), alices.ID); err != nil || f.Path != "src/a" {
					t.Fatalf("alice's file by id = %+v, %v; want it at src/a", f, err)
				}
				if u := usage(t, b, "bob"); u != bobs.Size {
					t.Fatalf("bob's usage = %d, want %d", u, bobs.Size)
				}
				if u := usage(t, b, "alice"); u != alices.Size {
					t.Fatalf("alice's usage = %d, want %d", u, alices.Size)
				}
				p, err := b.List(ctx(t), "docs", store.ListOptions{Owner: "bob"})
				if err != nil || len(p.Entries) != 1 || p.Entries[0].Key() != to {
					t.Fatalf("bob's listing = %+v, %v", p, err)
				}
			})
		}
	}

	t.Run("ErrForeignSource", func(t *testing.T) {
		b := h.New(t)
		// alice's file at the path became bob's (an admin replaced it)
		// after alice looked: her move must not take bob's file along.
		put(t, b, "docs", "in/x", []byte("alice's"))
		bobs, err := b.Put(ctx(t), store.PutRequest{Bucket: "docs", Path: "in/x", Owner: "bob", Replace: store.ReplaceAny},
			bytes.NewReader([]byte("bob's")))
		if err != nil {
			t.Fatal(err)
		}
		for _, to := range []string{"out/x", "in/y"} {
			_, err = b.Move(ctx(t), store.MoveRequest{Bucket: "docs", From: "in/x", To: to, Overwrite: true, Owner: "alice"})
			wantCode(t, err, errs.NotFound)
			wantIntact(t, b, bobs, []byte("bob's"))
			_, err = b.StatPath(ctx(t), "docs", to)
			wantCode(t, err, errs.NotFound)
		}
	})

	t.Run("CrossingMoves", func(t *testing.T) {
		b := h.New(t)
		// Moves between the same two folders in both directions at once
		// (GridFS locks both folders of each) all end, within a bound.
		const n = 4
		var total int64
		for i := range n {
			total += put(t, b, "docs", fmt.Sprintf("a/%d", i), Data(10+i, uint64(i))).Size
			total += put(t, b, "docs", fmt.Sprintf("b/%d", i), Data(20+i, uint64(i))).Size
		}
		c, cancel := context.WithTimeout(ctx(t), 20*time.Second)
		defer cancel()
		errc := make(chan error, 2*n)
		var wg sync.WaitGroup
		for i := range n {
			for _, dirs := range [][2]string{{"a", "b"}, {"b", "a"}} {
				wg.Go(func() {
					_, err := b.Move(c, store.MoveRequest{Bucket: "docs", From: fmt.Sprintf("%s/%d", dirs[0], i),
						To: fmt.Sprintf("%s/%d-from-%s", dirs[1], i, dirs[0]), Owner: "alice"})
					errc <- err
				})
			}
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			if err != nil {
				t.Fatal(err)
			}
		}
		p, err := b.List(ctx(t), "docs", store.ListOptions{})
		if err != nil || len(p.Entries) != 2*n {
			t.Fatalf("list = %+v, %v", p, err)
		}
		for _, e := range p.Entries {
			if !strings.Contains(e.Key(), "-from-") {
				t.Fatalf("%s was not moved", e.Key())
			}
		}
		if u := usage(t, b, "alice"); u != total {
			t.Fatalf("usage = %d, want %d", u, total)
		}
	})

	t.Run("ReplaceAny", func(t *testing.T) {
		b := h.New(t)
		alices := put(t, b, "docs", "a", []byte("alice's"))
		if _, err := b.Put(ctx(t), store.PutRequest{Bucket: "docs", Path: "d/b", Owner: "bob"}, bytes.NewReader([]byte("bob's"))); err != nil {
			t.Fatal(err)
		}
		// An admin's move (ReplaceAny) moves and replaces anyone's file.
		moved, err := b.Move(ctx(t), store.MoveRequest{Bucket: "docs", From: "a", To: "d/b", Overwrite: true,
			Owner: "service", Replace: store.ReplaceAny})
		if err != nil || moved.ID != alices.ID || moved.Owner != "alice" || moved.Path != "d/b" {
			t.Fatalf("admin's move = %+v, %v", moved, err)
		}
		alices.Path = "d/b"
		wantIntact(t, b, alices, []byte("alice's"))
		if u := usage(t, b, "bob"); u != 0 {
			t.Fatalf("bob's usage = %d after his file was replaced", u)
		}
		// alice's own move onto her own file replaces it.
		mine := put(t, b, "docs", "e/mine", []byte("mine"))
		moved, err = b.Move(ctx(t), store.MoveRequest{Bucket: "docs", From: "e/mine", To: "d/b", Overwrite: true, Owner: "alice"})
		if err != nil || moved.ID != mine.ID {
			t.Fatalf("alice's move onto her own file = %+v, %v", moved, err)
		}
		_, err = b.Stat(ctx(t), alices.ID)
		wantCode(t, err, errs.NotFound)
		if u := usage(t, b, "alice"); u != mine.Size {
			t.Fatalf("alice's usage = %d, want %d", u, mine.Size)
		}
	})
}
