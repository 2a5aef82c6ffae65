package egress

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAllowlistHTTPSAndHTTP(t *testing.T) {
	h := newHarness(t)
	c := h.client()
	cases := []struct {
		url     string
		allowed bool
	}{
		{"https://allowed.example.test/a", true},
		{"https://open.example.test/b", true},               // route without token
		{"https://a.wild.example.test/c", true},             // wildcard subdomain
		{"https://x.y.wild.example.test/d", true},           // any depth
		{"https://ALLOWED.example.test./e", true},           // case and trailing dot
		{"http://plain.example.test/f", true},               // plain HTTP
		{"https://wild.example.test/g", false},              // wildcard excludes the bare domain
		{"https://evil.example.test/h", false},              // not listed
		{"http://evil.example.test/i", false},               // not listed, plain
		{"https://allowed.example.test.evil.test/j", false}, // suffix trick
	}
	for _, tc := range cases {
		t.Run(tc.url, func(t *testing.T) {
			resp, body, err := h.get(c, tc.url, nil)
			if tc.allowed {
				require.NoError(t, err)
				assert.Equal(t, http.StatusOK, resp.StatusCode, body)
				assert.Contains(t, body, "hello from ")
				return
			}
			if strings.HasPrefix(tc.url, "https://") {
				// Go's client reports a refused CONNECT as an error.
				require.Error(t, err)
				assert.Contains(t, err.Error(), "Forbidden")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, http.StatusForbidden, resp.StatusCode)
			assert.Contains(t, body, `host "evil.example.test" is not allowed`)
		})
	}
}

func TestDeniedConnectBodyNamesManifestKeys(t *testing.T) {
	h := newHarness(t)
	before := h.up.count.Load()
	resp, body, _ := h.rawConnect("evil.test:443")
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	assert.Equal(t, `bot-bottle egress: host "evil.test" is not allowed; add it to bottles.demo.allow or bottles.demo.egress.routes in the manifest, or ask for it through the supervise tool request_egress`+"\n", body)
	assert.Equal(t, before, h.up.count.Load(), "nothing reached an upstream")
	lines := h.waitRequests(1)
	last := lines[len(lines)-1]
	assert.Equal(t, "deny", last["decision"])
	assert.Equal(t, "not_allowed", last["rule"])
	assert.Equal(t, "evil.test", last["host"])
	assert.Equal(t, "CONNECT", last["method"])
	assert.EqualValues(t, 403, last["status"])
}

func TestConnectToOtherPortsRefused(t *testing.T) {
	h := newHarness(t)
	resp, body, _ := h.rawConnect("allowed.example.test:8443")
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	assert.Contains(t, body, "port 8443 is not allowed; allowed ports: 443")
	resp, body, _ = h.rawConnect("allowed.example.test:22")
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, body)
	// Plain HTTP to a port outside 80 and the CONNECT ports too.
	r2, b2, err := h.get(h.client(), "http://allowed.example.test:8080/", nil)
	require.NoError(t, err)
	assert.Equal(t, http.StatusForbidden, r2.StatusCode)
	assert.Contains(t, b2, "port 8080 is not allowed")
}

func TestExtraConnectPortIsTunnelled(t *testing.T) {
	h := newHarness(t, func(c *Config, _ *Options) { c.AllowedConnectPorts = []int{443, 8443} })
	resp, _, conn := h.rawConnect("allowed.example.test:8443")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	defer conn.Close()
	// Not intercepted: the client sees the upstream's own certificate.
	roots := h.up.roots
	tc := tls.Client(conn, &tls.Config{ServerName: "allowed.example.test", RootCAs: roots})
	require.NoError(t, tc.Handshake())
	_, err := fmt.Fprintf(tc, "GET /tun HTTP/1.1\r\nHost: allowed.example.test\r\nConnection: close\r\n\r\n")
	require.NoError(t, err)
	r, err := http.ReadResponse(bufio.NewReader(tc), nil)
	require.NoError(t, err)
	b, _ := io.ReadAll(r.Body)
	assert.Equal(t, "hello from allowed.example.test/tun", string(b))
}

