package gitgate

import (
	"net/url"
	"regexp"
	"strings"
	"testing"
)

var scpParts = regexp.MustCompile(`^([^@/]+)@([^:/]+):`)

// FuzzValidUpstream: whatever the gate accepts as an upstream, git and ssh
// can never read as an option (neither the whole value nor its user or
// host), it holds no whitespace and no password.
func FuzzValidUpstream(f *testing.F) {
	for _, s := range []string{
		"ssh://git@h.example/r.git", "git@h.example:r.git", "https://h.example/r", "git://h/r", "file:///srv/r", "/srv/r",
		"-oProxyCommand=x", "--upload-pack=touch", "ssh://-oProxyCommand=x/r", "ssh://a@-host/r", "a@-oProxyCommand:x",
		"git@h.example:-r", "ext::sh -c touch", "https://u:p@h/r", "/srv/a b", "git+ssh://h/r", "ssh://h/r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, u string) {
		if ValidUpstream(u) != nil {
			return
		}
		if strings.HasPrefix(u, "-") || strings.ContainsAny(u, " \t\r\n\x00") {
			t.Fatalf("accepted %q", u)
		}
		// user@host:path, as git reads it (a "scheme" holding '@' is
		// none, so "a@b://c" is host b, path //c).
		if m := scpParts.FindStringSubmatch(u); m != nil {
			if strings.HasPrefix(m[1], "-") || strings.HasPrefix(m[2], "-") {
				t.Fatalf("accepted %q: user %q, host %q", u, m[1], m[2])
			}
			return
		}
		if strings.HasPrefix(u, "/") {
			return
		}
		p, err := url.Parse(u)
		if err != nil {
			t.Fatalf("accepted %q that does not parse: %v", u, err)
		}
		if _, pw := p.User.Password(); pw {
			t.Fatalf("accepted a password in %q", u)
		}
		if strings.HasPrefix(p.Hostname(), "-") || strings.HasPrefix(p.User.Username(), "-") {
			t.Fatalf("accepted %q: user %q, host %q", u, p.User.Username(), p.Hostname())
		}
	})
}
