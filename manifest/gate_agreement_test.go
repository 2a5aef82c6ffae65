package manifest_test

import (
	"testing"

	"github.com/bot-bottle/bot-bottle/internal/sidecar/gitgate"
	"github.com/bot-bottle/bot-bottle/manifest"
)

// FuzzGitEntryAcceptedByGate: every git entry the manifest accepts, the
// git gate accepts too. A value the manifest lets through and the gate
// refuses would fail a launch halfway, in a sidecar's log, instead of at
// `bottle manifest check` with the field named.
func FuzzGitEntryAcceptedByGate(f *testing.F) {
	for _, s := range [][2]string{
		{"repo", "git://upstream.test/repo.git"},
		{"proj", "ssh://git@h.example:22/r.git"},
		{"b", "git@h.example:r.git"},
		{"c", "https://h.example/r"},
		{"e", "file:///srv/r.git"},
		{"f", "/srv/r.git"},
		{"_x", "/srv/a b"},
		{"x.git", "https://u:p@h.example/r"},
		{"a..b", "git@h.example:-r"},
		{"Repo", "https://h.example/%zz"},
		{".hidden", "ssh://h.example:99999/r"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, name, upstream string) {
		m := &manifest.Manifest{
			Bottles: map[string]*manifest.Bottle{"dev": {Git: []manifest.GitEntry{{Name: name, Upstream: upstream}}}},
			Agents:  map[string]*manifest.Agent{"demo": {Bottle: "dev"}},
		}
		if manifest.Validate(m) != nil {
			return
		}
		cfg := gitgate.Config{
			Listen:   ":9418",
			BasePath: "/var/lib/git-gate",
			Repos:    []gitgate.Repo{{Name: name, Upstream: upstream, IdentityFile: "/etc/bot-bottle/keys/" + name}},
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("the manifest accepts Name %q Upstream %q, the gate refuses: %v", name, upstream, err)
		}
	})
}