func TestTokenInjectedAndAgentHeaderReplaced(t *testing.T) {
	h := newHarness(t)
	c := h.clientBottleCAOnly()
	resp, body, err := h.get(c, "https://api.example.test/v1/things", map[string]string{
		"Authorization": "Bearer agent-made-this-up",
	})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	seen := h.up.last()
	assert.Equal(t, []string{"Bearer " + testToken}, seen.Header.Values("Authorization"))
	assert.Equal(t, "/v1/things", seen.Path)
	assert.NotContains(t, body, testToken)
	for k, v := range resp.Header {
		assert.NotContains(t, strings.Join(v, ","), testToken, k)
	}

	// An upstream that echoes the credential in a header: redacted.
	resp, _, err = h.get(c, "https://api.example.test/echo-auth", nil)
	require.NoError(t, err)
	assert.Equal(t, "Bearer [REDACTED]", resp.Header.Get("X-Echo"))

	lines := h.waitRequests(2)
	assert.Equal(t, "inject", lines[0]["decision"])
	assert.Equal(t, "route:api.example.test", lines[0]["rule"])
	assert.NotContains(t, h.logs.String(), testToken)
}

func TestInterceptedHostNotLeakedViaHostHeader(t *testing.T) {
	h := newHarness(t)
	before := h.up.count.Load()
	resp, _, conn := h.rawConnect("allowed.example.test:443")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	defer conn.Close()
	tc := tls.Client(conn, &tls.Config{ServerName: "allowed.example.test", RootCAs: h.caPool})
	require.NoError(t, tc.Handshake())
	// Ask, inside a tunnel to an allowed host, for the token route.
	_, err := fmt.Fprintf(tc, "GET / HTTP/1.1\r\nHost: api.example.test\r\nConnection: close\r\n\r\n")
	require.NoError(t, err)
	r, err := http.ReadResponse(bufio.NewReader(tc), nil)
	require.NoError(t, err)
	b, _ := io.ReadAll(r.Body)
	assert.Equal(t, http.StatusForbidden, r.StatusCode)
	assert.Contains(t, string(b), "inside a tunnel")
	assert.Equal(t, before, h.up.count.Load())
}

func TestPlainHTTPToTokenRouteRefused(t *testing.T) {
	h := newHarness(t)
	resp, body, err := h.get(h.client(), "http://api.example.test/x", nil)
	require.NoError(t, err)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	assert.Contains(t, body, "https only")
	assert.Zero(t, h.up.count.Load())
}

func TestExfiltrationGuard(t *testing.T) {
	const pem = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----\n"
	ghToken := "ghp_" + strings.Repeat("A1b2C3d4E5", 4)[:36]
	b64 := base64.StdEncoding.EncodeToString([]byte("x" + testToken + "yz"))
	cases := []struct {
		name   string
		method string
		url    string
		header map[string]string
		body   string
		rule   string
	}{
		{"token in query", "GET", "https://allowed.example.test/?q=" + testToken, nil, "", "injected_token_in_url"},
		{"token url-encoded in path", "GET", "https://allowed.example.test/" + url.PathEscape(testToken), nil, "", "injected_token_in_url"},
		{"token in other header of route", "GET", "https://api.example.test/", map[string]string{"X-Debug": testToken}, "", "injected_token_in_header"},
		{"token in header", "GET", "https://allowed.example.test/", map[string]string{"X-Note": "t=" + testToken}, "", "injected_token_in_header"},
		{"token in body", "POST", "https://allowed.example.test/up", nil, `{"k":"` + testToken + `"}`, "injected_token_in_body"},
		{"token base64 in body", "POST", "https://allowed.example.test/up", nil, "data=" + b64, "injected_token_in_body"},
		{"token on plain http", "POST", "http://plain.example.test/up", nil, testToken, "injected_token_in_body"},
		{"pem block in body", "POST", "https://allowed.example.test/up", nil, "see:\n" + pem, "pem_private_key_in_body"},
		{"github token in header", "GET", "https://a.wild.example.test/", map[string]string{"X-Gh": ghToken}, "", "github_token_in_header"},
		{"aws key id in url", "GET", "https://allowed.example.test/?k=AKIAIOSFODNN7EXAMPLE", nil, "", "aws_access_key_id_in_url"},
	}
	h := newHarness(t)
	c := h.client()
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := h.up.count.Load()
			req, err := http.NewRequest(tc.method, tc.url, strings.NewReader(tc.body))
			require.NoError(t, err)
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, err := c.Do(req)
			require.NoError(t, err)
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			assert.Equal(t, http.StatusForbidden, resp.StatusCode)
			assert.Contains(t, string(b), "carries a secret")
			assert.NotContains(t, string(b), testToken)
			assert.Equal(t, before, h.up.count.Load(), "the upstream never saw it")
			lines := h.waitRequests(i + 1)
			last := lines[len(lines)-1]
			assert.Equal(t, "block", last["decision"])
			assert.Equal(t, tc.rule, last["rule"])
		})
	}
	logs := h.logs.String()
	for _, secret := range []string{testToken, b64, ghToken, "AKIAIOSFODNN7EXAMPLE", "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ", url.PathEscape(testToken)} {
		assert.NotContains(t, logs, secret)
	}
	// The agent's own (replaced) credential header is not exfiltration.
	resp, _, err := h.get(c, "https://api.example.test/", map[string]string{"Authorization": "Bearer " + testToken})
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}

