package egress

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/internal/ca"
)

// maskAll is the reference redaction: every occurrence of every needle in
// the whole input, found before any is masked.
func maskAll(data []byte, needles [][]byte) []byte {
	hide := make([]bool, len(data))
	markNeedles(data, hide, needles)
	return masked(data, hide)
}

// chunkedReader returns at most the next size from sizes bytes per Read,
// cycling, to make needles straddle reads.
type chunkedReader struct {
	r     io.Reader
	sizes []int
	i     int
}

func (c *chunkedReader) Read(p []byte) (int, error) {
	n := c.sizes[c.i%len(c.sizes)]
	c.i++
	if n <= 0 {
		n = 1
	}
	return c.r.Read(p[:min(len(p), n)])
}

func redactAll(t testing.TB, r io.Reader, needles [][]byte) []byte {
	t.Helper()
	out, err := io.ReadAll(newRedactingBody(io.NopCloser(r), needles))
	require.NoError(t, err)
	return out
}

func TestRedactingBodyMasksEveryOccurrence(t *testing.T) {
	tok := []byte("tok-0123456789abcdef")
	needles := newScanner([]string{string(tok)}).needles
	stars := strings.Repeat("*", len(tok))
	for name, tc := range map[string]struct{ in, want string }{
		"alone":       {string(tok), stars},
		"quoted":      {`{"auth":"Bearer ` + string(tok) + `"}`, `{"auth":"Bearer ` + stars + `"}`},
		"twice":       {string(tok) + "," + string(tok), stars + "," + stars},
		"overlapping": {"tok-0123456789abcdef0123456789abcdef", stars + "0123456789abcdef"},
		"nothing":     {"no secret here", "no secret here"},
		"empty":       {"", ""},
		"prefix only": {string(tok[:10]), string(tok[:10])},
		"hex form":    {"x=746f6b2d30313233343536373839616263646566", "x=" + strings.Repeat("*", 40)},
	} {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, string(maskAll([]byte(tc.in), needles)), "reference")
			assert.Equal(t, tc.want, string(redactAll(t, strings.NewReader(tc.in), needles)), "one read")
			assert.Equal(t, tc.want, string(redactAll(t, iotest.OneByteReader(strings.NewReader(tc.in)), needles)), "byte by byte")
			assert.Equal(t, tc.want, string(redactAll(t, &chunkedReader{r: strings.NewReader(tc.in), sizes: []int{3, 7, 1, 13}}, needles)), "odd chunks")
		})
	}
	t.Run("base64 of a longer text", func(t *testing.T) {
		in := base64.StdEncoding.EncodeToString([]byte("hello " + string(tok) + " bye"))
		out := string(redactAll(t, iotest.OneByteReader(strings.NewReader(in)), needles))
		assert.Len(t, out, len(in))
		assert.True(t, strings.HasPrefix(out, in[:8]), "text before the token stays: %s", out)
		assert.Contains(t, out, "*****")
		for _, n := range needles {
			assert.NotContains(t, out, string(n))
		}
	})
	t.Run("large body with tokens across read boundaries", func(t *testing.T) {
		var in bytes.Buffer
		rng := rand.New(rand.NewPCG(1, 2))
		for in.Len() < 3*redactChunk {
			in.WriteString(strings.Repeat("x", rng.IntN(redactChunk/2)))
			in.Write(tok)
		}
		want := maskAll(in.Bytes(), needles)
		assert.NotContains(t, string(want), string(tok))
		assert.Equal(t, want, redactAll(t, bytes.NewReader(in.Bytes()), needles))
		assert.Equal(t, want, redactAll(t, &chunkedReader{r: bytes.NewReader(in.Bytes()), sizes: []int{redactChunk - 5, 17, redactChunk}}, needles))
	})
	t.Run("an upstream error is passed on after the data", func(t *testing.T) {
		r := io.MultiReader(strings.NewReader("abc"+string(tok)), iotest.ErrReader(io.ErrUnexpectedEOF))
		out, err := io.ReadAll(newRedactingBody(io.NopCloser(r), needles))
		assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
		assert.Equal(t, "abc"+stars, string(out))
	})
}

