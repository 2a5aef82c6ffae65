package egress

import (
	"fmt"
	"strings"
)

// Sources of an allow decision; they appear in audit rules.
const (
	sourceAllow   = "allow"
	sourceRoute   = "route"
	sourceDynamic = "dynamic"
)

// policy is everything a request decision reads. It is immutable once
// built and swapped whole on reload, so a request sees one consistent
// snapshot.
type policy struct {
	allow       *hostSet
	passthrough *hostSet
	routes      map[string]*activeRoute
	scan        *scanner
	dynamic     int
}

type activeRoute struct {
	host   string
	header string // canonical form, empty when the route injects nothing
	value  string // the header value with the token filled in
}

func (r *activeRoute) injects() bool { return r.header != "" }

// buildPolicy combines the static config, the secrets and the live
// approvals. Invalid dynamic entries are skipped and returned as warnings;
// a token route whose secret is missing is an error.
func buildPolicy(cfg *Config, secrets map[string]string, dynamic []string) (*policy, []string, error) {
	p := &policy{
		allow:       newHostSet(),
		passthrough: newHostSet(),
		routes:      map[string]*activeRoute{},
	}
	var warnings []string
	var tokens []string
	for _, r := range cfg.Routes {
		h := NormalizeHost(r.Host)
		if err := p.allow.add(h, sourceRoute); err != nil {
			return nil, nil, fmt.Errorf("route %q: %w", r.Host, err)
		}
		ar := &activeRoute{host: h}
		if r.TokenRef != "" {
			tok, ok := secrets[r.TokenRef]
			if !ok || tok == "" {
				// Names the reference, never a value.
				return nil, nil, fmt.Errorf("route %q: secret %q is missing from the secrets file", r.Host, r.TokenRef)
			}
			if strings.ContainsAny(tok, "\r\n") {
				return nil, nil, fmt.Errorf("route %q: secret %q contains a line break", r.Host, r.TokenRef)
			}
			format := r.Format
			if format == "" {
				format = TokenPlaceholder
			}
			ar.header = canonicalHeader(r.Header)
			ar.value = strings.ReplaceAll(format, TokenPlaceholder, tok)
			tokens = append(tokens, tok)
		}
		p.routes[h] = ar
	}
	for _, a := range cfg.Allow {
		if err := p.allow.add(a, sourceAllow); err != nil {
			return nil, nil, fmt.Errorf("allow %q: %w", a, err)
		}
	}
	for _, a := range cfg.Passthrough {
		if err := p.passthrough.add(a, "passthrough"); err != nil {
			return nil, nil, fmt.Errorf("passthrough %q: %w", a, err)
		}
	}
	for _, d := range dynamic {
		if err := p.allow.add(d, sourceDynamic); err != nil {
			warnings = append(warnings, fmt.Sprintf("dynamic allow entry skipped: %v", err))
			continue
		}
		p.dynamic++
	}
	p.scan = newScanner(tokens)
	return p, warnings, nil
}

func canonicalHeader(h string) string {
	// Header names are case-insensitive; keep the canonical form so Set
	// and Del hit the same key.
	return textprotoCanonical(h)
}
