package egress

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/internal/ca"
)

const testToken = "tok-3f9a2c71e5b84d06a1c2e9f7b3d5a8c4"

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns the decoded JSON log lines.
func (b *syncBuffer) lines(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if l == "" {
			continue
		}
		m := map[string]any{}
		require.NoError(t, json.Unmarshal([]byte(l), &m), "log line is JSON: %s", l)
		out = append(out, m)
	}
	return out
}

func (b *syncBuffer) requests(t testing.TB) []map[string]any {
	var out []map[string]any
	for _, m := range b.lines(t) {
		if m["msg"] == "request" {
			out = append(out, m)
		}
	}
	return out
}

// seenRequest is what an upstream recorded.
type seenRequest struct {
	Host   string
	Path   string
	Header http.Header
	Body   string
}

// upstream is a TLS (and a plain) test server answering for several test
// hostnames; the proxy reaches it through the dial override.
type upstream struct {
	tlsSrv   *httptest.Server
	plainSrv *httptest.Server
	roots    *x509.CertPool
	caCert   *x509.Certificate
	mu       sync.Mutex
	seen     []seenRequest
	count    atomic.Int64
	release  chan struct{} // closed to let /slow finish
}

func newUpstream(t testing.TB) *upstream {
	t.Helper()
	dir := t.TempDir()
	cp, kp, err := ca.Generate(dir, "upstream test CA")
	require.NoError(t, err)
	upCA, err := ca.Load(cp, kp)
	require.NoError(t, err)
	leaf, err := ca.IssueServer(upCA, "api.example.test", "*.example.test", "*.wild.example.test", "wild.example.test", "*.y.wild.example.test", "plain.example.test")
	require.NoError(t, err)
	u := &upstream{roots: x509.NewCertPool(), caCert: upCA.Leaf, release: make(chan struct{})}
	u.roots.AddCert(upCA.Leaf)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.count.Add(1)
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.seen = append(u.seen, seenRequest{Host: r.Host, Path: r.URL.Path, Header: r.Header.Clone(), Body: string(body)})
		u.mu.Unlock()
		switch r.URL.Path {
		case "/slow":
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, "slow-start;")
			w.(http.Flusher).Flush()
			select {
			case <-u.release:
			case <-time.After(10 * time.Second):
			}
			_, _ = io.WriteString(w, "slow-end")
		case "/echo-auth":
			// A careless upstream echoing the credential back.
			w.Header().Set("X-Echo", r.Header.Get("Authorization"))
			_, _ = io.WriteString(w, "echoed")
		default:
			_, _ = fmt.Fprintf(w, "hello from %s%s", r.Host, r.URL.Path)
		}
	})
	u.tlsSrv = httptest.NewUnstartedServer(h)
	u.tlsSrv.TLS = &tls.Config{Certificates: []tls.Certificate{leaf}}
	// Handshake failures are expected in some tests; keep them out of the output.
	u.tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0)
	u.tlsSrv.StartTLS()
	t.Cleanup(u.tlsSrv.Close)
	u.plainSrv = httptest.NewServer(h)
	t.Cleanup(u.plainSrv.Close)
	return u
}

func (u *upstream) last() seenRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		return seenRequest{}
	}
	return u.seen[len(u.seen)-1]
}

// dial maps every *.test name to the upstream: port 80 to the plain
// server, anything else to the TLS server. Other names fail: tests never
// leave loopback.
func (u *upstream) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if !strings.HasSuffix(host, ".test") {
		return nil, fmt.Errorf("test dialer: %s is not a test host", host)
	}
	target := u.tlsSrv.Listener.Addr().String()
	if port == "80" {
		target = u.plainSrv.Listener.Addr().String()
	}
	var d net.Dialer
	return d.DialContext(ctx, network, target)
}

type harness struct {
	t        testing.TB
	up       *upstream
	srv      *Server
	logs     *syncBuffer
	cfg      Config
	caPool   *x509.CertPool
	dir      string
	proxyURL *url.URL
}

type harnessOpt func(*Config, *Options)

