package egress

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A CONNECT is decided on its request target, and the tunnel dials exactly
// that target. A Host header cannot stand in for a missing or unparsable
// target: FuzzProxyRequest found that "CONNECT  HTTP/1.0" with an allowed
// passthrough host in the Host header was allowed by the header and then
// dialed ":80", the proxy's own loopback. The other targets are refused
// too (by net/http or by the proxy), none of them dialed.
func TestConnectDecidedAndDialedOnTheSameTarget(t *testing.T) {
	dials := &dialLog{}
	h := newHarness(t, func(_ *Config, o *Options) {
		next := o.Dial
		o.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.mu.Lock()
			dials.addrs = append(dials.addrs, addr)
			dials.mu.Unlock()
			return next(ctx, network, addr)
		}
	})
	for name, target := range map[string]string{
		"empty target":               "",
		"a named port":               "evil.example.test:https",
		"a named port, allowed host": "pinned.example.test:https",
		"an out-of-range port":       "evil.example.test:70000",
		"an empty port":              "evil.example.test:",
	} {
		t.Run(name, func(t *testing.T) {
			conn, err := net.DialTimeout("tcp", h.srv.Addr().String(), 5*time.Second)
			require.NoError(t, err)
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			// The Host header names an allowed passthrough host, which is
			// tunnelled rather than intercepted.
			_, err = fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: pinned.example.test:443\r\n\r\n", target)
			require.NoError(t, err)
			resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodConnect})
			require.NoError(t, err)
			body, _ := io.ReadAll(resp.Body)
			assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "%s", body)
			assert.Empty(t, dials.take(), "the proxy dialed")
		})
	}
	// Control: the same passthrough host as a proper target is tunnelled,
	// dialed by its numeric port.
	resp, _, conn := h.rawConnect("pinned.example.test:443")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	conn.Close()
	assert.Equal(t, []string{"pinned.example.test:443"}, dials.take())
}
