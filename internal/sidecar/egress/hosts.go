package egress

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// NormalizeHost lower-cases a host, trims spaces, IPv6 brackets and one
// trailing dot, so "API.Example.com." and "api.example.com" compare equal.
func NormalizeHost(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	h = strings.TrimSuffix(h, ".")
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	return h
}

// ValidHost accepts a normalized DNS name or IP literal.
func ValidHost(h string) error {
	if h == "" {
		return errors.New("empty host")
	}
	if net.ParseIP(h) != nil {
		return nil
	}
	if len(h) > 253 {
		return fmt.Errorf("host %q is longer than 253 characters", truncate(h))
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("host %q has an empty or over-long label", truncate(h))
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("host %q has a label starting or ending with '-'", truncate(h))
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("host %q contains %q", truncate(h), c)
			}
		}
	}
	return nil
}

// ValidHostPattern accepts what ValidHost accepts plus "*.<domain>" where
// the domain has at least two labels ("*.com" would open a whole TLD).
func ValidHostPattern(p string) error {
	if rest, ok := strings.CutPrefix(p, "*."); ok {
		if net.ParseIP(rest) != nil {
			return fmt.Errorf("wildcard %q over an IP address", truncate(p))
		}
		if !strings.Contains(rest, ".") {
			return fmt.Errorf("wildcard %q is too broad", truncate(p))
		}
		return ValidHost(rest)
	}
	if strings.Contains(p, "*") {
		return fmt.Errorf("host %q: '*' is only allowed as a leading \"*.\"", truncate(p))
	}
	return ValidHost(p)
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// hostSet matches hosts against exact names and "*." wildcards.
type hostSet struct {
	exact    map[string]string // host -> where it came from (for the audit rule)
	suffixes []suffixRule
}

type suffixRule struct {
	suffix string // ".example.com"
	source string
}

func newHostSet() *hostSet { return &hostSet{exact: map[string]string{}} }

// add inserts a pattern; invalid patterns are reported and skipped.
func (s *hostSet) add(pattern, source string) error {
	p := NormalizeHost(pattern)
	if err := ValidHostPattern(p); err != nil {
		return err
	}
	if rest, ok := strings.CutPrefix(p, "*."); ok {
		s.suffixes = append(s.suffixes, suffixRule{suffix: "." + rest, source: source})
		return nil
	}
	if _, dup := s.exact[p]; !dup {
		s.exact[p] = source
	}
	return nil
}

// match reports whether host (normalized) is in the set and which source
// allowed it. A wildcard matches any depth of subdomain but never the bare
// domain, and never an IP literal.
func (s *hostSet) match(host string) (string, bool) {
	if src, ok := s.exact[host]; ok {
		return src, true
	}
	if net.ParseIP(host) != nil {
		return "", false
	}
	for _, r := range s.suffixes {
		if len(host) > len(r.suffix) && strings.HasSuffix(host, r.suffix) {
			return r.source, true
		}
	}
	return "", false
}