func TestLargeBodyStreamsPastScanWindow(t *testing.T) {
	h := newHarness(t, func(c *Config, _ *Options) { c.MaxBodyScanBytes = 1024 })
	body := strings.Repeat("a", 5000) + "END"
	resp, err := h.client().Post("https://allowed.example.test/big", "text/plain", strings.NewReader(body))
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, body, h.up.last().Body, "the upstream got the whole body, prefix and rest")
	lines := h.waitRequests(1)
	assert.EqualValues(t, len(body), lines[0]["req_bytes"])
}

func TestAuditLineFields(t *testing.T) {
	h := newHarness(t)
	resp, body, err := h.get(h.client(), "https://allowed.example.test/path/x?secretish=1", nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	lines := h.waitRequests(1)
	l := lines[0]
	for _, k := range []string{"time", "method", "host", "path", "decision", "rule", "bytes", "duration_ms", "status"} {
		assert.Contains(t, l, k)
	}
	assert.Equal(t, "GET", l["method"])
	assert.Equal(t, "allowed.example.test", l["host"])
	assert.Equal(t, "/path/x", l["path"], "the query is not logged")
	assert.Equal(t, "allow", l["decision"])
	assert.Equal(t, "allow", l["rule"])
	assert.EqualValues(t, 200, l["status"])
	assert.EqualValues(t, len(body), l["bytes"])
	_, err = time.Parse(time.RFC3339Nano, l["time"].(string))
	assert.NoError(t, err)
}

func TestPassthroughTunnelAudited(t *testing.T) {
	h := newHarness(t)
	resp, body, err := h.get(h.client(), "https://pinned.example.test/p", nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "hello from pinned.example.test/p", body)
	// The bottle-CA-only client fails: the certificate is the upstream's.
	_, _, err = h.get(h.clientBottleCAOnly(), "https://pinned.example.test/p", nil)
	require.Error(t, err)
	lines := h.waitRequests(1)
	assert.Equal(t, "CONNECT", lines[0]["method"])
	assert.Equal(t, "tunnel:allow", lines[0]["rule"])
	assert.Greater(t, lines[0]["bytes"].(float64), float64(0))
}

func TestMetricsOnlyOnMetricsListener(t *testing.T) {
	h := newHarness(t)
	_, _, err := h.get(h.clientBottleCAOnly(), "https://api.example.test/", nil)
	require.NoError(t, err)
	h.rawConnect("evil.test:443")
	h.waitRequests(2)

	resp, err := http.Get("http://" + h.srv.MetricsAddr().String() + "/metrics")
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	m := string(b)
	assert.Contains(t, m, `bot_bottle_egress_requests_total{decision="inject"} 1`)
	assert.Contains(t, m, `bot_bottle_egress_requests_total{decision="deny"} 1`)
	assert.Contains(t, m, `bot_bottle_egress_injected_tokens_total{route="api.example.test"} 1`)
	assert.Contains(t, m, `bot_bottle_egress_upstream_duration_seconds_count 1`)
	assert.NotContains(t, m, testToken)

	resp, err = http.Get("http://" + h.srv.MetricsAddr().String() + "/healthz")
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	// The proxy listener (the agent's side) serves health but not metrics.
	resp, err = http.Get("http://" + h.srv.Addr().String() + "/metrics")
	require.NoError(t, err)
	b, _ = io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	assert.NotContains(t, string(b), "bot_bottle_egress")
	resp, err = http.Get("http://" + h.srv.Addr().String() + "/healthz")
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}

func TestReloadAddsHostWithoutDroppingInFlight(t *testing.T) {
	h := newHarness(t)
	c := h.client()
	type result struct {
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := c.Get("https://allowed.example.test/slow")
		if err != nil {
			done <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		done <- result{string(b), err}
	}()
	require.Eventually(t, func() bool { return h.up.count.Load() == 1 }, 5*time.Second, 10*time.Millisecond)

	_, _, err := h.get(c, "https://new.example.test/", nil)
	require.Error(t, err, "not allowed before approval")

	require.NoError(t, os.MkdirAll(h.dir+"/current-config", 0o755))
	require.NoError(t, WriteDynamicAllow(h.cfg.DynamicAllowFile, []string{"new.example.test", "-bad-"}))
	require.NoError(t, h.srv.Reload())
	resp, body, err := h.get(c, "https://new.example.test/n", nil)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "hello from new.example.test/n", body)

	close(h.up.release)
	select {
	case r := <-done:
		require.NoError(t, r.err)
		assert.Equal(t, "slow-start;slow-end", r.body)
	case <-time.After(10 * time.Second):
		t.Fatal("in-flight request did not finish")
	}
	assert.Contains(t, h.logs.String(), "dynamic allow entry skipped")
	lines := h.logs.requests(t)
	var sawDynamic bool
	for _, l := range lines {
		if l["host"] == "new.example.test" && l["rule"] == "dynamic" {
			sawDynamic = true
		}
	}
	assert.True(t, sawDynamic)
}

func TestDynamicAllowFilePolled(t *testing.T) {
	h := newHarness(t, func(_ *Config, o *Options) { o.PollInterval = 20 * time.Millisecond })
	c := h.client()
	require.NoError(t, os.MkdirAll(h.dir+"/current-config", 0o755))
	require.NoError(t, WriteDynamicAllow(h.cfg.DynamicAllowFile, []string{"polled.example.test"}))
	require.Eventually(t, func() bool {
		resp, _, err := h.get(c, "https://polled.example.test/", nil)
		return err == nil && resp.StatusCode == http.StatusOK
	}, 5*time.Second, 50*time.Millisecond)
	// Removal is picked up too.
	require.NoError(t, os.Remove(h.cfg.DynamicAllowFile))
	require.Eventually(t, func() bool {
		_, _, err := h.get(c, "https://polled.example.test/", nil)
		return err != nil
	}, 5*time.Second, 50*time.Millisecond)
}

func TestReloadFailureKeepsPolicy(t *testing.T) {
	h := newHarness(t)
	require.NoError(t, os.MkdirAll(h.dir+"/current-config", 0o755))
	require.NoError(t, os.WriteFile(h.cfg.DynamicAllowFile, []byte("{not json"), 0o644))
	require.Error(t, h.srv.Reload())
	resp, _, err := h.get(h.client(), "https://allowed.example.test/", nil)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}

func TestNewFailsWithoutSecret(t *testing.T) {
	dir := t.TempDir()
	secrets := dir + "/secrets.json"
	require.NoError(t, WriteSecrets(secrets, map[string]string{"OTHER": "v"}))
	h := newHarness(t) // for a CA
	cfg := h.cfg
	cfg.Listen, cfg.MetricsListen = "127.0.0.1:0", ""
	cfg.SecretsFile = secrets
	_, err := New(cfg, Options{})
	require.ErrorContains(t, err, `secret "API_TOKEN" is missing`)
}

func TestListenerRefusesNonProxyRequests(t *testing.T) {
	h := newHarness(t)
	conn, err := net.Dial("tcp", h.srv.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	_, _ = fmt.Fprintf(conn, "GET /anything HTTP/1.1\r\nHost: x\r\n\r\n")
	r, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	assert.Equal(t, http.StatusBadRequest, r.StatusCode)
}
