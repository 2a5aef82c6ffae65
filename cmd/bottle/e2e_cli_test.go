package main

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/internal/testenv"
)

// badManifest is well-formed YAML with four unrelated mistakes; check must
// report all of them in one run.
const badManifest = `bottles:
  dev:
    git_user:
      email: nobody
    egress:
      routes:
        - host: https://api.test
    firewall: iptables
agents:
  demo:
    bottle: dve
`

func TestManifestCheckReportsEveryMistake(t *testing.T) {
	c := newCLI(t)
	res := c.run("manifest", "check", "-f", c.write("bad.yaml", badManifest))
	assert.Equal(t, 2, res.code)
	assert.Empty(t, res.stdout)
	assert.Contains(t, res.stderr, "4 problems")
	for _, path := range []string{
		"agents.demo.bottle:",
		"bottles.dev.git_user.email:",
		"bottles.dev.egress.routes[0].host:",
		"bottles.dev.firewall:",
	} {
		assert.Contains(t, res.stderr, "\n  "+path, "one line per mistake, with its path")
	}
	assert.Contains(t, res.stderr, `did you mean "dev"?`)

	good := c.write("good.yaml", representativeManifest("demo"))
	res = c.ok("manifest", "check", "-f", good)
	assert.Equal(t, good+": ok (1 bottles, 1 agents)\n", res.stdout)

	res = c.run("manifest", "check", "-f", c.path("missing.yaml"))
	assert.Equal(t, 2, res.code)
	assert.Contains(t, res.stderr, "missing.yaml")
}

func TestPlanFormats(t *testing.T) {
	c := newCLI(t)
	m := c.write("bottle.yaml", representativeManifest("demo"))
	want := []string{"image", "network", "sidecar:egress", "sidecar:supervise", "boot", "ca", "prompt", "skills", "git_user", "supervise"}

	t.Run("json", func(t *testing.T) {
		res := c.ok("plan", "demo", "-f", m, "--format", "json")
		var doc struct {
			Agent   string `json:"agent"`
			Backend string `json:"backend"`
			Plan    struct {
				Slug     string            `json:"slug"`
				StateDir string            `json:"state_dir"`
				Labels   map[string]string `json:"labels"`
			} `json:"plan"`
			Steps []struct {
				ID   string   `json:"id"`
				Deps []string `json:"deps"`
			} `json:"steps"`
		}
		require.NoError(t, json.Unmarshal([]byte(res.stdout), &doc))
		assert.Equal(t, "demo", doc.Agent)
		assert.Equal(t, "docker", doc.Backend)
		assert.Regexp(t, `^demo-[a-z2-7]{5}$`, doc.Plan.Slug)
		assert.True(t, strings.HasPrefix(doc.Plan.StateDir, c.state), "the state dir follows $XDG_STATE_HOME: %s", doc.Plan.StateDir)
		assert.Equal(t, doc.Plan.Slug, doc.Plan.Labels["bot-bottle.slug"])
		deps := map[string][]string{}
		var ids []string
		for _, s := range doc.Steps {
			ids = append(ids, s.ID)
			deps[s.ID] = s.Deps
		}
		assert.ElementsMatch(t, want, ids)
		assert.ElementsMatch(t, []string{"boot", "sidecar:egress"}, deps["ca"])
		assert.ElementsMatch(t, []string{"boot", "sidecar:supervise"}, deps["supervise"])
		assert.Empty(t, deps["network"])
	})

	t.Run("dot", func(t *testing.T) {
		res := c.ok("plan", "demo", "-f", m, "--format", "dot")
		out := res.stdout
		assert.True(t, strings.HasPrefix(strings.TrimSpace(out), "strict digraph {"), out)
		assert.True(t, strings.HasSuffix(strings.TrimSpace(out), "}"), out)
		for _, id := range want {
			assert.Contains(t, out, `"`+id+`"`)
		}
		edge := regexp.MustCompile(`"([^"]+)" -> "([^"]+)"`)
		edges := map[string]bool{}
		for _, e := range edge.FindAllStringSubmatch(out, -1) {
			edges[e[1]+" -> "+e[2]] = true
		}
		for _, e := range []string{"boot -> ca", "sidecar:egress -> ca", "boot -> supervise", "sidecar:supervise -> supervise", "network -> boot", "image -> boot"} {
			assert.True(t, edges[e], "edge %s missing from:\n%s", e, out)
		}
	})

	t.Run("text", func(t *testing.T) {
		// text is the default format.
		out := c.ok("plan", "demo", "-f", m).stdout
		assert.Equal(t, strings.Count(out, "\n"), strings.Count(c.ok("plan", "demo", "-f", m, "--format", "text").stdout, "\n"))
		assert.Contains(t, out, "agent demo in bottle dev on docker")
		assert.Contains(t, out, "steps:")
		for _, id := range want {
			assert.Regexp(t, `(?m)^\s+`+regexp.QuoteMeta(id)+`\s`, out)
		}
	})

	t.Run("bad format", func(t *testing.T) {
		res := c.run("plan", "demo", "-f", m, "--format", "yaml")
		assert.Equal(t, 2, res.code)
		assert.Contains(t, res.stderr, `--format "yaml"`)
	})

	t.Run("unknown agent", func(t *testing.T) {
		res := c.run("plan", "nosuch", "-f", m)
		assert.Equal(t, 2, res.code)
		assert.Contains(t, res.stderr, `agent "nosuch" is not in the manifest`)
	})
}

