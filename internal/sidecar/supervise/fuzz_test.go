package supervise

import (
	"net"
	"strings"
	"testing"
	"unicode"

	"github.com/bot-bottle/bot-bottle/internal/sidecar/egress"
)

// FuzzToolArgs: validation never panics, and whatever it accepts is safe
// to store and show: a DNS host pattern egress accepts, an env var name,
// text without terminal control characters.
func FuzzToolArgs(f *testing.F) {
	f.Add("registry.npmjs.org", "GH_TOKEN", "install deps")
	f.Add("*.example.com", "_X", "multi\nline")
	f.Add("10.0.0.1", "1BAD", "\x1b[31m")
	f.Add("a..b", "$(id)", "")
	f.Add("[::1]", "A", "é")
	f.Fuzz(func(t *testing.T, host, env, reason string) {
		e := EgressArgs{Host: host, Reason: reason}
		if e.Validate() == nil {
			checkHost(t, e.Host)
			checkText(t, e.Reason)
		}
		r := RouteArgs{Host: host, TokenEnv: env, Reason: reason}
		if r.Validate() == nil {
			checkHost(t, r.Host)
			if strings.HasPrefix(r.Host, "*.") {
				t.Fatalf("route accepted wildcard %q", r.Host)
			}
			if !envName.MatchString(r.TokenEnv) {
				t.Fatalf("bad env %q accepted", r.TokenEnv)
			}
		}
		c := ChangeArgs{Description: reason}
		if c.Validate() == nil {
			checkText(t, c.Description)
		}
	})
}

func checkHost(t *testing.T, h string) {
	if err := egress.ValidHostPattern(h); err != nil {
		t.Fatalf("accepted host %q that egress rejects: %v", h, err)
	}
	if net.ParseIP(strings.TrimPrefix(h, "*.")) != nil {
		t.Fatalf("accepted IP %q", h)
	}
	if h != egress.NormalizeHost(h) {
		t.Fatalf("host %q not normalized", h)
	}
}

func checkText(t *testing.T, s string) {
	if s == "" {
		t.Fatal("accepted empty text")
	}
	for _, r := range s {
		if unicode.IsControl(r) && r != '\n' && r != '\t' {
			t.Fatalf("accepted control char %q", r)
		}
	}
}
