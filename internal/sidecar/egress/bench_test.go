package egress

import (
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
)

// BenchmarkRequests measures a keep-alive client's round trip through the
// proxy to a loopback upstream: direct, plain HTTP forwarding, TLS
// interception with token injection and body scanning.
func BenchmarkRequests(b *testing.B) {
	for _, tc := range []struct {
		name, url string
		body      string
		viaProxy  bool
	}{
		{"direct_tls", "", "", false},
		{"plain_http", "http://plain.example.test/x", "", true},
		{"intercept_inject", "https://api.example.test/x", "", true},
		{"direct_post_64KiB", "", strings.Repeat("a", 64<<10), false},
		{"intercept_post_64KiB", "https://allowed.example.test/x", strings.Repeat("a", 64<<10), true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			h := newHarness(b)
			roots := h.caPool.Clone()
			roots.AddCert(h.up.caCert)
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, MaxIdleConnsPerHost: 4}
			url := tc.url
			if tc.viaProxy {
				tr.Proxy = http.ProxyURL(h.proxyURL)
			} else {
				tr.DialContext = h.up.dial
				url = "https://allowed.example.test/x"
			}
			c := &http.Client{Transport: tr}
			b.ResetTimer()
			for b.Loop() {
				var body io.Reader
				method := http.MethodGet
				if tc.body != "" {
					body, method = strings.NewReader(tc.body), http.MethodPost
				}
				req, _ := http.NewRequest(method, url, body)
				resp, err := c.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}

func BenchmarkScan64KiB(b *testing.B) {
	sc := newScanner([]string{testToken})
	data := []byte(strings.Repeat("a", 64<<10))
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if sc.scan(data) != "" {
			b.Fatal("false positive")
		}
	}
}
