package manifest

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// baseManifest is valid and touches every rule, so each table case
// breaks exactly one thing.
func baseManifest() *Manifest {
	return &Manifest{
		Bottles: map[string]*Bottle{
			"dev": {
				Git: []GitEntry{
					{Name: "repo", Upstream: "ssh://git@example.com/repo.git", IdentityFile: "~/.ssh/id_ed25519"},
				},
				GitUser: &GitUser{Name: "Agent", Email: "agent@example.com"},
				Egress: &Egress{Routes: []Route{
					{Host: "api.example.com", TokenEnv: "TOKEN"},
				}},
				Allow:    []string{"example.org"},
				Image:    "claude-bottle:latest",
				Env:      map[string]string{"EDITOR": "vi"},
				Firewall: FirewallBuiltin,
			},
		},
		Agents: map[string]*Agent{
			"demo": {Bottle: "dev", Prompt: "hello", Skills: []string{"verify"}},
		},
	}
}

func TestValidateBase(t *testing.T) {
	m := baseManifest()
	require.NoError(t, Validate(m))
	m.Normalize()
	require.NoError(t, Validate(m))
}

func TestValidateReportsOneErrorPerMistake(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(m *Manifest)
		want   string
	}{
		{"no bottles", func(m *Manifest) { m.Bottles = nil; m.Agents = nil },
			"agents: no agents are defined (define at least one agent under agents:)\n" +
				"bottles: no bottles are defined (define at least one bottle under bottles:)"},
		{"agent without bottle", func(m *Manifest) { m.Agents["demo"].Bottle = "" },
			"agents.demo.bottle: missing (name the bottle this agent runs in: dev)"},
		{"agent names a missing bottle", func(m *Manifest) { m.Agents["demo"].Bottle = "deb" },
			`agents.demo.bottle: bottle "deb" is not defined (did you mean "dev"?)`},
		{"agent names a far-off bottle", func(m *Manifest) { m.Agents["demo"].Bottle = "production" },
			`agents.demo.bottle: bottle "production" is not defined (defined bottles: dev)`},
		{"null agent", func(m *Manifest) { m.Agents["demo"] = nil },
			"agents.demo: agent is null (set at least bottle:)"},
		{"null bottle", func(m *Manifest) { m.Bottles["dev"] = nil },
			"bottles.dev: bottle is null (write {} for an empty bottle)"},
		{"upper-case bottle name", func(m *Manifest) {
			m.Bottles["Dev"] = m.Bottles["dev"]
			delete(m.Bottles, "dev")
			m.Agents["demo"].Bottle = "Dev"
		}, `bottles.Dev: bottle name "Dev" is not allowed (` + nameFix + `)`},
		{"agent name too long", func(m *Manifest) {
			m.Agents[strings.Repeat("a", 32)] = m.Agents["demo"]
		}, `agents.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa: agent name "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" is not allowed (` + nameFix + `)`},
		{"agent name with a space", func(m *Manifest) { m.Agents["my agent"] = m.Agents["demo"] },
			`agents["my agent"]: agent name "my agent" is not allowed (` + nameFix + `)`},
		{"git name with slash", func(m *Manifest) { m.Bottles["dev"].Git[0].Name = "a/b" },
			`bottles.dev.git[0].Name: "a/b" is not a valid repository name (` + gitNameFix + `)`},
		{"git name dot-dot", func(m *Manifest) { m.Bottles["dev"].Git[0].Name = ".." },
			`bottles.dev.git[0].Name: ".." is not a valid repository name (` + gitNameFix + `)`},
		{"git name leading dash", func(m *Manifest) { m.Bottles["dev"].Git[0].Name = "-x" },
			`bottles.dev.git[0].Name: "-x" is not a valid repository name (` + gitNameFix + `)`},
		{"git name newline", func(m *Manifest) { m.Bottles["dev"].Git[0].Name = "a\nb" },
			`bottles.dev.git[0].Name: contains a newline or other control character (` + oneLineFix + `)`},
		{"git name missing", func(m *Manifest) { m.Bottles["dev"].Git[0].Name = "" },
			`bottles.dev.git[0].Name: missing (name the repository; the agent clones it as git://<gate>/<Name>.git)`},
		{"duplicate git name", func(m *Manifest) {
			b := m.Bottles["dev"]
			b.Git = append(b.Git, GitEntry{Name: "repo", Upstream: "/srv/other.git"})
		}, `bottles.dev.git[1].Name: "repo" is already used by git[0] (give each repository of a bottle its own Name)`},
		{"upstream not a URL", func(m *Manifest) { m.Bottles["dev"].Git[0].Upstream = "foo" },
			`bottles.dev.git[0].Upstream: "foo" is not a git URL (want ssh://, user@host:path, https://, git://, file:// or an absolute path)`},
		{"upstream missing", func(m *Manifest) { m.Bottles["dev"].Git[0].Upstream = "" },
			`bottles.dev.git[0].Upstream: missing (` + upstreamFix + `)`},
		{"upstream option", func(m *Manifest) { m.Bottles["dev"].Git[0].Upstream = "--upload-pack=touch /tmp/x" },
			`bottles.dev.git[0].Upstream: "--upload-pack=touch /tmp/x" starts with '-' (git receives the upstream as an argument, so it must not look like an option)`},
		{"upstream newline", func(m *Manifest) { m.Bottles["dev"].Git[0].Upstream = "/srv/a.git\n[core]" },
			`bottles.dev.git[0].Upstream: contains a newline or other control character (` + oneLineFix + `)`},
		{"identity file option", func(m *Manifest) { m.Bottles["dev"].Git[0].IdentityFile = "-oProxyCommand=x" },
			`bottles.dev.git[0].IdentityFile: "-oProxyCommand=x" starts with '-' (ssh receives the path as an argument, so it must not look like an option; prefix a relative path with ./)`},
		{"identity file newline", func(m *Manifest) { m.Bottles["dev"].Git[0].IdentityFile = "a\nb" },
			`bottles.dev.git[0].IdentityFile: contains a newline or other control character (write the path of a private key file on one line)`},
		{"git user name newline", func(m *Manifest) { m.Bottles["dev"].GitUser.Name = "A\n[alias]" },
			`bottles.dev.git_user.name: contains a newline or other control character (` + oneLineFix + `)`},
		{"git user name angle brackets", func(m *Manifest) { m.Bottles["dev"].GitUser.Name = "A <b>" },
			`bottles.dev.git_user.name: contains '<' or '>' (git writes identities as "name <email>"; remove the angle brackets)`},
		{"email without at", func(m *Manifest) { m.Bottles["dev"].GitUser.Email = "agent" },
			`bottles.dev.git_user.email: "agent" is not an email address: it has no '@' (want an address such as "agent@example.com")`},
		{"email with newline", func(m *Manifest) { m.Bottles["dev"].GitUser.Email = "a@b\nc" },
			`bottles.dev.git_user.email: contains a newline or other control character (` + oneLineFix + `)`},
		{"email in angle brackets", func(m *Manifest) { m.Bottles["dev"].GitUser.Email = "<a@b>" },
			`bottles.dev.git_user.email: "<a@b>" is not an email address (want a bare address such as "agent@example.com", without spaces or angle brackets)`},
		{"skill empty", func(m *Manifest) { m.Agents["demo"].Skills = []string{""} },
			`agents.demo.skills[0]: skill name is empty (name a directory under the skills directory)`},
		{"skill traversal", func(m *Manifest) { m.Agents["demo"].Skills = []string{"a..b"} },
			`agents.demo.skills[0]: skill name "a..b" would leave the skills directory (` + dirNameFix + `)`},
		{"skill dot", func(m *Manifest) { m.Agents["demo"].Skills = []string{"."} },
			`agents.demo.skills[0]: skill name "." would leave the skills directory (` + dirNameFix + `)`},
		{"skill backslash", func(m *Manifest) { m.Agents["demo"].Skills = []string{`a\b`} },
			`agents.demo.skills[0]: skill name "a\\b" contains a path separator (name the skill's directory, not a path; set BOT_BOTTLE_SKILLS_DIR to change where skills are read from)`},
		{"skill leading dash", func(m *Manifest) { m.Agents["demo"].Skills = []string{"-rf"} },
			`agents.demo.skills[0]: skill name "-rf" starts with '-' (` + dirNameFix + `)`},
		{"skill with space", func(m *Manifest) { m.Agents["demo"].Skills = []string{"my skill"} },
			`agents.demo.skills[0]: skill name "my skill" is not a plain directory name (` + dirNameFix + `, at most 100 characters)`},
		{"skill listed twice", func(m *Manifest) { m.Agents["demo"].Skills = []string{"a", "b", "a"} },
			`agents.demo.skills[2]: skill "a" is already listed at skills[0] (remove one of them)`},
		{"route host with scheme", func(m *Manifest) { m.Bottles["dev"].Egress.Routes[0].Host = "https://api.example.com" },
			`bottles.dev.egress.routes[0].host: "https://api.example.com" has a scheme (` + hostFix + `)`},
		{"route host with port", func(m *Manifest) { m.Bottles["dev"].Egress.Routes[0].Host = "api.example.com:443" },
			`bottles.dev.egress.routes[0].host: "api.example.com:443" has a port (` + hostFix + `)`},
		{"route host with path", func(m *Manifest) { m.Bottles["dev"].Egress.Routes[0].Host = "api.example.com/v1" },
			`bottles.dev.egress.routes[0].host: "api.example.com/v1" has a path (` + hostFix + `)`},
		{"route host IPv4", func(m *Manifest) { m.Bottles["dev"].Egress.Routes[0].Host = "192.168.1.1" },
			`bottles.dev.egress.routes[0].host: "192.168.1.1" is an IP address (` + hostFix + `)`},
		{"route host IPv6", func(m *Manifest) { m.Bottles["dev"].Egress.Routes[0].Host = "[::1]" },
			`bottles.dev.egress.routes[0].host: "[::1]" is an IP address (` + hostFix + `)`},
		{"route host missing", func(m *Manifest) { m.Bottles["dev"].Egress.Routes[0].Host = "" },
			`bottles.dev.egress.routes[0].host: missing (` + hostFix + `)`},
		{"route host too long", func(m *Manifest) {
			m.Bottles["dev"].Egress.Routes[0].Host = strings.Repeat(strings.Repeat("a", 60)+".", 5) + "com"
		}, `bottles.dev.egress.routes[0].host: host name is longer than 253 characters (` + hostFix + `)`},
		{"duplicate route host ignoring case", func(m *Manifest) {
			b := m.Bottles["dev"]
			b.Egress.Routes = append(b.Egress.Routes, Route{Host: "API.example.com"})
		}, `bottles.dev.egress.routes[1].host: "API.example.com" is already routed by routes[0] (merge the two routes; a host can inject only one token)`},
		{"token env invalid", func(m *Manifest) { m.Bottles["dev"].Egress.Routes[0].TokenEnv = "$TOKEN" },
			`bottles.dev.egress.routes[0].token_env: "$TOKEN" is not a valid environment variable name (name the host environment variable holding the token, e.g. ANTHROPIC_API_KEY)`},
		{"format without placeholder", func(m *Manifest) { m.Bottles["dev"].Egress.Routes[0].Format = "Bearer token" },
			`bottles.dev.egress.routes[0].format: format "Bearer token" does not contain {token} (include {token} where the token goes, e.g. "Bearer {token}")`},
		{"format with CRLF", func(m *Manifest) { m.Bottles["dev"].Egress.Routes[0].Format = "{token}\r\nX-Evil: 1" },
			`bottles.dev.egress.routes[0].format: contains a newline or other control character (a header value must be a single line)`},
		{"header not a token", func(m *Manifest) { m.Bottles["dev"].Egress.Routes[0].Header = "X-Key:" },
			`bottles.dev.egress.routes[0].header: "X-Key:" is not a valid HTTP header name (want an HTTP header name such as "Authorization" or "x-api-key")`},
		{"allow host not DNS", func(m *Manifest) { m.Bottles["dev"].Allow = []string{"exa mple.org"} },
			`bottles.dev.allow[0]: "exa mple.org" is not a DNS name (` + hostFix + `)`},
		{"allow bare wildcard", func(m *Manifest) { m.Bottles["dev"].Allow = []string{"*"} },
			`bottles.dev.allow[0]: "*" is not a DNS name (` + hostFix + `)`},
		{"allow inner wildcard", func(m *Manifest) { m.Bottles["dev"].Allow = []string{"api.*.example.com"} },
			`bottles.dev.allow[0]: "api.*.example.com" is not a DNS name (` + hostFix + `)`},
		{"firewall unknown", func(m *Manifest) { m.Bottles["dev"].Firewall = "iptables" },
			`bottles.dev.firewall: unknown firewall "iptables" (want "builtin" (the default) or "pipelock")`},
		{"env key invalid", func(m *Manifest) { m.Bottles["dev"].Env["1X"] = "" },
			`bottles.dev.env.1X: "1X" is not a valid environment variable name (use letters, digits and '_', not starting with a digit)`},
		{"env key reserved", func(m *Manifest) { m.Bottles["dev"].Env["HTTPS_PROXY"] = "http://evil" },
			`bottles.dev.env.HTTPS_PROXY: HTTPS_PROXY is set by the bottle (remove it; the bottle sets ` + strings.Join(ReservedEnv, ", ") + ` itself)`},
		{"env key reserved lower-case proxy", func(m *Manifest) { m.Bottles["dev"].Env["no_proxy"] = "*" },
			`bottles.dev.env.no_proxy: no_proxy is set by the bottle (remove it; the bottle sets ` + strings.Join(ReservedEnv, ", ") + ` itself)`},
		{"image with space", func(m *Manifest) { m.Bottles["dev"].Image = "ubuntu latest" },
			`bottles.dev.image: "ubuntu latest" is not an image reference (want an image reference such as "registry.example.com/agent:1.2")`},
		{"image option", func(m *Manifest) { m.Bottles["dev"].Image = "--privileged" },
			`bottles.dev.image: "--privileged" is not an image reference (want an image reference such as "registry.example.com/agent:1.2")`},
		{"prompt too long", func(m *Manifest) { m.Agents["demo"].Prompt = strings.Repeat("é", MaxPromptBytes/2+1) },
			`agents.demo.prompt: prompt is 1048578 bytes, over the limit of 1 MiB (1048576 bytes) (shorten it, or have the prompt tell the agent to read a file from the repository)`},
		{"NUL in prompt", func(m *Manifest) { m.Agents["demo"].Prompt = "a\x00b" },
			`agents.demo.prompt: contains a NUL byte (remove it; NUL cannot be passed to programs)`},
		{"NUL in env value", func(m *Manifest) { m.Bottles["dev"].Env["EDITOR"] = "vi\x00" },
			`bottles.dev.env.EDITOR: contains a NUL byte (remove it; NUL cannot be passed to programs)`},
		{"NUL in upstream is reported once", func(m *Manifest) { m.Bottles["dev"].Git[0].Upstream = "/srv\x00" },
			`bottles.dev.git[0].Upstream: contains a NUL byte (remove it; NUL cannot be passed to programs)`},
		{"NUL in host is reported once", func(m *Manifest) { m.Bottles["dev"].Allow[0] = "a\x00.com" },
			`bottles.dev.allow[0]: contains a NUL byte (remove it; NUL cannot be passed to programs)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := baseManifest()
			tt.mutate(m)
			err := Validate(m)
			require.Error(t, err)
			assert.Equal(t, tt.want, err.Error())
		})
	}
}

func TestValidateAcceptsHostileFreeText(t *testing.T) {
	// Free-text values only ever travel as whole argv elements or file
	// contents, so shell syntax and odd Unicode in them are harmless.
	m := baseManifest()
	m.Agents["demo"].Prompt = "$(rm -rf /); `id` && echo 'x' \"y\" | tee > /etc/passwd\n\u202e\u200b🦀 \t"
	m.Bottles["dev"].Env["EDITOR"] = "vim -c ':!sh' $HOME; ${IFS}"
	m.Bottles["dev"].GitUser.Name = "Zoë O'Brien; $(id)"
	m.Bottles["dev"].Git[0].IdentityFile = "~/keys/my key's \"file\""
	m.Bottles["dev"].Git[0].Upstream = "/srv/git/my-repo;$(id)'\"\u202e.git"
	require.NoError(t, Validate(m))
}

func TestValidateRules(t *testing.T) {
	type rule struct {
		set       func(m *Manifest, v string)
		path      string
		good, bad []string
	}
	rules := map[string]rule{
		"upstream": {
			set:  func(m *Manifest, v string) { m.Bottles["dev"].Git[0].Upstream = v },
			path: "bottles.dev.git[0].Upstream",
			good: []string{
				"ssh://git@github.com/o/r.git", "ssh://github.com:2222/o/r", "ssh://git@[::1]:22/r",
				"https://github.com/o/r.git", "https://user@host.example/r", "git://host/r",
				"file:///srv/git/r.git", "/srv/git/r.git", "git@github.com:o/r.git", "me@host:r",
				"ssh://git@[fe80::1]/r", "ssh://host", "https://h.example/a%20b",
			},
			bad: []string{
				"http://github.com/o/r", "github.com:o/r", "o/r", "./r", "~/r", "ssh://", "ssh://-oProxyCommand=x/r",
				"ssh://-u@host/r", "-u@host:r", "git@-host:r", "ftp://host/r", "file://host/r", "git@host:",
				"ssh://host/r\n", "git@host:r\x7f", "https://ho st/r", "/", "\u00a0/srv",
				// What the git gate refuses: passwords, spaces, an scp path
				// that looks like an option, bad escapes, IPv6 in scp form.
				"https://user:pass@host.example/r", "/srv/a b", "git@host:-r", "https://h.example/%zz",
				"ssh://h.example:99999/r", "git@[fe80::1]:r", strings.Repeat("/a", MaxLineBytes/2+1),
			},
		},
		"git name": {
			set:  func(m *Manifest, v string) { m.Bottles["dev"].Git[0].Name = v },
			path: "bottles.dev.git[0].Name",
			good: []string{"repo", "bot-bottle", "a.b_c-d", "R2D2", "x.gitx", strings.Repeat("a", 100)},
			bad: []string{"", ".", "..", "-x", "a/b", `a\b`, "a b", "ü", "a\tb", strings.Repeat("a", 101), "a;b", "$(id)",
				// What the git gate refuses.
				".hidden", "_x", "x..y", "x.git"},
		},
		"host": {
			set:  func(m *Manifest, v string) { m.Bottles["dev"].Allow[0] = v },
			path: "bottles.dev.allow[0]",
			good: []string{
				"example.com", "localhost", "a.b.c.d.example", "*.example.com", "*.com", "xn--bcher-kva.example",
				"API.Example.COM", "1password.com", "a-b.c-d.io", strings.Repeat("a", 63) + ".com",
			},
			bad: []string{
				"", "*", "*.", ".example.com", "example.com.", "-a.com", "a-.com", "a..com", "a_b.com",
				"1.2.3.4", "1.2.3", "example.123", "::1", "[::1]", "example.com:443", "http://example.com",
				"example.com/", "*example.com", "**.example.com", "bücher.de", strings.Repeat("a", 64) + ".com",
				"exa mple.com", "example.com\n",
			},
		},
		"skill": {
			set:  func(m *Manifest, v string) { m.Agents["demo"].Skills[0] = v },
			path: "agents.demo.skills[0]",
			good: []string{"verify", "init-prd", "a.b", "a_b", ".x", "V2"},
			bad:  []string{"", ".", "..", "../x", "x/..", "a/b", `a\b`, "-x", "a b", "é", "a\nb"},
		},
		"token env": {
			set:  func(m *Manifest, v string) { m.Bottles["dev"].Egress.Routes[0].TokenEnv = v },
			path: "bottles.dev.egress.routes[0].token_env",
			good: []string{"TOKEN", "_T", "gh_token_2", "a"},
			bad:  []string{"1A", "A-B", "A B", "$A", "A=B", "é"},
		},
		"header": {
			set:  func(m *Manifest, v string) { m.Bottles["dev"].Egress.Routes[0].Header = v },
			path: "bottles.dev.egress.routes[0].header",
			good: []string{"Authorization", "x-api-key", "X_Weird.Header!#$%&'*+^`|~"},
			bad:  []string{"A B", "A:B", "A\r\nB", "(x)", "é", "a/b", `"q"`},
		},
		"email": {
			set:  func(m *Manifest, v string) { m.Bottles["dev"].GitUser.Email = v },
			path: "bottles.dev.git_user.email",
			good: []string{"", "a@b", "agent+bot@example.com", "a@b@c"},
			bad:  []string{"a", "@b", "a@", "a b@c", "a@b c", "<a@b>", "a@b\n", "a\x01@b"},
		},
		"image": {
			set:  func(m *Manifest, v string) { m.Bottles["dev"].Image = v },
			path: "bottles.dev.image",
			good: []string{"", "ubuntu", "claude-bottle:latest", "ghcr.io/o/i:1.2", "r.example:5000/i@sha256:abc", "I_Mage"},
			bad:  []string{"-x", "a b", ":tag", "/abs", "a\nb", "ü", strings.Repeat("a", 256)},
		},
		"env key": {
			set: func(m *Manifest, v string) {
				m.Bottles["dev"].Env = map[string]string{v: "x"}
			},
			path: "",
			good: []string{"EDITOR", "_x", "a1", "Path", "Home", "HTTP_PROXY_X"},
			bad:  []string{"", "1A", "A-B", "A.B", "A=B", "HOME", "PATH", "USER", "HTTP_PROXY", "https_proxy", "NO_PROXY", "SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS"},
		},
	}
	for name, r := range rules {
		t.Run(name, func(t *testing.T) {
			for _, v := range r.good {
				m := baseManifest()
				r.set(m, v)
				assert.NoError(t, Validate(m), "%q should be accepted", v)
			}
			for _, v := range r.bad {
				m := baseManifest()
				r.set(m, v)
				err := Validate(m)
				if !assert.Error(t, err, "%q should be rejected", v) {
					continue
				}
				var fe FieldErrors
				require.True(t, errors.As(err, &fe))
				assert.Len(t, fe, 1, "%q: %v", v, err)
				if r.path != "" {
					assert.Equal(t, r.path, fe[0].Path, "%q", v)
				}
			}
		})
	}
}

