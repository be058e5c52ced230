package gridfs

import (
	"context"
	"sync"
	"time"
)

// countTimeout bounds one batch of count changes (dirCounts): it runs on a
// context of its own, since the writers waiting on it are not only the one
// whose request started it.
const countTimeout = 10 * time.Second

// dirCounts batches the changes of file counts that this process's writers
// make at the same time to one folder's entries of its sub-folders
// (propagate): every upload into <owner>/… changes the bucket's top
// folder. One writer, the batch's leader, waits for the folder's lock; the
// changes that arrive meanwhile join its batch, and once it holds the lock
// one read and one write of the folder apply them all. Twelve uploads at
// once read and rewrote the top folder twelve times in turn, each waiting
// for the one before.
type dirCounts struct {
	mu      sync.Mutex
	pending map[string]*countBatch // by bucket + ":" + folder: the batch still taking changes
}

// countBatch is the changes one read and write of a folder apply.
type countBatch struct {
	changes []dirChange
	done    chan struct{} // closed once applied, or failed with err
	err     error
}

// dirChange is ds for the sub-folder name.
type dirChange struct {
	name string
	ds   deltas
}

// countDir applies ds to the entry of the sub-folder name in folder, with
// the changes other writers make to that folder at the same time, and
// returns once they are written.
func (b *Backend) countDir(ctx context.Context, bucket, folder, name string, ds deltas) error {
	c := &b.counts
	key := bucket + ":" + folder
	c.mu.Lock()
	batch := c.pending[key]
	leader := batch == nil
	if leader {
		if c.pending == nil {
			c.pending = map[string]*countBatch{}
		}
		batch = &countBatch{done: make(chan struct{})}
		c.pending[key] = batch
	}
	batch.changes = append(batch.changes, dirChange{name: name, ds: ds})
	c.mu.Unlock()
	if !leader {
		// Not on ctx: the change may be written already, and the caller
		// must know whether it was.
		<-batch.done
		return batch.err
	}
	// seal takes the batch's changes; later ones start the next batch.
	seal := func() []dirChange {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.pending[key] == batch {
			delete(c.pending, key)
		}
		return batch.changes
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), countTimeout)
	defer cancel()
	batch.err = b.updateFolder(wctx, bucket, folder, func(d *folderDoc) error {
		// The lock is held: the changes that came while it was awaited
		// are all in.
		for _, ch := range seal() {
			d.countDir(ch.name, ch.ds)
		}
		return nil
	})
	seal() // when the lock or the read failed
	close(batch.done)
	return batch.err
}
