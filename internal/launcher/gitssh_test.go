package launcher

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/dag"
	"github.com/bot-bottle/bot-bottle/internal/plan"
	"github.com/bot-bottle/bot-bottle/manifest"
	"github.com/bot-bottle/bot-bottle/steps"
)

// The git gate scenario: a bare upstream served over ssh by an
// sshd container of the test's own, reached with a generated key that only
// the gate holds. From the agent: clone by the upstream URL, commit, push,
// see it land upstream; a forced push to main is refused; the key is
// nowhere in the agent.
func TestGitGateRelaysToAnSSHUpstream(t *testing.T) {
	keyDir := t.TempDir()
	key := filepath.Join(keyDir, "id_ed25519")
	out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bot-bottle-test", "-f", key).CombinedOutput()
	require.NoError(t, err, "%s", out)
	m := &manifest.Manifest{
		Bottles: map[string]*manifest.Bottle{"dev": {
			Git:     []manifest.GitEntry{{Name: "proj", Upstream: "ssh://root@upstream-ssh.test/srv/proj.git", IdentityFile: key}},
			GitUser: &manifest.GitUser{Name: "Dev Bot", Email: "dev@example.com"},
		}},
		Agents: map[string]*manifest.Agent{"demo": {Bottle: "dev"}},
	}
	o, eng := dockerOptions(t, m, "demo", env{})
	ctx := context.Background()

	testNet := testNetwork(t, eng, "bbt-sshnet")
	sshd := server(t, eng, testNet, nil, "sleep", "infinity")
	up := eng.Guest(sshd)
	sshUpstream(t, up, key+".pub")

	var slug string
	var p *plan.Plan
	o.OnPlanned = func(pl *plan.Plan) { p, slug = pl, pl.Slug }
	o.Wrap = func(s dag.Step) dag.Step {
		if s.ID() != steps.IDSidecarGitGate {
			return s
		}
		return hook{s, func(ctx context.Context) error { return connect(ctx, eng, sshd, p.Names.Outside, "upstream-ssh.test") }}
	}
	removeAtEnd(t, o, &slug)
	launched, _, err := Run(ctx, o)
	require.NoError(t, err)
	g := eng.Guest(launched.Plan.Names.Agent)

	runAsNode(t, g, "git", "clone", "-q", "ssh://root@upstream-ssh.test/srv/proj.git", "/home/node/proj")
	assert.Equal(t, "seed", runAsNode(t, g, "git", "-C", "/home/node/proj", "log", "-1", "--format=%s"))
	runAsNode(t, g, "git", "-C", "/home/node/proj", "commit", "-q", "--allow-empty", "-m", "over ssh")
	runAsNode(t, g, "git", "-C", "/home/node/proj", "push", "-q", "origin", "HEAD:main")
	assert.Equal(t, "over ssh", run(t, up, "git", "--git-dir", "/srv/proj.git", "log", "-1", "--format=%s", "main"))

	runAsNode(t, g, "git", "-C", "/home/node/proj", "reset", "-q", "--hard", "HEAD~1")
	runAsNode(t, g, "git", "-C", "/home/node/proj", "commit", "-q", "--allow-empty", "-m", "rewrite history")
	code, msg := tryRun(t, g, "runuser", "-u", "node", "--", "env", "HOME=/home/node", "git", "-C", "/home/node/proj", "push", "--force", "origin", "HEAD:main")
	assert.NotEqual(t, 0, code, msg)
	assert.Equal(t, "over ssh", run(t, up, "git", "--git-dir", "/srv/proj.git", "log", "-1", "--format=%s", "main"), "the upstream kept its history")

	// The key is in no file of the agent and in no process environment.
	keyBytes, err := os.ReadFile(key)
	require.NoError(t, err)
	// The last base64 line holds private key bytes; the first is a header
	// every unencrypted ed25519 key shares.
	lines := strings.Split(strings.TrimSpace(string(keyBytes)), "\n")
	secretLine := lines[len(lines)-2]
	code, where := tryRun(t, g, "grep", "-rlsF", "--exclude-dir=proc", "--exclude-dir=sys", "--exclude-dir=dev", secretLine, "/")
	assert.Equal(t, 1, code, "grep exits 1 when the key is nowhere in the agent; found in %s", where)
	code, _ = tryRun(t, g, "sh", "-c", `cat /proc/*/environ | tr '\0' '\n' | grep -qF "$1"`, "sh", secretLine)
	assert.Equal(t, 1, code)
	// Negative control: the same grep finds the key where it is, in the gate.
	code, _ = tryRun(t, eng.Guest(launched.Plan.Names.GitGate), "grep", "-rqsF", secretLine, "/etc/bot-bottle/keys")
	assert.Equal(t, 0, code, "the scan would have found the key")
}
