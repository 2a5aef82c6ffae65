// Package pipelock supports the optional `firewall: pipelock` mode: it
// writes pipelock's YAML config from the bottle's allowlist and finds a
// pipelock image or binary supplied by the user. bot-bottle does not ship
// pipelock; its own egress sidecar is the default firewall.
package pipelock

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/bot-bottle/bot-bottle/internal/sidecar/egress"
)

// DefaultRateLimit is the per-domain requests-per-minute limit written
// when Input.RateLimitPerMinute is zero. pipelock's own default (60, and 0
// meaning that default) throttles an agent's normal package installs.
const DefaultRateLimit = 100000

// Input is what the planner knows about the bottle.
type Input struct {
	// Listen is the proxy address on the bundle network.
	Listen string
	// MetricsListen must be off the agent's network: metrics reveal
	// traffic and are served unauthenticated.
	MetricsListen string
	// Allow lists hosts; "*.example.com" in pipelock also matches
	// example.com.
	Allow []string
	// CACert and CAKey are paths inside the pipelock container; when set,
	// TLS is intercepted so bodies and headers can be scanned.
	CACert, CAKey string
	// Passthrough lists domains never intercepted.
	Passthrough []string
	// TrustedDomains are allowed hosts that resolve to private addresses
	// (e.g. a sidecar); pipelock blocks those as SSRF otherwise.
	TrustedDomains []string
	// SSRFAllowCIDRs are private ranges pipelock may reach.
	SSRFAllowCIDRs []string
	// RateLimitPerMinute overrides DefaultRateLimit.
	RateLimitPerMinute int
}

// Only keys pipelock knows: it rejects unknown ones. Field order here is
// irrelevant; the YAML is written with sorted keys.
type config struct {
	Version             int              `json:"version"`
	Mode                string           `json:"mode"`
	APIAllowlist        []string         `json:"api_allowlist"`
	ForwardProxy        enabled          `json:"forward_proxy"`
	TLSInterception     *tlsInterception `json:"tls_interception,omitempty"`
	RequestBodyScanning bodyScanning     `json:"request_body_scanning"`
	FetchProxy          fetchProxy       `json:"fetch_proxy"`
	Sentry              enabled          `json:"sentry"`
	Logging             logging          `json:"logging"`
	MetricsListen       string           `json:"metrics_listen"`
	TrustedDomains      []string         `json:"trusted_domains,omitempty"`
	SSRF                *ssrf            `json:"ssrf,omitempty"`
}

type enabled struct {
	Enabled bool `json:"enabled"`
}

type tlsInterception struct {
	Enabled            bool     `json:"enabled"`
	CACert             string   `json:"ca_cert"`
	CAKey              string   `json:"ca_key"`
	PassthroughDomains []string `json:"passthrough_domains,omitempty"`
}

type bodyScanning struct {
	Enabled     bool   `json:"enabled"`
	Action      string `json:"action"`
	ScanHeaders bool   `json:"scan_headers"`
}

type fetchProxy struct {
	Listen     string     `json:"listen"`
	Monitoring monitoring `json:"monitoring"`
}

type monitoring struct {
	MaxRequestsPerMinute int `json:"max_requests_per_minute"`
}

type logging struct {
	Format string `json:"format"`
	Output string `json:"output"`
}

type ssrf struct {
	IPAllowlist []string `json:"ip_allowlist"`
}