// FuzzRedactingBody: streamed redaction of any body, read in any chunks,
// equals masking the whole body at once; the length never changes and no
// needle survives.
func FuzzRedactingBody(f *testing.F) {
	f.Add([]byte("Bearer tok-0123456789abcdef"), "tok-0123456789abcdef", uint8(1), uint8(7))
	f.Add([]byte("tok-abtok-abtok-ab"), "tok-ab", uint8(2), uint8(3))
	f.Add([]byte("dG9rLWFiY2RlZmdo"), "tok-abcdefgh", uint8(5), uint8(0))
	f.Add([]byte{0, 1, 2, 0xff}, "\x00", uint8(1), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, token string, a, b uint8) {
		if token == "" || strings.Contains(token, "*") {
			return
		}
		needles := newScanner([]string{token}).needles
		want := maskAll(data, needles)
		got := redactAll(t, &chunkedReader{r: bytes.NewReader(data), sizes: []int{int(a), int(b)}}, needles)
		if !bytes.Equal(want, got) {
			t.Fatalf("streamed %q, whole %q", got, want)
		}
		if len(got) != len(data) {
			t.Fatalf("length changed: %d -> %d", len(data), len(got))
		}
		for _, n := range needles {
			if bytes.Contains(got, n) {
				t.Fatalf("needle %q survived in %q", n, got)
			}
		}
	})
}

// reflector is an upstream that echoes the request's Authorization header
// in its body in the ways a careless server could.
func reflector(t *testing.T) (*httptest.Server, *x509.CertPool, func() []string) {
	t.Helper()
	dir := t.TempDir()
	cp, kp, err := ca.Generate(dir, "reflector test CA")
	require.NoError(t, err)
	upCA, err := ca.Load(cp, kp)
	require.NoError(t, err)
	leaf, err := ca.IssueServer(upCA, "api.example.test", "allowed.example.test")
	require.NoError(t, err)
	var mu sync.Mutex
	var encodings []string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		encodings = append(encodings, r.Header.Get("Accept-Encoding"))
		mu.Unlock()
		body := "auth=" + r.Header.Get("Authorization") + ";other=" + r.Header.Get("X-Other")
		switch r.URL.Path {
		case "/gzip":
			if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
				break
			}
			w.Header().Set("Content-Encoding", "gzip")
			gz := gzip.NewWriter(w)
			_, _ = io.WriteString(gz, body)
			_ = gz.Close()
			return
		case "/split":
			// One byte per flush: the token crosses every read.
			for i := range len(body) {
				_, _ = io.WriteString(w, body[i:i+1])
				w.(http.Flusher).Flush()
			}
			return
		case "/br":
			w.Header().Set("Content-Encoding", "br")
		}
		_, _ = io.WriteString(w, body)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{leaf}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(upCA.Leaf)
	return srv, roots, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), encodings...)
	}
}

func TestReflectedTokenIsMaskedInResponseBodies(t *testing.T) {
	up, roots, encodings := reflector(t)
	h := newHarness(t, func(_ *Config, o *Options) {
		o.UpstreamRoots = roots
		o.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, up.Listener.Addr().String())
		}
	})
	c := h.clientBottleCAOnly()
	stars := strings.Repeat("*", len(testToken))
	for _, path := range []string{"/plain", "/gzip", "/split"} {
		t.Run(path, func(t *testing.T) {
			resp, body, err := h.get(c, "https://api.example.test"+path, map[string]string{"X-Other": "visible"})
			require.NoError(t, err)
			assert.Equal(t, http.StatusOK, resp.StatusCode, body)
			// The mask stands exactly where the upstream echoed the token:
			// it arrived, and it did not come back.
			assert.Equal(t, "auth=Bearer "+stars+";other=visible", body)
		})
	}
	t.Run("the agent's own Accept-Encoding is not passed on", func(t *testing.T) {
		resp, body, err := h.get(c, "https://api.example.test/gzip", map[string]string{"Accept-Encoding": "gzip"})
		require.NoError(t, err)
		assert.Empty(t, resp.Header.Get("Content-Encoding"), "the agent gets the body decoded")
		assert.Equal(t, "auth=Bearer "+stars+";other=", body)
	})
	t.Run("an encoding the proxy cannot read is refused", func(t *testing.T) {
		resp, body, err := h.get(c, "https://api.example.test/br", nil)
		require.NoError(t, err)
		assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
		assert.Contains(t, body, "cannot check")
		assert.NotContains(t, body, testToken)
	})
	t.Run("control: hosts without a token are passed through untouched", func(t *testing.T) {
		_, body, err := h.get(c, "https://allowed.example.test/plain", map[string]string{"Authorization": "Bearer agent-own"})
		require.NoError(t, err)
		assert.Equal(t, "auth=Bearer agent-own;other=", body)
	})
	for _, e := range encodings() {
		assert.NotEqual(t, "", e, "the transport always negotiates an encoding it can decode")
	}
	assert.NotContains(t, h.logs.String(), testToken)
}