func TestValidateDoesNotModify(t *testing.T) {
	m := baseManifest()
	m.Bottles["dev"].Firewall = ""
	m.Bottles["dev"].Egress.Routes[0].Host = "API.example.com"
	before := mustJSON(t, m)
	require.NoError(t, Validate(m))
	assert.Equal(t, string(before), string(mustJSON(t, m)))
}

func TestValidateNil(t *testing.T) {
	err := Validate(nil)
	require.Error(t, err)
	assert.Equal(t, "(top level): manifest is empty (define bottles: and agents:)", err.Error())
}

func TestBadManyReportsEverything(t *testing.T) {
	m, err := Parse(readTestdata(t, "bad-many.yaml"), "bad-many.yaml")
	require.NoError(t, err, "bad-many.yaml must be well-formed so that Validate sees it all")
	m.Normalize()
	lines := errorLines(t, Validate(m))

	paths := make([]string, len(lines))
	for i, l := range lines {
		paths[i], _, _ = strings.Cut(l, ": ")
	}
	assert.Equal(t, []string{
		"agents.demo.bottle",
		"agents.demo.skills[0]",
		"agents.demo.skills[1]",
		"agents.demo.skills[2]",
		"agents.worker.bottle",
		"bottles.Prod",
		"bottles.dev.allow[0]",
		"bottles.dev.egress.routes[0].host",
		"bottles.dev.egress.routes[0].token_env",
		"bottles.dev.egress.routes[1].format",
		"bottles.dev.egress.routes[2].host",
		"bottles.dev.egress.routes[3].header",
		"bottles.dev.egress.routes[3].host",
		"bottles.dev.env.HOME",
		`bottles.dev.env["bad name"]`,
		"bottles.dev.firewall",
		"bottles.dev.git[0].Upstream",
		"bottles.dev.git[1].IdentityFile",
		"bottles.dev.git[1].Name",
		"bottles.dev.git[1].Upstream",
		"bottles.dev.git_user.email",
		"bottles.dev.git_user.name",
	}, paths)
	assert.Contains(t, lines, `agents.demo.bottle: bottle "dve" is not defined (did you mean "dev"?)`)
	assert.Contains(t, lines, `bottles.dev.git[0].Upstream: "foo" is not a git URL (want ssh://, user@host:path, https://, git://, file:// or an absolute path)`)
}
