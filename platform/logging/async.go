package logging

import (
	"io"
	"sync"
)

// maxPending bounds the bytes an AsyncWriter holds: a Write that would go
// past it waits for the writer to catch up, so a stalled stdout slows the
// service down rather than growing its memory.
const maxPending = 1 << 20

// AsyncWriter hands what is written to it to one goroutine that writes it to
// the underlying writer: the lines logged while a write is under way go out
// together in the next one. A service logs a line per request; written one
// write(2) each, that was the gateway's third syscall per request, and under
// load the lines of many requests now share one. Nothing waits for a timer:
// a line is written as soon as the write before it is done. Close writes
// what is left; a crash loses what was logged in the last moments (the Go
// runtime's own crash report goes to stderr, unaffected).
type AsyncWriter struct {
	w    io.Writer
	wake chan struct{} // capacity 1: there is something to write
	done chan struct{} // closed when the goroutine has written everything and stopped

	mu      sync.Mutex
	drained *sync.Cond // signalled after each write
	pending []byte
	spare   []byte
	closed  bool
}

// NewAsyncWriter starts an AsyncWriter writing to w; Close stops it.
func NewAsyncWriter(w io.Writer) *AsyncWriter {
	a := &AsyncWriter{w: w, wake: make(chan struct{}, 1), done: make(chan struct{})}
	a.drained = sync.NewCond(&a.mu)
	go a.run()
	return a
}

// Write queues p (copied) and returns; after Close it writes p itself.
// Errors of the underlying writer are not reported: there is nowhere left
// to log them.
func (a *AsyncWriter) Write(p []byte) (int, error) {
	a.mu.Lock()
	for !a.closed && len(a.pending) > 0 && len(a.pending)+len(p) > maxPending {
		a.drained.Wait()
	}
	if a.closed {
		a.mu.Unlock()
		<-a.done // what was queued goes first
		return a.w.Write(p)
	}
	a.pending = append(a.pending, p...)
	select {
	case a.wake <- struct{}{}:
	default: // the goroutine is already woken
	}
	a.mu.Unlock()
	return len(p), nil
}

// Close writes what is queued and stops the goroutine; later writes go
// straight to the underlying writer.
func (a *AsyncWriter) Close() error {
	a.mu.Lock()
	if !a.closed {
		a.closed = true
		close(a.wake)
		a.drained.Broadcast()
	}
	a.mu.Unlock()
	<-a.done
	return nil
}

func (a *AsyncWriter) run() {
	defer close(a.done)
	for range a.wake {
		a.drain()
	}
	a.drain()
}

// drain writes what is pending until nothing is.
func (a *AsyncWriter) drain() {
	for {
		a.mu.Lock()
		buf := a.pending
		if len(buf) == 0 {
			a.mu.Unlock()
			return
		}
		a.pending = a.spare[:0]
		a.mu.Unlock()
		_, _ = a.w.Write(buf)
		a.mu.Lock()
		if cap(buf) <= maxPending { // keep a buffer of a usual size, not a burst's
			a.spare = buf[:0]
		}
		a.drained.Broadcast()
		a.mu.Unlock()
	}
}
