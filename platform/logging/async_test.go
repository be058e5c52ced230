package logging_test

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/audiomill/audiomill/platform/logging"
)

// slowWriter records the writes it gets, each taking a while, as a pipe
// to a busy reader would.
type slowWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
}

func (s *slowWriter) Write(p []byte) (int, error) {
	time.Sleep(100 * time.Microsecond)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	return s.buf.Write(p)
}

// TestAsyncWriterKeepsEveryLineInOrder: 16 goroutines log 500 lines each;
// after Close every line is there, whole, each goroutine's in its order,
// in far fewer writes than lines.
func TestAsyncWriterKeepsEveryLineInOrder(t *testing.T) {
	out := &slowWriter{}
	a := logging.NewAsyncWriter(out)
	const writers, lines = 16, 500
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range lines {
				fmt.Fprintf(a, "w%d %d %s\n", w, i, strings.Repeat("x", 100))
			}
		})
	}
	wg.Wait()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(a, "after close\n")
	next := make([]int, writers)
	sc := bufio.NewScanner(&out.buf)
	n := 0
	for sc.Scan() {
		if sc.Text() == "after close" {
			continue
		}
		var w, i int
		var pad string
		if _, err := fmt.Sscanf(sc.Text(), "w%d %d %s", &w, &i, &pad); err != nil || len(pad) != 100 {
			t.Fatalf("line %q is not whole: %v", sc.Text(), err)
		}
		if i != next[w] {
			t.Fatalf("writer %d: line %d after %d", w, i, next[w]-1)
		}
		next[w]++
		n++
	}
	if n != writers*lines {
		t.Fatalf("%d lines, want %d", n, writers*lines)
	}
	t.Logf("%d lines in %d writes", n, out.writes)
	if out.writes >= n/4 {
		t.Fatalf("%d writes for %d lines logged at once: not coalesced", out.writes, n)
	}
}

// blockedWriter never returns until released.
type blockedWriter struct{ release chan struct{} }

func (b *blockedWriter) Write(p []byte) (int, error) { <-b.release; return len(p), nil }

// TestAsyncWriterBoundsWhatItHolds: with the output stalled, writes wait
// once about a megabyte is queued instead of growing without bound.
func TestAsyncWriterBoundsWhatItHolds(t *testing.T) {
	out := &blockedWriter{release: make(chan struct{})}
	a := logging.NewAsyncWriter(out)
	line := []byte(strings.Repeat("y", 1023) + "\n")
	wrote := make(chan int)
	go func() {
		n := 0
		for range 4096 { // 4 MiB
			_, _ = a.Write(line)
			n++
		}
		wrote <- n
	}()
	select {
	case n := <-wrote:
		t.Fatalf("queued all %d KiB with the output stalled", n)
	case <-time.After(200 * time.Millisecond):
	}
	close(out.release)
	<-wrote
	_ = a.Close()
}
