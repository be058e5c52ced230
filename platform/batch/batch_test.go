package batch_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/audiomill/audiomill/platform/batch"
)

// TestLoaderAnswersEachLookupItsOwnValue: 1,000 concurrent lookups, batched,
// each get the value of their own key; fewer fetches than lookups; no more
// than MaxInFlight fetches at once; no batch above MaxBatch.
func TestLoaderAnswersEachLookupItsOwnValue(t *testing.T) {
	var fetches, inFlight, most, biggest atomic.Int64
	fetch := func(_ context.Context, keys []int) ([]string, error) {
		fetches.Add(1)
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		for b := biggest.Load(); int64(len(keys)) > b && !biggest.CompareAndSwap(b, int64(len(keys))); b = biggest.Load() {
		}
		time.Sleep(time.Millisecond) // a round trip
		vals := make([]string, len(keys))
		for i, k := range keys {
			vals[i] = "v" + strconv.Itoa(k)
		}
		return vals, nil
	}
	l := batch.New(fetch, batch.Options{MaxBatch: 50, MaxInFlight: 2})
	const n = 1000
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			v, err := l.Load(context.Background(), i%300)
			if err != nil || v != "v"+strconv.Itoa(i%300) {
				t.Errorf("Load(%d) = %q, %v", i%300, v, err)
			}
		})
	}
	wg.Wait()
	t.Logf("%d lookups in %d fetches, at most %d at once, at most %d keys", n, fetches.Load(), most.Load(), biggest.Load())
	if f := fetches.Load(); f >= n/2 {
		t.Fatalf("%d fetches for %d concurrent lookups: not batched", f, n)
	}
	if most.Load() > 2 || biggest.Load() > 50 {
		t.Fatalf("%d fetches at once (max 2), %d keys in one (max 50)", most.Load(), biggest.Load())
	}
}

func TestLoaderErrors(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name  string
		fetch batch.Fetch[string, int]
		want  string
	}{
		{"FetchFails", func(context.Context, []string) ([]int, error) { return nil, boom }, "boom"},
		{"WrongLength", func(context.Context, []string) ([]int, error) { return []int{1, 2}, nil },
			"batch: the fetch returned 2 values for 1 keys"},
		{"Timeout", func(ctx context.Context, _ []string) ([]int, error) { <-ctx.Done(); return nil, ctx.Err() },
			context.DeadlineExceeded.Error()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := batch.New(tc.fetch, batch.Options{Timeout: 50 * time.Millisecond})
			if _, err := l.Load(context.Background(), "k"); err == nil || err.Error() != tc.want {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestLoaderReturnsWhenTheCallerGivesUp: a lookup whose context ends returns
// at once; the fetch goes on and the loader serves the next lookup.
func TestLoaderReturnsWhenTheCallerGivesUp(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	l := batch.New(func(_ context.Context, keys []string) ([]string, error) {
		if calls.Add(1) == 1 {
			<-release
		}
		return keys, nil
	}, batch.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := l.Load(ctx, "a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the caller's deadline", err)
	}
	close(release)
	if v, err := l.Load(context.Background(), "b"); err != nil || v != "b" {
		t.Fatalf("next Load = %q, %v", v, err)
	}
}
