package launcher

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/backends/docker"
	"github.com/bot-bottle/bot-bottle/dag"
	"github.com/bot-bottle/bot-bottle/internal/plan"
	"github.com/bot-bottle/bot-bottle/manifest"
	"github.com/bot-bottle/bot-bottle/steps"
)

// upstreamScript runs in the upstream container: a bare repository with
// one commit served by git daemon (receive-pack on), and the echo server
// on port 80. It is constant; nothing user-supplied reaches it.
const upstreamScript = `set -e
git init -q --bare -b main /srv/repo.git
git clone -q /srv/repo.git /tmp/seed
git -C /tmp/seed -c user.name=up -c user.email=up@example.com commit -q --allow-empty -m seed
git -C /tmp/seed push -q origin HEAD:main
/testserver -http :80 -https :443 -cert /tls/cert.pem -key /tls/key.pem &
exec git daemon --reuseaddr --export-all --enable=receive-pack --base-path=/srv --listen=0.0.0.0
`

// hook runs a function before a step, for tests that must act between
// steps (attach an upstream to a network the launch just created).
type hook struct {
	dag.Step
	before func(context.Context) error
}

func (h hook) Run(ctx context.Context) error {
	if err := h.before(ctx); err != nil {
		return err
	}
	return h.Step.Run(ctx)
}

func (h hook) Undo(ctx context.Context) error {
	if u, ok := h.Step.(dag.Undoer); ok {
		return u.Undo(ctx)
	}
	return nil
}

func (h hook) Timeout() time.Duration {
	if t, ok := h.Step.(dag.Timeouter); ok {
		return t.Timeout()
	}
	return 0
}

// connect attaches a container to a network under an alias.
func connect(ctx context.Context, eng *docker.Engine, container, net string, aliases ...string) error {
	_, err := eng.Client().NetworkConnect(ctx, net, client.NetworkConnectOptions{
		Container:      container,
		EndpointConfig: &network.EndpointSettings{Aliases: aliases},
	})
	return err
}

func fullManifest() *manifest.Manifest {
	return &manifest.Manifest{
		Bottles: map[string]*manifest.Bottle{"dev": {
			Git:       []manifest.GitEntry{{Name: "repo", Upstream: "git://upstream.test/repo.git"}},
			GitUser:   &manifest.GitUser{Name: "Dev Bot", Email: "dev@example.com"},
			Supervise: true,
			Egress:    &manifest.Egress{Routes: []manifest.Route{{Host: "api.test", TokenEnv: "TEST_TOKEN", Header: "Authorization", Format: "Bearer {token}"}}},
			Allow:     []string{"upstream.test"},
		}},
		Agents: map[string]*manifest.Agent{"demo": {Bottle: "dev", Prompt: "Fix the failing test.", Skills: []string{"verify"}}},
	}
}

