package egress

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// fuzzAllowed is the harness's allowlist, written out independently of
// the matcher under test: exact names and the one wildcard's suffix.
var fuzzAllowed = map[string]bool{
	"api.example.test": true, "open.example.test": true, "allowed.example.test": true,
	"plain.example.test": true, "pinned.example.test": true,
}

func fuzzHostAllowed(h string) bool {
	// Names are case-insensitive and may end in the root's dot.
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	return fuzzAllowed[h] || strings.HasSuffix(h, ".wild.example.test")
}

// dialLog records every upstream address the proxy dials.
type dialLog struct {
	mu    sync.Mutex
	addrs []string
}

func (d *dialLog) take() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := d.addrs
	d.addrs = nil
	return out
}

// FuzzProxyRequest sends arbitrary bytes to the proxy as a client would
// (a request line, headers, a CONNECT, a body, garbage) and checks what
// reached the outside: every dial went to an allowed host on an allowed
// port, and the injected token went to its route's host alone. The proxy
// must answer or close, never hang or crash.
func FuzzProxyRequest(f *testing.F) {
	for _, s := range []string{
		"GET http://plain.example.test/ HTTP/1.1\r\nHost: plain.example.test\r\n\r\n",
		"GET http://evil.example.test/ HTTP/1.1\r\nHost: plain.example.test\r\n\r\n",
		"GET http://plain.example.test/ HTTP/1.1\r\nHost: evil.example.test\r\n\r\n",
		"GET http://plain.example.test:80@evil.example.test/ HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET http://plain%2eexample.test/ HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET http://PLAIN.example.test./ HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET http://api.example.test/ HTTP/1.1\r\nHost: api.example.test\r\n\r\n",
		"GET http://127.0.0.1:9090/metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
		"GET http://[::1]/ HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST http://plain.example.test/ HTTP/1.1\r\nHost: plain.example.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET http://evil.example.test/ HTTP/1.1\r\nHost: evil.example.test\r\n\r\n",
		"CONNECT allowed.example.test:443 HTTP/1.1\r\nHost: allowed.example.test:443\r\n\r\n",
		"CONNECT pinned.example.test:443 HTTP/1.1\r\nHost: pinned.example.test:443\r\n\r\nGET / HTTP/1.1\r\nHost: api.example.test\r\n\r\n",
		"CONNECT evil.example.test:443 HTTP/1.1\r\nHost: allowed.example.test:443\r\n\r\n",
		"CONNECT allowed.example.test:22 HTTP/1.1\r\n\r\n",
		"CONNECT allowed.example.test HTTP/1.1\r\n\r\n",
		"CONNECT 10.0.0.1:443 HTTP/1.1\r\n\r\n",
		"CONNECT [allowed.example.test]:443 HTTP/1.1\r\n\r\n",
		"CONNECT allowed.example.test:443 HTTP/1.1\r\nHost: evil.example.test\r\n\r\n",
		"GET http://x.y.wild.example.test/ HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET http://wild.example.test/ HTTP/1.1\r\nHost: x\r\n\r\n",
		"\x16\x03\x01\x00\x05hello",
		"GET",
	} {
		f.Add([]byte(s))
	}
	dials := &dialLog{}
	h := newHarness(f, func(_ *Config, o *Options) {
		next := o.Dial
		o.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.mu.Lock()
			dials.addrs = append(dials.addrs, addr)
			dials.mu.Unlock()
			return next(ctx, network, addr)
		}
	})
	addr := h.srv.Addr().String()
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return
		}
		before := h.up.count.Load()
		conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatalf("the proxy stopped accepting: %v", err)
		}
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = conn.Write(data)
		_ = conn.(*net.TCPConn).CloseWrite()
		resp, _ := io.ReadAll(io.LimitReader(conn, 1<<20))
		_ = conn.Close()
		// A dial is checked whichever input caused it: a tunnel may dial
		// after its client is gone.
		for _, a := range dials.take() {
			host, port, err := net.SplitHostPort(a)
			if err != nil {
				t.Fatalf("dialed %q", a)
			}
			if !fuzzHostAllowed(host) || (port != "80" && port != "443") {
				t.Fatalf("dialed %q for %q", a, data)
			}
		}
		if h.up.count.Load() != before {
			seen := h.up.last()
			for k, vs := range seen.Header {
				for _, v := range vs {
					if strings.Contains(v, testToken) && seen.Host != "api.example.test" {
						t.Fatalf("the token went to %q in %s for %q", seen.Host, k, data)
					}
				}
			}
		}
		if strings.Contains(string(resp), testToken) {
			t.Fatalf("the token came back to the client for %q", data)
		}
	})
}
