// Package batch coalesces the lookups of concurrent requests into shared
// round trips (group commit): a Loader sends the keys queued so far as one
// fetch (a Redis MGET, a SQL "= any($1)"), and while that fetch is in
// flight the keys that arrive queue up for the next one. Every lookup is
// still answered by a fetch that started after it was asked; a lone lookup
// costs one round trip, as an unbatched one would, and no lookup waits for
// a timer. Under load the round trips, their syscalls and wake-ups, and the
// server's work per statement are shared by a batch.
package batch

import (
	"cmp"
	"context"
	"fmt"
	"runtime"
	"sync"
	"time"
)

// Defaults of Options.
const (
	DefaultMaxBatch    = 256
	DefaultMaxInFlight = 1
	DefaultTimeout     = 5 * time.Second
)

// Fetch answers keys in one round trip: one value per key, in the same
// order (the zero value, or whatever marks "absent", for a key it does not
// find). keys may repeat.
type Fetch[K comparable, V any] func(ctx context.Context, keys []K) ([]V, error)

// Options tune a Loader.
type Options struct {
	// MaxBatch bounds the keys of one fetch (DefaultMaxBatch).
	MaxBatch int
	// MaxInFlight bounds the fetches in flight at once (DefaultMaxInFlight):
	// more than one keeps one slow fetch from holding up every lookup.
	MaxInFlight int
	// Timeout bounds one fetch (DefaultTimeout). A fetch answers many
	// lookups, so it runs under its own deadline, not a caller's context.
	Timeout time.Duration
}

// Loader coalesces lookups into fetches. It is safe for concurrent use.
type Loader[K comparable, V any] struct {
	fetch Fetch[K, V]
	opts  Options

	mu       sync.Mutex
	flushers int            // flusher goroutines running
	queue    []*group[K, V] // groups waiting for a flusher; the last one fills
}

// group is the lookups that go in one fetch.
type group[K comparable, V any] struct {
	keys []K
	vals []V
	err  error
	done chan struct{} // closed once vals or err is set
}

// New returns a Loader that fetches with fetch.
func New[K comparable, V any](fetch Fetch[K, V], opts Options) *Loader[K, V] {
	opts.MaxBatch = cmp.Or(opts.MaxBatch, DefaultMaxBatch)
	opts.MaxInFlight = cmp.Or(opts.MaxInFlight, DefaultMaxInFlight)
	opts.Timeout = cmp.Or(opts.Timeout, DefaultTimeout)
	return &Loader[K, V]{fetch: fetch, opts: opts}
}

// Load returns key's value from the next fetch. It returns early with ctx's
// error when ctx ends first (the fetch goes on for the others).
func (l *Loader[K, V]) Load(ctx context.Context, key K) (V, error) {
	l.mu.Lock()
	var g *group[K, V]
	if n := len(l.queue); n > 0 && len(l.queue[n-1].keys) < l.opts.MaxBatch {
		g = l.queue[n-1]
	} else {
		g = &group[K, V]{keys: make([]K, 0, 16), done: make(chan struct{})}
		l.queue = append(l.queue, g)
	}
	i := len(g.keys)
	g.keys = append(g.keys, key)
	if l.flushers < l.opts.MaxInFlight {
		l.flushers++
		go l.flush()
	}
	l.mu.Unlock()
	var zero V
	select {
	case <-g.done:
	case <-ctx.Done():
		return zero, ctx.Err()
	}
	if g.err != nil {
		return zero, g.err
	}
	return g.vals[i], nil
}

// flush answers queued groups until none is left. Before it takes a group
// it yields once, so that lookups already runnable (those the last fetch
// answered, on their way to their next lookup) join it rather than the one
// after: without that, on one core the groups alternated between one lookup
// and all the others.
func (l *Loader[K, V]) flush() {
	for {
		runtime.Gosched()
		l.mu.Lock()
		if len(l.queue) == 0 {
			l.flushers--
			l.mu.Unlock()
			return
		}
		g := l.queue[0]
		l.queue[0] = nil
		l.queue = l.queue[1:]
		l.mu.Unlock()
		l.answer(g)
	}
}

func (l *Loader[K, V]) answer(g *group[K, V]) {
	defer close(g.done)
	ctx, cancel := context.WithTimeout(context.Background(), l.opts.Timeout)
	defer cancel()
	vals, err := l.fetch(ctx, g.keys)
	switch {
	case err != nil:
		g.err = err
	case len(vals) != len(g.keys):
		g.err = fmt.Errorf("batch: the fetch returned %d values for %d keys", len(vals), len(g.keys))
	default:
		g.vals = vals
	}
}