func TestDockerLaunchProvisionsTheAgent(t *testing.T) {
	skills := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(skills, "verify"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(skills, "verify", "SKILL.md"), []byte("# verify\n"), 0o644))
	const token = "tok-7c1e9f0b2d4a6"
	o, eng := dockerOptions(t, fullManifest(), "demo", env{"TEST_TOKEN": token, "BOT_BOTTLE_SKILLS_DIR": skills})
	o.CopyCwd, o.Cwd = true, gitInit(t)

	// The upstream lives on a network of the test's own and joins the
	// bottle's outside network just before the git gate mirrors it.
	ctx := context.Background()
	testNet := testNetwork(t, eng, "bbt-upnet")
	tlsDir, upstreamCA := upstreamTLS(t, "api.test", "upstream.test")
	o.UpstreamCA = upstreamCA
	upstream := serverWithMounts(t, eng, testNet, nil, []backends.Mount{{Source: tlsDir, Target: "/tls", ReadOnly: true}}, "sh", "-c", upstreamScript)
	var slug string
	var p *plan.Plan
	o.OnPlanned = func(pl *plan.Plan) { p, slug = pl, pl.Slug }
	o.Wrap = func(s dag.Step) dag.Step {
		if s.ID() != steps.IDSidecarGitGate {
			return s
		}
		return hook{s, func(ctx context.Context) error {
			return connect(ctx, eng, upstream, p.Names.Outside, "upstream.test", "api.test")
		}}
	}
	removeAtEnd(t, o, &slug)

	launched, res, err := Run(ctx, o)
	require.NoError(t, err)
	require.NotNil(t, res)
	for _, s := range res.Steps {
		assert.Equal(t, dag.OutcomeOK, s.Outcome, s.ID)
	}
	g := eng.Guest(launched.Plan.Names.Agent)

	t.Run("prompt", func(t *testing.T) {
		assert.Equal(t, "node:node 600", run(t, g, "stat", "-c", "%U:%G %a", plan.GuestPromptPath))
		assert.Equal(t, "Fix the failing test.", run(t, g, "cat", plan.GuestPromptPath))
	})
	t.Run("skills", func(t *testing.T) {
		assert.Equal(t, "node:node", run(t, g, "stat", "-c", "%U:%G", "/home/node/.claude/skills/verify/SKILL.md"))
		assert.Equal(t, "# verify", run(t, g, "cat", "/home/node/.claude/skills/verify/SKILL.md"))
	})
	t.Run("workspace", func(t *testing.T) {
		assert.Equal(t, "node:node", run(t, g, "stat", "-c", "%U:%G", "/home/node/workspace/.git/HEAD"))
		assert.Equal(t, "first", runAsNode(t, g, "git", "-C", "/home/node/workspace", "log", "-1", "--format=%s"))
	})
	t.Run("ca in the trust store", func(t *testing.T) {
		assert.Equal(t, plan.GuestCAPath, run(t, g, "readlink", "/etc/ssl/certs/bot-bottle-ca.pem"))
		caPEM, err := os.ReadFile(filepath.Join(o.StateRoot, slug, "egress", "ca.pem"))
		require.NoError(t, err)
		bundle := run(t, g, "cat", plan.GuestCABundle)
		assert.Contains(t, bundle, strings.TrimSpace(string(caPEM)))
	})
	t.Run("git identity and gate rewrites", func(t *testing.T) {
		assert.Equal(t, "Dev Bot", runAsNode(t, g, "git", "config", "--global", "user.name"))
		assert.Equal(t, "dev@example.com", runAsNode(t, g, "git", "config", "--global", "user.email"))
		assert.Equal(t, "git://upstream.test/repo.git", runAsNode(t, g, "git", "config", "--get", "url.git://git-gate:9418/repo.git.insteadof"))
	})
	t.Run("supervise registered with claude", func(t *testing.T) {
		cfg := run(t, g, "cat", "/home/node/.claude.json")
		assert.Contains(t, cfg, `"url": "http://supervise:8080/mcp"`)
		log := run(t, g, "cat", "/var/log/claude-stub.jsonl")
		assert.Contains(t, log, `"mcp"`)
		assert.Contains(t, log, `"http://supervise:8080/mcp"`)
	})
	t.Run("clone, commit and push through the gate", func(t *testing.T) {
		runAsNode(t, g, "git", "clone", "-q", "git://upstream.test/repo.git", "/home/node/clone")
		runAsNode(t, g, "git", "-C", "/home/node/clone", "commit", "-q", "--allow-empty", "-m", "from the agent")
		runAsNode(t, g, "git", "-C", "/home/node/clone", "push", "-q", "origin", "HEAD:main")
		up := eng.Guest(upstream)
		assert.Equal(t, "from the agent", run(t, up, "git", "--git-dir", "/srv/repo.git", "log", "-1", "--format=%s", "main"))
		// A forced push that rewrites main is refused.
		runAsNode(t, g, "git", "-C", "/home/node/clone", "commit", "-q", "--amend", "--allow-empty", "-m", "rewritten")
		code, out := tryRun(t, g, "runuser", "-u", "node", "--", "env", "HOME=/home/node", "git", "-C", "/home/node/clone", "push", "-q", "--force", "origin", "HEAD:main")
		assert.NotEqual(t, 0, code, out)
		assert.Equal(t, "from the agent", run(t, up, "git", "--git-dir", "/srv/repo.git", "log", "-1", "--format=%s", "main"))
	})
	t.Run("egress allows, denies and is the only way out", func(t *testing.T) {
		upIP, err := eng.ContainerIP(ctx, upstream, p.Names.Outside)
		require.NoError(t, err)
		// Allowed through the proxy.
		out := runAsNode(t, g, "curl", "-sS", "-m", "10", "http://upstream.test/hello")
		assert.Contains(t, out, `"path":"/hello"`)
		// Denied through the proxy, with a body naming the host and the fix.
		code, out := tryRun(t, g, "curl", "-sS", "-m", "10", "-w", "%{http_code}", "http://other.test/")
		assert.Equal(t, 0, code)
		assert.Contains(t, out, "403")
		assert.Contains(t, out, "other.test")
		// No direct route: the upstream's own address is unreachable
		// without the proxy.
		code, out = tryRun(t, g, "curl", "-sS", "-m", "5", "--noproxy", "*", "http://"+upIP+"/")
		assert.NotEqual(t, 0, code, out)
		code, out = tryRun(t, g, "nc", "-z", "-w", "3", upIP, "9418")
		assert.NotEqual(t, 0, code, out)
	})
	t.Run("route: TLS verified against the bottle CA, token injected", func(t *testing.T) {
		// No -k: curl verifies egress's certificate for api.test against
		// the trust store the ca step updated. The agent's own header is
		// replaced by the injected one. The upstream echoes it; egress
		// masks the token in the echo, so the mask standing where the
		// token was proves the upstream received it.
		out := runAsNode(t, g, "curl", "-sS", "-m", "10", "-H", "Authorization: Bearer agent-made-up", "https://api.test/v1/echo")
		assert.Contains(t, out, `"path":"/v1/echo"`)
		assert.Contains(t, out, `"tls":true`)
		assert.Contains(t, out, `"Authorization":["Bearer `+strings.Repeat("*", len(token))+`"]`)
		assert.NotContains(t, out, token)
		assert.NotContains(t, out, "agent-made-up")
	})
	t.Run("root in the agent cannot forge packets", func(t *testing.T) {
		// CAP_NET_RAW is bit 13 of the bounding set.
		line := run(t, g, "grep", "^CapBnd:", "/proc/self/status")
		fields := strings.Fields(line)
		require.Len(t, fields, 2)
		bnd, err := strconv.ParseUint(fields[1], 16, 64)
		require.NoError(t, err)
		assert.Zero(t, bnd&(1<<13), "NET_RAW is dropped: %s", line)
		assert.NotZero(t, bnd&(1<<0), "CHOWN is kept for provisioning: %s", line)
	})
	t.Run("the token never enters the agent", func(t *testing.T) {
		env := run(t, g, "sh", "-c", "cat /proc/*/environ | tr '\\0' '\\n'")
		assert.NotContains(t, env, token)
		code, _ := tryRun(t, g, "grep", "-rqsF", token, "/home", "/etc", "/tmp", "/var", "/usr/local", "/root")
		assert.Equal(t, 1, code, "grep exits 1 when nothing matches")
	})

	require.NoError(t, RemoveSlug(ctx, o.Engine, nil, o.StateRoot, slug))
	requireNothingLeft(t, o.Engine, o.StateRoot, slug)
}

func TestDockerLaunchFailureLeavesNothing(t *testing.T) {
	o, eng := dockerOptions(t, &manifest.Manifest{
		Bottles: map[string]*manifest.Bottle{"dev": {Supervise: true, GitUser: &manifest.GitUser{Name: "x"}}},
		Agents:  map[string]*manifest.Agent{"demo": {Bottle: "dev"}},
	}, "demo", env{})
	_ = eng // the engine the options use; requireNothingLeft asks it
	var slug string
	o.OnPlanned = func(pl *plan.Plan) { slug = pl.Slug }
	boom := errors.New("injected failure")
	o.Wrap = func(s dag.Step) dag.Step {
		if s.ID() != steps.IDCA {
			return s
		}
		return hook{s, func(ctx context.Context) error { return boom }}
	}
	removeAtEnd(t, o, &slug)
	_, res, err := Run(context.Background(), o)
	require.Error(t, err)
	var se *dag.StepError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, steps.IDCA, se.Step)
	assert.ErrorIs(t, err, boom)
	require.NotNil(t, res)
	requireNothingLeft(t, o.Engine, o.StateRoot, slug)
}
