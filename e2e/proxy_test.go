package e2e_test

import (
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// pgProxy is a TCP proxy between one replica and Postgres that can fail
// the way networks do:
//   - cut closes every connection and refuses new ones (a crashed or
//     restarting database: the client sees resets at once);
//   - stall accepts and keeps connections but forwards nothing (a network
//     partition: packets vanish, nothing is reset), until restore;
//   - setLatency delays every chunk coming back from Postgres (an
//     overloaded database or a distant one).
type pgProxy struct {
	ln      net.Listener
	target  string
	latency atomic.Int64 // nanoseconds added to each chunk from Postgres

	mu      sync.Mutex
	isCut   bool
	open    chan struct{} // closed while data may flow; replaced by stall
	conns   map[net.Conn]struct{}
	closed  bool
	accepts atomic.Int64
}

// newPGProxy starts a proxy to Postgres at target (host:port), stopped when
// tb ends.
func newPGProxy(tb testing.TB, target string) *pgProxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("proxy listen: %v", err)
	}
	p := &pgProxy{ln: ln, target: target, open: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	close(p.open)
	go p.acceptLoop()
	tb.Cleanup(p.close)
	return p
}

// url returns databaseURL with its host and port replaced by the proxy's.
func (p *pgProxy) url(tb testing.TB, databaseURL string) string {
	tb.Helper()
	u, err := url.Parse(databaseURL)
	if err != nil {
		tb.Fatalf("parse %s: %v", databaseURL, err)
	}
	u.Host = p.ln.Addr().String()
	return u.String()
}

func (p *pgProxy) acceptLoop() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.accepts.Add(1)
		p.mu.Lock()
		if p.isCut || p.closed {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		go p.serve(c)
	}
}

func (p *pgProxy) serve(client net.Conn) {
	server, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		p.drop(client)
		return
	}
	p.mu.Lock()
	if p.isCut || p.closed {
		p.mu.Unlock()
		server.Close()
		p.drop(client)
		return
	}
	p.conns[server] = struct{}{}
	p.mu.Unlock()
	go p.pipe(server, client, false)
	p.pipe(client, server, true)
}

// pipe copies src to dst until either fails, then closes both.
func (p *pgProxy) pipe(dst, src net.Conn, fromServer bool) {
	defer p.drop(dst)
	defer p.drop(src)
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			<-p.gate()
			if d := time.Duration(p.latency.Load()); fromServer && d > 0 {
				time.Sleep(d)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *pgProxy) gate() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.open
}

func (p *pgProxy) drop(c net.Conn) {
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// cut closes every connection and refuses new ones until restore.
func (p *pgProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.isCut = true
	for c := range p.conns {
		c.Close()
	}
}

// stall stops forwarding, keeping every connection open, until restore.
func (p *pgProxy) stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.open:
		p.open = make(chan struct{})
	default:
	}
}

// restore ends a cut or a stall.
func (p *pgProxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.isCut = false
	select {
	case <-p.open:
	default:
		close(p.open)
	}
}

// setLatency delays each chunk coming back from Postgres by d.
func (p *pgProxy) setLatency(d time.Duration) { p.latency.Store(int64(d)) }

func (p *pgProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.restore()
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}
