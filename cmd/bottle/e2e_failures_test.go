package main

import (
	"crypto/rand"
	"encoding/hex"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/backends"
)

// launchingLine is what launch prints on stderr once the plan exists.
var launchingLine = regexp.MustCompile(`(?m)^launching (\S+) \(`)

// A token variable that is not set is found before anything exists: exit
// 2, the variable named, no resource, no state dir, and no bench either.
func TestLaunchWithUnsetTokenCreatesNothing(t *testing.T) {
	c := newDockerCLI(t) // BOTTLE_TEST_TOKEN deliberately not set
	agent := uniqueAgent("demo")
	c.removeAgentAtEnd(agent)
	m := c.write("bottle.yaml", representativeManifest(agent))

	res := c.run("launch", agent, "-f", m, "--detach", "--progress", "plain", "--timings", c.path("t.json"))
	assert.Equal(t, 2, res.code, res.stderr)
	assert.Empty(t, res.stdout)
	assert.Contains(t, res.stderr, "BOTTLE_TEST_TOKEN")
	assert.Contains(t, res.stderr, "token_env")
	assert.NotRegexp(t, launchingLine, res.stderr, "nothing was planned to run")
	assert.NotContains(t, res.stderr, "started (attempt", "no step ran")
	assert.NoFileExists(t, c.path("t.json"), "no graph ran, so there are no timings")
	c.requireNothingLeft(backends.Labels{backends.LabelAgent: agent})
	assert.Empty(t, c.stateDirs())

	// bench gives the same answer for the same mistake, and also leaves
	// nothing.
	res = c.run("bench", agent, "-f", m, "-n", "2")
	assert.Equal(t, 2, res.code, res.stderr)
	assert.Contains(t, res.stderr, "BOTTLE_TEST_TOKEN")
	assert.Contains(t, res.stderr, "2 of 2 cycles failed")
	c.requireNothingLeft(backends.Labels{backends.LabelAgent: agent})
	assert.Empty(t, c.stateDirs())

	// An agent the manifest does not have is a usage error, not a crash.
	res = c.run("bench", "nosuch", "-f", m, "-n", "1")
	assert.Equal(t, 2, res.code, res.stderr)
	assert.Contains(t, res.stderr, `agent "nosuch" is not in the manifest (agents: `+agent+`)`)
	assert.NotContains(t, res.stderr, "panic")
}

// A step that fails at run time fails the launch with exit 1 and an error
// naming the step, after a rollback that leaves nothing behind.
func TestLaunchFailingStepRollsBack(t *testing.T) {
	c := newDockerCLI(t, "BOTTLE_TEST_TOKEN=tok-0a1b2c3d")
	agent := uniqueAgent("demo")
	c.removeAgentAtEnd(agent)
	var sfx [4]byte
	_, _ = rand.Read(sfx[:])
	missing := "bot-bottle-test-missing:" + hex.EncodeToString(sfx[:])
	// The same bottle, with an agent image that no engine has.
	manifest := strings.Replace(representativeManifest(agent), "    supervise: true\n", "    supervise: true\n    image: "+missing+"\n", 1)
	require.Contains(t, manifest, "image: "+missing)
	m := c.write("bottle.yaml", manifest)
	T := c.path("t.json")

	res := c.run("launch", agent, "-f", m, "--detach", "--progress", "plain", "--timings", T)
	assert.Equal(t, 1, res.code, res.stderr)
	assert.Empty(t, res.stdout, "no slug: nothing was launched")
	assert.Contains(t, res.stderr, `step "image" failed`)
	assert.Contains(t, res.stderr, missing)
	mm := launchingLine.FindStringSubmatch(res.stderr)
	require.NotNil(t, mm, res.stderr)
	slug := mm[1]

	// The failure is in the timings too: image failed, and the steps that
	// ran beside it were rolled back.
	tm := validTimings(t, timingsSchema(t), c.read(T))
	assert.Equal(t, slug, tm.Slug)
	outcomes := map[string]string{}
	for _, s := range tm.Steps {
		outcomes[s.ID] = s.Outcome
	}
	assert.Equal(t, "failed", outcomes["image"])
	assert.Contains(t, []string{"undone", "skipped", "cancelled"}, outcomes["network"], "network ran beside image and was rolled back, or never ran")
	assert.Equal(t, "skipped", outcomes["boot"], "nothing after image ran")

	c.requireNothingLeft(backends.Labels{backends.LabelSlug: slug})
	c.requireNothingLeft(backends.Labels{backends.LabelAgent: agent})
	assert.Empty(t, c.stateDirs())
}
