// Package filecache keeps the bytes of the files an instance of filestorage
// wrote most recently on its local disk, so that reading them back soon
// after (the converter reads every video right after its upload) costs a
// file read, not the database's work of decoding every chunk again: on
// FerretDB a 255 KiB chunk costs 13–31 ms of its CPU to read.
//
// A file's bytes never change under its id, so an entry is right for as
// long as the file exists; the backend asks the database whether it does
// before it reads an entry, and drops the entry when it deletes the file.
// The cache is bounded in bytes (least recently used out first) and lives
// in a directory of its own, removed by Close: nothing in it outlives the
// process.
package filecache

import (
	"container/list"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// Cache is a bounded set of files on local disk, by id. It is safe for
// concurrent use.
type Cache struct {
	dir string
	max int64

	mu    sync.Mutex
	used  int64
	order *list.List               // front: most recently used
	items map[string]*list.Element // of *entry
}

type entry struct {
	id   string
	size int64
}

// New returns a Cache of at most max bytes in a new directory under parent
// (os.TempDir() when empty).
func New(parent string, max int64) (*Cache, error) {
	if max <= 0 {
		return nil, fmt.Errorf("filecache: the size bound must be positive, not %d", max)
	}
	dir, err := os.MkdirTemp(parent, "filestorage-cache-")
	if err != nil {
		return nil, fmt.Errorf("filecache: %w", err)
	}
	return &Cache{dir: dir, max: max, order: list.New(), items: map[string]*list.Element{}}, nil
}

// Close removes the cache's directory and everything in it.
func (c *Cache) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.items, c.used = map[string]*list.Element{}, 0
	c.order.Init()
	return os.RemoveAll(c.dir)
}

// Max is the bound in bytes.
func (c *Cache) Max() int64 { return c.max }

func (c *Cache) path(id string) string { return filepath.Join(c.dir, id) }

// Writer starts the entry of id. Writes to it never fail (a failure to
// write makes Commit a no-op), so it can be teed from a body being stored.
func (c *Cache) Writer(id string) *Writer {
	f, err := os.CreateTemp(c.dir, "pending-")
	return &Writer{c: c, id: id, f: f, err: err}
}

// Open returns the entry of id if it holds size bytes; the caller closes it.
// A nil Cache holds nothing.
func (c *Cache) Open(id string, size int64) (*os.File, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	el, ok := c.items[id]
	if ok && el.Value.(*entry).size == size {
		c.order.MoveToFront(el)
	} else {
		ok = false
	}
	c.mu.Unlock()
	if !ok {
		return nil, false
	}
	f, err := os.Open(c.path(id))
	if err != nil {
		return nil, false // evicted meanwhile
	}
	return f, true
}

// Remove drops the entry of id, if any. A nil Cache holds nothing.
func (c *Cache) Remove(id string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	if el, ok := c.items[id]; ok {
		c.drop(el)
	}
	c.mu.Unlock()
}

// drop removes el; c.mu is held.
func (c *Cache) drop(el *list.Element) {
	e := el.Value.(*entry)
	c.order.Remove(el)
	delete(c.items, e.id)
	c.used -= e.size
	_ = os.Remove(c.path(e.id))
}

// add makes the file at tmp the entry of id, evicting the least recently
// used entries to stay within max.
func (c *Cache) add(id, tmp string, size int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if size > c.max {
		_ = os.Remove(tmp)
		return
	}
	if el, ok := c.items[id]; ok {
		c.drop(el)
	}
	for c.used+size > c.max {
		c.drop(c.order.Back())
	}
	if err := os.Rename(tmp, c.path(id)); err != nil {
		_ = os.Remove(tmp)
		return
	}
	c.items[id] = c.order.PushFront(&entry{id: id, size: size})
	c.used += size
}

// Writer receives the bytes of an entry being made.
type Writer struct {
	c   *Cache
	id  string
	f   *os.File
	n   int64
	err error
}

var _ io.Writer = (*Writer)(nil)

// Write implements io.Writer; it always reports success (see Cache.Writer).
func (w *Writer) Write(p []byte) (int, error) {
	if w.err == nil {
		if int64(len(p))+w.n > w.c.max {
			w.err = fmt.Errorf("filecache: %s is larger than the cache", w.id)
		} else {
			var n int
			n, w.err = w.f.Write(p)
			w.n += int64(n)
		}
	}
	return len(p), nil
}

// Commit makes what was written the entry, if it is all size bytes and
// every write succeeded; otherwise it discards it.
func (w *Writer) Commit(size int64) {
	if w.f == nil {
		return
	}
	name := w.f.Name()
	if err := w.f.Close(); w.err == nil {
		w.err = err
	}
	if w.err != nil || w.n != size {
		_ = os.Remove(name)
		return
	}
	w.c.add(w.id, name, size)
}

// Abort discards what was written.
func (w *Writer) Abort() {
	if w.f == nil {
		return
	}
	_ = w.f.Close()
	_ = os.Remove(w.f.Name())
}
