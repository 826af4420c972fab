//go:build integration

package sink

import (
	"context"
	"net"
	"sync"
	"testing"
)

// brokerProxy forwards TCP connections to the broker and can fail in the two ways the
// integration tests need:
//   - setDown(true) closes every open connection and every new one at once, as a broker
//     that went away would; setDown(false) forwards again.
//   - mute drops what the broker answers, so that a request is written but its answer never
//     arrives (an ambiguous produce); unmute closes every connection (their answers are lost
//     mid-stream) and forwards again.
type brokerProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	muted  bool
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
}

func newBrokerProxy(t *testing.T, target string) *brokerProxy {
	t.Helper()
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &brokerProxy{ln: ln, target: target, conns: make(map[net.Conn]bool)}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		_ = ln.Close()
		p.mu.Lock()
		p.muted = false
		p.closeAll()
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *brokerProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			_ = c.Close()
			continue
		}
		var d net.Dialer
		b, err := d.DialContext(context.Background(), "tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[b] = true, true
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(b, c, false)
		go p.pipe(c, b, true)
	}
}

// pipe copies src to dst until either fails; answers marks the broker-to-client direction,
// whose bytes are dropped while the proxy is muted.
func (p *brokerProxy) pipe(dst, src net.Conn, answers bool) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			drop := answers && p.muted
			p.mu.Unlock()
			if !drop {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
		}
		if err != nil {
			break
		}
	}
	_ = dst.Close()
	_ = src.Close()
}

// setDown takes the broker away (closing every connection) or brings it back.
func (p *brokerProxy) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		p.closeAll()
	}
}

// mute drops the broker's answers from now on.
func (p *brokerProxy) mute() {
	p.mu.Lock()
	p.muted = true
	p.mu.Unlock()
}

// unmute closes every connection (their answers are lost mid-stream) and forwards again.
func (p *brokerProxy) unmute() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.muted = false
	p.closeAll()
}

// closeAll closes every forwarded connection; p.mu must be held.
func (p *brokerProxy) closeAll() {
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
}
