package gridfs

import (
	"context"
	"sync"
)

// localLocks queues, per lock key, the callers of Backend.lock in this
// process: one of them at a time goes on to take the key's lock in the
// database, and on release the next is woken at once.
//
// The database lock alone is taken by polling: a caller that finds it held
// sleeps (1 ms, doubling up to 50 ms) and tries again. Twelve uploads at
// once, all writing the bucket's top folder, spent up to 0.9 s there while
// the lock stood free most of that time. Other replicas still meet at the
// database lock.
type localLocks struct {
	mu   sync.Mutex
	keys map[string]*localLock
}

// localLock is one key's queue: ch holds a token while a caller has it.
type localLock struct {
	ch      chan struct{}
	waiters int // callers holding or waiting for it
}

// acquire waits until the caller is the one of this process holding key,
// or ctx ends; release hands it to the next.
func (l *localLocks) acquire(ctx context.Context, key string) (release func(), err error) {
	l.mu.Lock()
	if l.keys == nil {
		l.keys = map[string]*localLock{}
	}
	k := l.keys[key]
	if k == nil {
		k = &localLock{ch: make(chan struct{}, 1)}
		l.keys[key] = k
	}
	k.waiters++
	l.mu.Unlock()
	select {
	case k.ch <- struct{}{}:
	case <-ctx.Done():
		l.leave(key, k)
		return nil, ctx.Err()
	}
	return func() {
		<-k.ch
		l.leave(key, k)
	}, nil
}

// leave forgets key's queue once nobody holds or waits for it.
func (l *localLocks) leave(key string, k *localLock) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if k.waiters--; k.waiters == 0 {
		delete(l.keys, key)
	}
}
