package gitgate

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	sha1a = "1111111111111111111111111111111111111111"
	sha1b = "2222222222222222222222222222222222222222"
	zero  = "0000000000000000000000000000000000000000"
)

func TestParseHookInput(t *testing.T) {
	in := sha1a + " " + sha1b + " refs/heads/main\n" + zero + " " + sha1b + " refs/tags/v1\r\n\n" + sha1a + " " + zero + " refs/heads/old\n"
	ups, err := ParseHookInput(strings.NewReader(in))
	require.NoError(t, err)
	assert.Equal(t, []RefUpdate{
		{sha1a, sha1b, "refs/heads/main"},
		{zero, sha1b, "refs/tags/v1"},
		{sha1a, zero, "refs/heads/old"},
	}, ups)

	bad := []string{
		sha1a + " " + sha1b,                                     // missing ref
		sha1a + " " + sha1b + " refs/heads/a b",                 // extra field
		"xyz " + sha1b + " refs/heads/main",                     // not hex
		strings.Repeat("A", 40) + " " + sha1b + " refs/heads/m", // upper-case hex
		zero + " " + zero + " refs/heads/main",                  // no-op
		sha1a + " " + sha1b + " HEAD",                           // not under refs/
		sha1a + " " + sha1b + " refs/heads/../x",
		sha1a + " " + sha1b + " refs/heads/x.lock",
		sha1a + " " + sha1b + " refs/heads/-x/../y",
		sha1a + " " + sha1b + " refs/heads/a@{1}",
		sha1a + " " + sha1b + " refs/heads/.hidden",
		sha1a + " " + sha1b + strings.Repeat("1", 24) + " refs/heads/mixed", // 40 vs 64
		strings.Repeat("x", 5000),
	}
	for _, b := range bad {
		_, err := ParseHookInput(strings.NewReader(b + "\n"))
		assert.Error(t, err, b)
	}
}

func TestValidUpstream(t *testing.T) {
	for _, ok := range []string{"git@github.com:acme/tools.git", "ssh://git@host:2222/x.git", "https://github.com/a/b.git", "file:///srv/x.git", "/srv/x.git"} {
		assert.NoError(t, ValidUpstream(ok), ok)
	}
	for _, bad := range []string{"", "-oProxyCommand=x", "--upload-pack=evil", "https://user:pw@host/x.git", "ftp://h/x", "ssh://-oProxyCommand=x/y", "git@host:-x", "a b", "relative/path"} {
		assert.Error(t, ValidUpstream(bad), bad)
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{Listen: ":9418", BasePath: "/srv/git", Repos: []Repo{{Name: "tools", Upstream: "git@github.com:acme/tools.git", IdentityFile: "/keys/id"}}}
	require.NoError(t, good.Validate())
	cases := map[string]func(*Config){
		"listen":     func(c *Config) { c.Listen = "9418" },
		"base":       func(c *Config) { c.BasePath = "rel" },
		"no repos":   func(c *Config) { c.Repos = nil },
		"name":       func(c *Config) { c.Repos[0].Name = "../x" },
		"dot git":    func(c *Config) { c.Repos[0].Name = "x.git" },
		"dup":        func(c *Config) { c.Repos = append(c.Repos, Repo{Name: "TOOLS", Upstream: "/a"}) },
		"identity":   func(c *Config) { c.Repos[0].IdentityFile = "id" },
		"strict":     func(c *Config) { c.SSHStrictHostKeyChecking = "no" },
		"git option": func(c *Config) { c.Git = "--exec-path=/x" },
	}
	for name, f := range cases {
		c := good
		c.Repos = append([]Repo(nil), good.Repos...)
		f(&c)
		assert.Error(t, c.Validate(), name)
	}
}

func TestSSHArgs(t *testing.T) {
	got := SSHArgs("/keys/id", "/keys/known_hosts", "", []string{"-p", "2222", "git@host", "git-upload-pack 'x.git'"})
	assert.Equal(t, []string{
		"-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=30",
		"-i", "/keys/id", "-o", "UserKnownHostsFile=/keys/known_hosts",
		"-p", "2222", "git@host", "git-upload-pack 'x.git'",
	}, got)
	got = SSHArgs("", "", StrictAcceptNew, []string{"h", "cmd"})
	assert.Contains(t, got, "StrictHostKeyChecking=accept-new")
	assert.NotContains(t, got, "-i")
}
