package gitgate

import (
	"strings"
	"testing"
)

// FuzzHookInput: the parser never panics, and everything it accepts is
// safe to hand to git push as a refspec: hex ids, refs under refs/ that
// git itself would accept and that cannot be read as an option.
func FuzzHookInput(f *testing.F) {
	f.Add(sha1a + " " + sha1b + " refs/heads/main\n")
	f.Add(zero + " " + sha1b + " refs/tags/v1.0\r\n")
	f.Add(sha1a + " " + zero + " refs/heads/feature/x\n\n")
	f.Add("garbage")
	f.Add(sha1a + " " + sha1b + " refs/heads/:evil\n")
	f.Fuzz(func(t *testing.T, in string) {
		ups, err := ParseHookInput(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, u := range ups {
			if !hexSHA.MatchString(u.Old) || !hexSHA.MatchString(u.New) {
				t.Fatalf("bad ids accepted: %+v", u)
			}
			if !strings.HasPrefix(u.Ref, "refs/") || strings.ContainsAny(u.Ref, " :~^?*[\\\x00\n") || strings.Contains(u.Ref, "..") {
				t.Fatalf("bad ref accepted: %q", u.Ref)
			}
		}
	})
}