// GenerateConfig renders pipelock's YAML for in. Host lists are
// normalized, deduplicated and sorted so the output is stable.
func GenerateConfig(in Input) ([]byte, error) {
	var errs []error
	for _, a := range []struct{ key, v string }{{"listen", in.Listen}, {"metrics_listen", in.MetricsListen}} {
		if _, port, err := net.SplitHostPort(a.v); err != nil || port == "" {
			errs = append(errs, fmt.Errorf("%s %q is not host:port", a.key, a.v))
		}
	}
	if in.Listen != "" && in.Listen == in.MetricsListen {
		errs = append(errs, errors.New("metrics_listen must differ from listen (the agent must not reach metrics)"))
	}
	if (in.CACert == "") != (in.CAKey == "") {
		errs = append(errs, errors.New("ca cert and key must be given together"))
	}
	if in.RateLimitPerMinute < 0 {
		errs = append(errs, errors.New("rate limit must not be negative"))
	}
	allow, err := hosts("allow", in.Allow)
	errs = append(errs, err)
	pass, err := hosts("passthrough", in.Passthrough)
	errs = append(errs, err)
	trusted, err := hosts("trusted_domains", in.TrustedDomains)
	errs = append(errs, err)
	var cidrs []string
	for _, c := range in.SSRFAllowCIDRs {
		if _, _, err := net.ParseCIDR(c); err != nil {
			errs = append(errs, fmt.Errorf("ssrf cidr %q: %w", c, err))
			continue
		}
		cidrs = append(cidrs, c)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("pipelock config: %w", err)
	}
	rate := in.RateLimitPerMinute
	if rate == 0 {
		rate = DefaultRateLimit
	}
	if allow == nil {
		allow = []string{}
	}
	c := config{
		Version:             1,
		Mode:                "strict",
		APIAllowlist:        allow,
		ForwardProxy:        enabled{true},
		RequestBodyScanning: bodyScanning{Enabled: true, Action: "block", ScanHeaders: true},
		FetchProxy:          fetchProxy{Listen: in.Listen, Monitoring: monitoring{MaxRequestsPerMinute: rate}},
		Sentry:              enabled{false},
		Logging:             logging{Format: "json", Output: "stdout"},
		MetricsListen:       in.MetricsListen,
		TrustedDomains:      trusted,
	}
	if in.CACert != "" {
		c.TLSInterception = &tlsInterception{Enabled: true, CACert: in.CACert, CAKey: in.CAKey, PassthroughDomains: pass}
	}
	if len(cidrs) > 0 {
		sort.Strings(cidrs)
		c.SSRF = &ssrf{IPAllowlist: cidrs}
	}
	return yaml.Marshal(c)
}

func hosts(key string, in []string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	var errs []error
	for _, h := range in {
		n := egress.NormalizeHost(h)
		if err := egress.ValidHostPattern(n); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
			continue
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, errors.Join(errs...)
}

// EnvImage names a pipelock image present in the local engine.
const EnvImage = "BOT_BOTTLE_PIPELOCK_IMAGE"

// Location is where pipelock was found: exactly one field is set.
type Location struct {
	Image  string
	Binary string
}

// ImageExists reports whether ref is in the local engine (no pulls: there
// may be no registry to pull from).
type ImageExists func(ctx context.Context, ref string) (bool, error)

// ErrNotAvailable is returned when neither an image nor a binary is found.
var ErrNotAvailable = errors.New("pipelock is not available")

// Locate finds pipelock: the image named by BOT_BOTTLE_PIPELOCK_IMAGE if
// the engine has it, else `pipelock` on PATH. getenv and lookPath default
// to the process's.
func Locate(ctx context.Context, exists ImageExists, getenv func(string) string, lookPath func(string) (string, error)) (Location, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	if lookPath == nil {
		lookPath = exec.LookPath
	}
	if ref := strings.TrimSpace(getenv(EnvImage)); ref != "" {
		if exists == nil {
			return Location{}, fmt.Errorf("%w: %s=%s is set but no container engine is available to check it", ErrNotAvailable, EnvImage, ref)
		}
		ok, err := exists(ctx, ref)
		if err != nil {
			return Location{}, fmt.Errorf("pipelock: checking image %s: %w", ref, err)
		}
		if !ok {
			return Location{}, fmt.Errorf("%w: %s=%s, but the local Docker engine has no such image; load it first (e.g. `docker load -i pipelock.tar`, or pull %s on a machine with registry access)",
				ErrNotAvailable, EnvImage, ref, "ghcr.io/luckypipewrench/pipelock:<version>")
		}
		return Location{Image: ref}, nil
	}
	if p, err := lookPath("pipelock"); err == nil {
		return Location{Binary: p}, nil
	}
	return Location{}, fmt.Errorf("%w: bot-bottle does not ship pipelock. Either set %s to a pipelock image already in the local Docker engine "+
		"(ghcr.io/luckypipewrench/pipelock:<version>), or install the `pipelock` binary on PATH; or use the built-in firewall (remove `firewall: pipelock` from the bottle)",
		ErrNotAvailable, EnvImage)
}
