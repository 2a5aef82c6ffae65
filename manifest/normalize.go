package manifest

import (
	"fmt"
	"sort"
	"strings"
)

// Normalize fills defaults in place: each route's Header
// (DefaultHeader) and Format (DefaultFormat), each bottle's Firewall
// (FirewallBuiltin), and empty maps for nil Bottles, Agents and Env.
// ASCII letters in route and allow hosts are lower-cased, since host
// names compare case-insensitively and consumers match them as plain
// strings; other characters are left alone so that Normalize never turns
// an invalid host into a valid one (strings.ToLower maps the Kelvin sign
// to 'k'). Normalize
// is idempotent and tolerates nil entries (Validate reports those). It
// runs before Validate in LoadFile; Validate accepts either form.
func (m *Manifest) Normalize() {
	if m.Bottles == nil {
		m.Bottles = map[string]*Bottle{}
	}
	if m.Agents == nil {
		m.Agents = map[string]*Agent{}
	}
	for _, b := range m.Bottles {
		if b == nil {
			continue
		}
		if b.Env == nil {
			b.Env = map[string]string{}
		}
		if b.Firewall == "" {
			b.Firewall = FirewallBuiltin
		}
		for i := range b.Allow {
			b.Allow[i] = asciiLower(b.Allow[i])
		}
		if b.Egress == nil {
			continue
		}
		for i := range b.Egress.Routes {
			r := &b.Egress.Routes[i]
			r.Host = asciiLower(r.Host)
			if r.Header == "" {
				r.Header = DefaultHeader
			}
			if r.Format == "" {
				r.Format = DefaultFormat
			}
		}
	}
}

func asciiLower(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'A' && r <= 'Z' {
			return r + ('a' - 'A')
		}
		return r
	}, s)
}

// Routes returns the bottle's egress routes; nil-safe.
func (b *Bottle) Routes() []Route {
	if b == nil || b.Egress == nil {
		return nil
	}
	return b.Egress.Routes
}

// BottleNames returns the bottle names, sorted.
func (m *Manifest) BottleNames() []string { return sortedKeys(m.Bottles) }

// AgentNames returns the agent names, sorted.
func (m *Manifest) AgentNames() []string { return sortedKeys(m.Agents) }

// Resolve returns the named agent and its bottle. The error suggests the
// closest agent name; it assumes a validated manifest, but reports a
// dangling bottle reference rather than returning nil.
func (m *Manifest) Resolve(agent string) (*Agent, *Bottle, error) {
	a := m.Agents[agent]
	if a == nil {
		return nil, nil, fmt.Errorf("agent %q is not defined (%s)", agent, nameHint(agent, m.AgentNames(), "agents"))
	}
	b := m.Bottles[a.Bottle]
	if b == nil {
		return nil, nil, fmt.Errorf("agent %q names bottle %q, which is not defined", agent, a.Bottle)
	}
	return a, b, nil
}

// nameHint suggests the closest of names, or lists them.
func nameHint(name string, names []string, what string) string {
	if guess := closest(name, names); guess != "" {
		return fmt.Sprintf("did you mean %q?", guess)
	}
	if len(names) == 0 {
		return "no " + what + " are defined"
	}
	return "defined " + what + ": " + strings.Join(names, ", ")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
