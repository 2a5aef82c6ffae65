package egress

import (
	"encoding/base64"
	"net/url"
	"strings"
	"testing"
)

// FuzzHostMatch checks that pattern validation and matching never panic,
// that an exact pattern matches exactly itself, and that a wildcard never
// matches its bare domain or a host outside it.
func FuzzHostMatch(f *testing.F) {
	f.Add("example.com", "example.com")
	f.Add("*.example.com", "a.example.com")
	f.Add("*.example.com", "example.com")
	f.Add("*.example.com", "aexample.com")
	f.Add("10.0.0.1", "10.0.0.1")
	f.Add("EXAMPLE.com.", "example.com")
	f.Fuzz(func(t *testing.T, pattern, host string) {
		s := newHostSet()
		if err := s.add(pattern, "allow"); err != nil {
			return
		}
		p := NormalizeHost(pattern)
		h := NormalizeHost(host)
		_, ok := s.match(h)
		if rest, wild := strings.CutPrefix(p, "*."); wild {
			if ok && (h == rest || !strings.HasSuffix(h, "."+rest)) {
				t.Fatalf("wildcard %q matched %q", p, h)
			}
			return
		}
		if ok != (h == p) {
			t.Fatalf("exact %q vs %q: match=%v", p, h, ok)
		}
	})
}

// FuzzScanRequestParts feeds arbitrary data around a token through the
// encodings an agent could use; the scanner must find every one and never
// panic on arbitrary input.
func FuzzScanRequestParts(f *testing.F) {
	f.Add("tok-abcdefgh12345678", "prefix ", " suffix")
	f.Add("a/b+c=d?e&f", "", "")
	f.Add("0123456789", "\x00\xff", "\n")
	f.Fuzz(func(t *testing.T, token, pre, suf string) {
		sc := newScanner([]string{token})
		_ = sc.scanString(pre + suf)
		if len(token) < minEncodedNeedle {
			return
		}
		data := pre + token + suf
		for name, enc := range map[string]string{
			"raw":    data,
			"b64":    base64.StdEncoding.EncodeToString([]byte(data)),
			"b64url": base64.URLEncoding.EncodeToString([]byte(data)),
			"query":  url.QueryEscape(data),
		} {
			if sc.scanString(enc) != KindInjectedToken {
				t.Fatalf("%s form of token %q not found", name, token)
			}
		}
	})
}
