package egress

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"regexp"
	"sort"
	"strings"
)

// Rule kinds reported by the scanner. They name what was found, never the
// value, and become the audit line's rule and a metric label.
const (
	KindInjectedToken = "injected_token"
	KindPEMPrivateKey = "pem_private_key"
	KindGitHubToken   = "github_token"
	KindGitHubPAT     = "github_pat"
	KindAWSKeyID      = "aws_access_key_id"
)

// shapes are well-known secret formats blocked whatever the destination.
// Each has literal hints: the regexp runs only when one of them occurs,
// since unanchored regexp search is far slower than a substring search.
var shapes = []struct {
	kind  string
	hints [][]byte
	re    *regexp.Regexp
}{
	{KindPEMPrivateKey, hints("PRIVATE KEY-----"), regexp.MustCompile(`-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----`)},
	{KindGitHubToken, hints("ghp_", "gho_", "ghs_", "ghu_", "ghr_"), regexp.MustCompile(`\b(?:ghp|gho|ghs|ghu|ghr)_[A-Za-z0-9]{36,}`)},
	{KindGitHubPAT, hints("github_pat_"), regexp.MustCompile(`\bgithub_pat_[A-Za-z0-9_]{22,}`)},
	{KindAWSKeyID, hints("AKIA", "ASIA"), regexp.MustCompile(`\b(?:AKIA|ASIA)[A-Z0-9]{16}\b`)},
}

func hints(s ...string) [][]byte {
	out := make([][]byte, len(s))
	for i, h := range s {
		out[i] = []byte(h)
	}
	return out
}

// minEncodedNeedle is the shortest encoded fragment worth searching for;
// shorter fragments of a token would match innocent data.
const minEncodedNeedle = 8

// scanner finds injected token values (in the encodings an agent could
// use to smuggle them: raw, URL-escaped, base64 at any alignment, hex,
// JSON-escaped) and well-known secret shapes.
type scanner struct {
	needles [][]byte
}

func newScanner(secrets []string) *scanner {
	set := map[string]bool{}
	for _, s := range secrets {
		for _, n := range tokenForms(s) {
			set[n] = true
		}
	}
	sc := &scanner{}
	for n := range set {
		sc.needles = append(sc.needles, []byte(n))
	}
	// Deterministic order keeps scan cost and results stable.
	sort.Slice(sc.needles, func(i, j int) bool { return bytes.Compare(sc.needles[i], sc.needles[j]) < 0 })
	return sc
}

// tokenForms lists the strings whose presence reveals token t.
func tokenForms(t string) []string {
	if t == "" {
		return nil
	}
	forms := []string{t}
	add := func(s string) {
		if len(s) >= minEncodedNeedle && s != t {
			forms = append(forms, s)
		}
	}
	add(url.QueryEscape(t))
	add(url.PathEscape(t))
	add(hex.EncodeToString([]byte(t)))
	add(strings.ToUpper(hex.EncodeToString([]byte(t))))
	if j, err := json.Marshal(t); err == nil {
		add(string(j[1 : len(j)-1]))
	}
	add(strings.ReplaceAll(t, "/", `\/`))
	// Base64 of a longer string containing t contains, depending on t's
	// offset modulo 3, one of three cores: the characters that depend on
	// t's bytes alone.
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		for off := 0; off < 3; off++ {
			buf := append(make([]byte, off), t...)
			e := enc.EncodeToString(buf)
			start := (8*off + 5) / 6
			end := 8 * (off + len(t)) / 6
			if end > start && end <= len(e) {
				add(e[start:end])
			}
		}
	}
	return forms
}

// scan returns the kind of the first secret found in b, or "".
func (sc *scanner) scan(b []byte) string {
	for _, n := range sc.needles {
		if bytes.Contains(b, n) {
			return KindInjectedToken
		}
	}
	for _, s := range shapes {
		for _, h := range s.hints {
			if bytes.Contains(b, h) {
				if s.re.Match(b) {
					return s.kind
				}
				break
			}
		}
	}
	return ""
}

func (sc *scanner) scanString(s string) string {
	if s == "" {
		return ""
	}
	return sc.scan([]byte(s))
}

// redact replaces every needle in s; used on text that reaches logs from
// third-party code paths.
func (sc *scanner) redact(s string) string {
	for _, n := range sc.needles {
		s = strings.ReplaceAll(s, string(n), "[REDACTED]")
	}
	return s
}

// scanURL checks the URL as sent and its decoded path and query, so
// percent-encoding cannot hide a token.
func (sc *scanner) scanURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	if k := sc.scanString(u.String()); k != "" {
		return k
	}
	if k := sc.scanString(u.Path); k != "" {
		return k
	}
	if q, err := url.QueryUnescape(u.RawQuery); err == nil {
		if k := sc.scanString(q); k != "" {
			return k
		}
	}
	if u.User != nil {
		if k := sc.scanString(u.User.String()); k != "" {
			return k
		}
	}
	return ""
}
