package egress

import (
	"io"
	"net"
	"net/textproto"
	"sync"
	"sync/atomic"
)

func textprotoCanonical(h string) string { return textproto.CanonicalMIMEHeaderKey(h) }

// countingBody counts bytes read and calls onClose once with the total.
type countingBody struct {
	rc      io.ReadCloser
	n       atomic.Int64
	once    sync.Once
	onClose func(n int64)
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.n.Add(int64(n))
	return n, err
}

func (b *countingBody) Close() error {
	err := b.rc.Close()
	b.once.Do(func() {
		if b.onClose != nil {
			b.onClose(b.n.Load())
		}
	})
	return err
}

// prefixBody replays an already-read (and scanned) prefix, then streams
// the rest of the original body.
type prefixBody struct {
	io.Reader
	closer io.Closer
}

func (b *prefixBody) Close() error { return b.closer.Close() }

// tunnelConn counts bytes received from the upstream of a CONNECT tunnel
// and reports once on Close, so tunnels get an audit line with a size.
type tunnelConn struct {
	net.Conn
	in      atomic.Int64
	out     atomic.Int64
	once    sync.Once
	onClose func(in, out int64)
}

func (c *tunnelConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(int64(n))
	return n, err
}

func (c *tunnelConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.out.Add(int64(n))
	return n, err
}

func (c *tunnelConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		if c.onClose != nil {
			c.onClose(c.in.Load(), c.out.Load())
		}
	})
	return err
}

// halfCloseTunnelConn keeps TCP half-close available so the tunnel can
// shut each direction down independently.
type halfCloseTunnelConn struct {
	*tunnelConn
	tcp interface {
		CloseWrite() error
		CloseRead() error
	}
}

func (c *halfCloseTunnelConn) CloseWrite() error { return c.tcp.CloseWrite() }
func (c *halfCloseTunnelConn) CloseRead() error  { return c.tcp.CloseRead() }

func wrapTunnel(conn net.Conn, onClose func(in, out int64)) net.Conn {
	tc := &tunnelConn{Conn: conn, onClose: onClose}
	if hc, ok := conn.(interface {
		CloseWrite() error
		CloseRead() error
	}); ok {
		return &halfCloseTunnelConn{tunnelConn: tc, tcp: hc}
	}
	return tc
}
