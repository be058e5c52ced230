package gridfs

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestLocalLocksExcludeAndHandOver(t *testing.T) {
	var l localLocks
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	inside, most := 0, 0
	for range 20 {
		wg.Go(func() {
			release, err := l.acquire(ctx, "k")
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			inside++
			most = max(most, inside)
			mu.Unlock()
			time.Sleep(time.Millisecond)
			mu.Lock()
			inside--
			mu.Unlock()
			release()
		})
	}
	// Another key is not held up by k's holders.
	other, err := l.acquire(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	other()
	wg.Wait()
	if most != 1 {
		t.Fatalf("%d callers held k at once", most)
	}
	if len(l.keys) != 0 {
		t.Fatalf("queues left behind: %v", l.keys)
	}
}

func TestLocalLocksWaiterLeavesWhenItsContextEnds(t *testing.T) {
	var l localLocks
	release, err := l.acquire(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := l.acquire(ctx, "k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting on a held key past its deadline: %v", err)
	}
	release()
	again, err := l.acquire(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	again()
	if len(l.keys) != 0 {
		t.Fatalf("queues left behind: %v", l.keys)
	}
}
