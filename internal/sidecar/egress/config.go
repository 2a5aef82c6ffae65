// Package egress is the bottle's egress sidecar: an HTTP(S) forward proxy
// that is the agent's only way out. It enforces a host allowlist, injects
// tokens for declared routes (intercepting their TLS with the bottle's CA)
// so the agent never holds them, blocks requests that carry secrets, writes
// one audit line per request and exposes Prometheus metrics on a separate
// listener that the agent cannot reach.
//
// What is intercepted: with a CA configured, every allowed CONNECT to port
// 443 is TLS-intercepted (not only token routes), so the exfiltration
// guard sees every HTTPS request; the agent trusts the bottle CA. Hosts
// listed in Passthrough, and CONNECTs to other allowed ports, are
// tunnelled untouched. Without a CA nothing is intercepted.
//
// Limits of the guard: it scans the URL, the headers and the first
// MaxBodyScanBytes of each body (the rest streams unscanned), as sent
// (a compressed body is not decompressed). It catches the injected token
// raw, URL-escaped, JSON-escaped, hex and base64 at any offset, and the
// well-known secret shapes; it is a seatbelt against leaks, not a proof
// against an agent that encrypts what it sends.
package egress

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/bot-bottle/bot-bottle/internal/atomicfile"
)

// DefaultConnectPorts is used when Config.AllowedConnectPorts is empty.
var DefaultConnectPorts = []int{443}

// DefaultMaxBodyScan bounds how much of each request body the exfiltration
// guard reads before deciding; the rest is streamed unscanned.
const DefaultMaxBodyScan = 1 << 20

// TokenPlaceholder is replaced by the secret in Route.Format.
const TokenPlaceholder = "{token}"

// Config is the egress sidecar's JSON configuration, written by the launch
// planner into the bottle's state dir and mounted into the sidecar.
type Config struct {
	// Listen is the proxy's address on the bundle network, e.g. ":3128".
	Listen string `json:"listen"`
	// MetricsListen serves /metrics and /healthz; it should be an address
	// on the outside network only. Empty disables it.
	MetricsListen string `json:"metrics_listen,omitempty"`
	// CACert and CAKey are the bottle CA (see internal/ca). Without them
	// nothing is intercepted and routes cannot carry tokens.
	CACert string `json:"ca_cert,omitempty"`
	CAKey  string `json:"ca_key,omitempty"`
	// Routes are hosts that are allowed and, with TokenRef, get a header
	// injected.
	Routes []Route `json:"routes,omitempty"`
	// Allow lists hosts reachable without injection. "*.example.com"
	// matches every subdomain of example.com at any depth but not
	// example.com itself; list the bare domain separately.
	Allow []string `json:"allow,omitempty"`
	// AllowedConnectPorts are the ports CONNECT may reach (default 443).
	// Plain HTTP may reach port 80 and these ports.
	AllowedConnectPorts []int `json:"allowed_connect_ports,omitempty"`
	// Passthrough lists allowed hosts (same pattern syntax as Allow) whose
	// CONNECT tunnels are never intercepted, for clients that pin
	// certificates. The exfiltration guard cannot see into them.
	Passthrough []string `json:"passthrough,omitempty"`
	// SecretsFile is a JSON object token_ref -> value (0600, written by the
	// host with WriteSecrets, mounted only into this sidecar).
	SecretsFile string `json:"secrets_file,omitempty"`
	// DynamicAllowFile is a JSON list of hosts approved live through
	// supervise. It may not exist yet; it is polled and re-read on SIGHUP.
	DynamicAllowFile string `json:"dynamic_allow_file,omitempty"`
	// Bottle names the bottle in denial messages so the agent (and the
	// human reading its transcript) learns which manifest key to edit.
	Bottle string `json:"bottle,omitempty"`
	// Supervise says whether the agent can ask for access through the
	// supervise MCP server; denial messages mention it only then.
	Supervise bool `json:"supervise,omitempty"`
	// UpstreamCAFile holds extra PEM roots trusted for upstream servers,
	// on top of the system pool (a private or corporate CA).
	UpstreamCAFile string `json:"upstream_ca_file,omitempty"`
	// MaxBodyScanBytes overrides DefaultMaxBodyScan.
	MaxBodyScanBytes int64 `json:"max_body_scan_bytes,omitempty"`
}

// Route is one declared upstream.
type Route struct {
	Host string `json:"host"`
	// Header is the header set on every request to Host, e.g.
	// "Authorization". Any value the agent sent is replaced.
	Header string `json:"header,omitempty"`
	// Format is the header value with TokenPlaceholder standing for the
	// secret, e.g. "Bearer {token}". Defaults to "{token}".
	Format string `json:"format,omitempty"`
	// TokenRef names the secret in SecretsFile. Empty means the route only
	// allows the host.
	TokenRef string `json:"token_ref,omitempty"`
}