func newHarness(t testing.TB, opts ...harnessOpt) *harness {
	t.Helper()
	dir := t.TempDir()
	certPath, keyPath, err := ca.Generate(filepath.Join(dir, "egress"), "bot-bottle test bottle")
	require.NoError(t, err)
	secrets := filepath.Join(dir, "egress", "secrets.json")
	require.NoError(t, WriteSecrets(secrets, map[string]string{"API_TOKEN": testToken}))
	up := newUpstream(t)
	cfg := Config{
		Listen:        "127.0.0.1:0",
		MetricsListen: "127.0.0.1:0",
		CACert:        certPath,
		CAKey:         keyPath,
		Routes: []Route{
			{Host: "api.example.test", Header: "Authorization", Format: "Bearer {token}", TokenRef: "API_TOKEN"},
			{Host: "open.example.test"},
		},
		Allow:            []string{"allowed.example.test", "*.wild.example.test", "plain.example.test"},
		Passthrough:      []string{"pinned.example.test"},
		SecretsFile:      secrets,
		DynamicAllowFile: filepath.Join(dir, "current-config", "egress-allow.json"),
		Bottle:           "demo",
		Supervise:        true,
	}
	cfg.Allow = append(cfg.Allow, "pinned.example.test")
	logs := &syncBuffer{}
	o := Options{
		Logger:        slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		UpstreamRoots: up.roots,
		Dial:          up.dial,
		PollInterval:  time.Hour, // tests that need polling lower it
	}
	for _, f := range opts {
		f(&cfg, &o)
	}
	srv, err := New(cfg, o)
	require.NoError(t, err)
	require.NoError(t, srv.Start())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	pair, err := ca.Load(certPath, keyPath)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(pair.Leaf)
	pu, err := url.Parse("http://" + srv.Addr().String())
	require.NoError(t, err)
	return &harness{t: t, up: up, srv: srv, logs: logs, cfg: cfg, caPool: pool, dir: dir, proxyURL: pu}
}

// client trusts the bottle CA (for intercepted hosts) and the upstream CA
// (for passthrough tunnels), like an agent with the CA installed.
func (h *harness) client() *http.Client {
	roots := h.caPool.Clone()
	roots.AddCert(h.up.caCert)
	return &http.Client{
		Timeout: 15 * time.Second,
		Transport: &http.Transport{
			Proxy:             http.ProxyURL(h.proxyURL),
			TLSClientConfig:   &tls.Config{RootCAs: roots},
			DisableKeepAlives: true,
		},
	}
}

// clientBottleCAOnly trusts only the bottle CA, proving interception.
func (h *harness) clientBottleCAOnly() *http.Client {
	return &http.Client{
		Timeout: 15 * time.Second,
		Transport: &http.Transport{
			Proxy:             http.ProxyURL(h.proxyURL),
			TLSClientConfig:   &tls.Config{RootCAs: h.caPool},
			DisableKeepAlives: true,
		},
	}
}

// rawConnect sends a CONNECT by hand and returns the response with its
// body read, so refusal bodies can be checked (http.Client hides them).
func (h *harness) rawConnect(target string) (*http.Response, string, net.Conn) {
	h.t.Helper()
	conn, err := net.DialTimeout("tcp", h.srv.Addr().String(), 5*time.Second)
	require.NoError(h.t, err)
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	require.NoError(h.t, err)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	require.NoError(h.t, err)
	if resp.StatusCode == http.StatusOK {
		return resp, "", &bufferedConn{Conn: conn, r: br}
	}
	body, _ := io.ReadAll(resp.Body)
	_ = conn.Close()
	return resp, string(body), nil
}

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (h *harness) get(c *http.Client, rawURL string, hdr map[string]string) (*http.Response, string, error) {
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	require.NoError(h.t, err)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(h.t, err)
	return resp, string(b), nil
}

// waitRequests waits (bounded) until n audit lines exist; audit lines of
// streamed responses are written when the body closes, which can trail
// the client's read by a moment.
func (h *harness) waitRequests(n int) []map[string]any {
	h.t.Helper()
	var got []map[string]any
	require.Eventually(h.t, func() bool {
		got = h.logs.requests(h.t)
		return len(got) >= n
	}, 5*time.Second, 10*time.Millisecond, "want %d audit lines, logs:\n%s", n, h.logs.String())
	return got
}