// Every command's help shows examples: walk the command tree and ask each
// one for --help the way a user would.
func TestEveryCommandHasExamples(t *testing.T) {
	var walk func(path []string, cmd *cobra.Command)
	n := 0
	walk = func(path []string, cmd *cobra.Command) {
		if cmd.Hidden {
			// Plumbing run by git inside the gate with git's arguments
			// (flag parsing off: --help is passed through, not shown).
			return
		}
		n++
		name := strings.Join(append([]string{"bottle"}, path...), " ")
		t.Run(name, func(t *testing.T) {
			assert.NotEmpty(t, cmd.Example, "%s has no Example", name)
			root := newRootCmd()
			var out bytes.Buffer
			root.SetOut(&out)
			root.SetErr(&out)
			root.SetArgs(append(append([]string{}, path...), "--help"))
			require.NoError(t, root.Execute())
			help := out.String()
			assert.Contains(t, help, "Example", "%s --help", name)
			assert.Contains(t, help, strings.TrimSpace(strings.SplitN(cmd.Example, "\n", 2)[0]), "%s --help shows its own examples", name)
			assert.Contains(t, help, "Usage:")
		})
		for _, sub := range cmd.Commands() {
			walk(append(append([]string{}, path...), sub.Name()), sub)
		}
	}
	walk(nil, newRootCmd())
	assert.Greater(t, n, 20, "the walk reached the whole tree")

	// The binary answers the same way.
	c := newCLI(t)
	res := c.ok("--help")
	assert.Contains(t, res.stdout, "Example")
	assert.Contains(t, res.stdout, "bottle launch demo --detach")
}

// exec, rm and friends find bottles by label; a slug nobody launched is
// reported, with the right exit code, and nothing else is touched.
func TestUnknownSlug(t *testing.T) {
	testenv.RequireDocker(t)
	c := newCLI(t)
	slug := uniqueAgent("gone") + "-abcde"

	res := c.run("rm", slug)
	assert.Equal(t, 1, res.code)
	assert.Equal(t, "bottle: "+slug+": already gone\n", res.stderr)
	assert.Empty(t, res.stdout)

	res = c.run("exec", slug, "--", "true")
	assert.Equal(t, 2, res.code)
	assert.Contains(t, res.stderr, `no bottle "`+slug+`"`)

	res = c.run("exec", slug, "true")
	assert.Equal(t, 2, res.code, "the command must follow --")
	assert.Contains(t, res.stderr, "put the command after --")

	res = c.run("rm")
	assert.Equal(t, 2, res.code)
	assert.Contains(t, res.stderr, "give SLUG... or --all")
}
