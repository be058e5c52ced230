package testenv

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Proxy is a TCP link to a real dependency that a test can cut and
// restore, to see what a service does while the dependency is out of
// reach and that it recovers by itself once it is back.
type Proxy struct {
	Addr   string
	target string
	ln     net.Listener

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
	// sent counts the bytes forwarded towards target; when dropAt is
	// reached (0: never) every open connection is closed once.
	sent    int64
	dropAt  int64
	dropped chan struct{}
}

// StartProxy forwards a loopback port to target until tb ends.
func StartProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	tb.Cleanup(func() {
		_ = ln.Close()
		p.Cut()
	})
	go p.serve()
	return p
}

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		go p.pipe(c)
	}
}

func (p *Proxy) pipe(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		_ = c.Close()
		p.forget(c)
		return
	}
	p.mu.Lock()
	if p.cut {
		p.mu.Unlock()
		_ = c.Close()
		_ = up.Close()
		return
	}
	p.conns[up] = struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(countingWriter{p, up}, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
	_ = c.Close()
	_ = up.Close()
	p.forget(c)
	p.forget(up)
}

func (p *Proxy) forget(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// countingWriter counts what goes towards the target, for DropAfter.
type countingWriter struct {
	p *Proxy
	w io.Writer
}

func (cw countingWriter) Write(b []byte) (int, error) {
	n, err := cw.w.Write(b)
	cw.p.mu.Lock()
	defer cw.p.mu.Unlock()
	cw.p.sent += int64(n)
	if cw.p.dropAt > 0 && cw.p.sent >= cw.p.dropAt {
		cw.p.dropAt = 0
		for c := range cw.p.conns {
			_ = c.Close()
		}
		clear(cw.p.conns)
		close(cw.p.dropped)
	}
	return n, err
}

// Sent is the number of bytes forwarded towards the target so far.
func (p *Proxy) Sent() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent
}

// DropAfter closes every open connection once n more bytes have been
// forwarded towards the target (a connection dropped in the middle of a
// request body); new connections are let through as before. The channel
// is closed when the connections were dropped.
func (p *Proxy) DropAfter(n int64) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dropAt = p.sent + n
	p.dropped = make(chan struct{})
	return p.dropped
}

// Cut drops every open connection and refuses new ones until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
}

// Restore lets connections through again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}