// LoadConfig reads and validates a JSON config file.
func LoadConfig(path string) (Config, error) {
	var c Config
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("egress config: %w", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("egress config %s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, nil
}

// Validate checks the config without touching the filesystem.
func (c *Config) Validate() error {
	var errs []error
	if err := validListen(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("listen: %w", err))
	}
	if c.MetricsListen != "" {
		if err := validListen(c.MetricsListen); err != nil {
			errs = append(errs, fmt.Errorf("metrics_listen: %w", err))
		}
	}
	if (c.CACert == "") != (c.CAKey == "") {
		errs = append(errs, errors.New("ca_cert and ca_key must be set together"))
	}
	seen := map[string]bool{}
	for i, r := range c.Routes {
		h := NormalizeHost(r.Host)
		if err := ValidHost(h); err != nil {
			errs = append(errs, fmt.Errorf("routes[%d].host: %w", i, err))
		}
		if seen[h] {
			errs = append(errs, fmt.Errorf("routes[%d].host %q is declared twice", i, r.Host))
		}
		seen[h] = true
		if r.TokenRef == "" {
			continue
		}
		if c.CACert == "" {
			errs = append(errs, fmt.Errorf("routes[%d]: a token route needs ca_cert/ca_key to intercept TLS", i))
		}
		if r.Header == "" || !validHeaderName(r.Header) {
			errs = append(errs, fmt.Errorf("routes[%d].header %q is not a valid header name", i, r.Header))
		}
		if r.Format != "" && !strings.Contains(r.Format, TokenPlaceholder) {
			errs = append(errs, fmt.Errorf("routes[%d].format must contain %s", i, TokenPlaceholder))
		}
		if strings.ContainsAny(r.Format, "\r\n") {
			errs = append(errs, fmt.Errorf("routes[%d].format contains a line break", i))
		}
		if c.SecretsFile == "" {
			errs = append(errs, fmt.Errorf("routes[%d].token_ref %q needs secrets_file", i, r.TokenRef))
		}
	}
	for i, a := range c.Allow {
		if err := ValidHostPattern(NormalizeHost(a)); err != nil {
			errs = append(errs, fmt.Errorf("allow[%d]: %w", i, err))
		}
	}
	for i, a := range c.Passthrough {
		if err := ValidHostPattern(NormalizeHost(a)); err != nil {
			errs = append(errs, fmt.Errorf("passthrough[%d]: %w", i, err))
		}
	}
	for i, p := range c.AllowedConnectPorts {
		if p < 1 || p > 65535 {
			errs = append(errs, fmt.Errorf("allowed_connect_ports[%d]: %d is not a port", i, p))
		}
	}
	if c.MaxBodyScanBytes < 0 {
		errs = append(errs, errors.New("max_body_scan_bytes must not be negative"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("egress config: %w", errors.Join(errs...))
	}
	return nil
}

func validListen(addr string) error {
	if addr == "" {
		return errors.New("empty address")
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if port == "" {
		return errors.New("missing port")
	}
	return nil
}

func validHeaderName(h string) bool {
	for _, c := range h {
		// RFC 9110 token characters.
		if c > 0x7e || c <= ' ' || strings.ContainsRune("\"(),/:;<=>?@[\\]{}", c) {
			return false
		}
	}
	return h != "" && http.CanonicalHeaderKey(h) != ""
}

// WriteSecrets writes the token_ref -> value map as JSON, mode 0600,
// atomically. The host calls it at launch; the file is mounted only into
// the egress sidecar.
func WriteSecrets(path string, secrets map[string]string) error {
	b, err := json.Marshal(secrets)
	if err != nil {
		return fmt.Errorf("egress secrets: %w", err)
	}
	return atomicfile.WriteFile(path, b, 0o600)
}

// LoadSecrets reads a file written by WriteSecrets. Errors never include
// the file's content.
func LoadSecrets(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("egress secrets: %w", err)
	}
	m := map[string]string{}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("egress secrets %s: not a JSON object of strings", path)
	}
	return m, nil
}

// WriteDynamicAllow writes the list of live-approved hosts atomically.
func WriteDynamicAllow(path string, hosts []string) error {
	if hosts == nil {
		hosts = []string{}
	}
	b, err := json.MarshalIndent(hosts, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, append(b, '\n'), 0o644)
}

// ReadDynamicAllow reads the live-approved hosts; a missing file is an
// empty list.
func ReadDynamicAllow(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return nil, nil
	}
	var hosts []string
	if err := json.Unmarshal(b, &hosts); err != nil {
		return nil, fmt.Errorf("dynamic allow file %s: %w", path, err)
	}
	return hosts, nil
}
