package authn

import (
	"context"
	"fmt"
	"sync"

	"github.com/redis/go-redis/v9"
)

// maxDenyBatch bounds how many deny-list lookups share one MGET.
const maxDenyBatch = 256

// denyList checks jtis against the Redis deny list, coalescing the lookups
// of concurrent requests: while one MGET is in flight, the lookups that
// arrive queue up and go together in the next one. A lone request costs
// one round trip, as a plain EXISTS would; under load the round trips (and
// their syscalls) are shared. No lookup waits for a timer.
type denyList struct {
	rdb *redis.Client

	mu    sync.Mutex
	busy  bool // a leader is running a batch
	queue []*denyLookup
}

type denyLookup struct {
	key    string
	denied bool
	err    error
	// done receives true when the lookup is answered, false when its
	// goroutine must lead the next batch.
	done chan bool
}

func newDenyList(rdb *redis.Client) *denyList { return &denyList{rdb: rdb} }

// denied reports whether key exists. ctx bounds the batch this lookup leads.
func (d *denyList) denied(ctx context.Context, key string) (bool, error) {
	l := &denyLookup{key: key, done: make(chan bool, 1)}
	d.mu.Lock()
	d.queue = append(d.queue, l)
	if d.busy {
		d.mu.Unlock()
		if answered := <-l.done; answered {
			return l.denied, l.err
		}
		// Promoted: lead the next batch (which includes this lookup).
	} else {
		d.busy = true
		d.mu.Unlock()
	}
	d.lead(ctx)
	return l.denied, l.err
}

// lead takes up to maxDenyBatch queued lookups, answers them with one MGET,
// and hands leadership to the first lookup still queued, if any.
func (d *denyList) lead(ctx context.Context) {
	d.mu.Lock()
	n := min(len(d.queue), maxDenyBatch)
	batch := make([]*denyLookup, n)
	copy(batch, d.queue[:n])
	d.queue = append(d.queue[:0], d.queue[n:]...)
	d.mu.Unlock()

	keys := make([]string, n)
	for i, l := range batch {
		keys[i] = l.key
	}
	// The batch serves other requests too: not bound to this one's cancellation.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultDenyTimeout)
	vals, err := d.rdb.MGet(ctx, keys...).Result()
	cancel()
	if err == nil && len(vals) != n {
		err = fmt.Errorf("deny list: MGET returned %d values for %d keys", len(vals), n)
	}
	for i, l := range batch {
		if err != nil {
			l.err = err
		} else {
			l.denied = vals[i] != nil
		}
	}

	d.mu.Lock()
	var next *denyLookup
	if len(d.queue) > 0 {
		next = d.queue[0]
	} else {
		d.busy = false
	}
	d.mu.Unlock()
	// Answer the others (the leader's own lookup is in batch too: its
	// channel is buffered and never read, which is fine).
	for _, l := range batch {
		l.done <- true
	}
	if next != nil {
		next.done <- false
	}
}
