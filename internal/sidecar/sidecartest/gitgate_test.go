package sidecartest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/internal/sidecar/gitgate"
)

func hostGit(t *testing.T, dir string, allowFail bool, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", append([]string{"-c", "user.name=Agent", "-c", "user.email=agent@example.test"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir, "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil && !allowFail {
		t.Fatalf("git %v: %v\n%s", args, err, out.String())
	}
	return out.String(), err
}

// TestGitGateContainer: the gate in the sidecar image relays to an sshd
// upstream (a base-image container on the outside network) with a
// mounted identity; the agent (here the host, through the published git
// port) clones and pushes over git://, and a force push is refused.
func TestGitGateContainer(t *testing.T) {
	v := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	keys := t.TempDir()
	key := filepath.Join(keys, "id_ed25519")
	out, err := exec.CommandContext(ctx, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput()
	require.NoError(t, err, string(out))

	sshd := v.run(backends.ContainerSpec{
		Image: v.base, Init: true, Cmd: []string{"sleep", "infinity"},
		Networks: []backends.Attachment{{Network: v.outside, Aliases: []string{"upstream.example.test"}}},
	})
	exe := func(argv ...string) {
		t.Helper()
		res, err := v.e.Exec(ctx, sshd, backends.ExecRequest{Argv: argv})
		require.NoError(t, err, "%v: %s", argv, res.Stderr)
	}
	exe("ssh-keygen", "-A")
	exe("mkdir", "-p", "/run/sshd", "/root/.ssh")
	exe("chmod", "700", "/root/.ssh")
	require.NoError(t, v.e.CopyFile(ctx, sshd, key+".pub", "/root/.ssh/authorized_keys"))
	exe("chmod", "600", "/root/.ssh/authorized_keys")
	exe("git", "init", "--bare", "-b", "main", "/srv/proj.git")
	exe("git", "init", "-b", "main", "/tmp/seed")
	g := []string{"git", "-C", "/tmp/seed", "-c", "user.name=Seed", "-c", "user.email=seed@example.test"}
	exe(append(g, "commit", "--allow-empty", "-m", "seed")...)
	exe(append(g, "push", "/srv/proj.git", "main")...)
	exe("/usr/sbin/sshd", "-o", "PasswordAuthentication=no")

	base := t.TempDir()
	cfgDir := t.TempDir()
	writeJSON(t, cfgDir, "git-gate.json", gitgate.Config{
		Listen:                   ":9418",
		BasePath:                 "/srv/git",
		Repos:                    []gitgate.Repo{{Name: "proj", Upstream: "ssh://root@upstream.example.test/srv/proj.git", IdentityFile: "/keys/id_ed25519"}},
		SSHKnownHostsFile:        "/srv/git/known_hosts",
		SSHStrictHostKeyChecking: gitgate.StrictAcceptNew,
	})
	gate := v.run(backends.ContainerSpec{
		Image: v.sidecar, Init: true,
		Cmd: []string{"/usr/local/bin/bottle", "sidecar", "git-gate", "--config", "/config/git-gate.json"},
		Mounts: []backends.Mount{
			{Source: cfgDir, Target: "/config", ReadOnly: true},
			{Source: keys, Target: "/keys", ReadOnly: true},
			{Source: base, Target: "/srv/git"},
		},
		Networks:        []backends.Attachment{{Network: v.outside}, {Network: v.bundle, Aliases: []string{"git-gate"}}},
		PublishLoopback: []int{9418},
	})
	v.waitReady(gate)
	gateURL := "git://" + loopback(v.port(gate, 9418)) + "/proj.git"

	work := t.TempDir()
	hostGit(t, work, false, "clone", gateURL, "w")
	w := filepath.Join(work, "w")
	require.NoError(t, os.WriteFile(filepath.Join(w, "f.txt"), []byte("from the agent\n"), 0o644))
	hostGit(t, w, false, "add", "f.txt")
	hostGit(t, w, false, "commit", "-m", "agent work")
	out2, _ := hostGit(t, w, false, "push", "origin", "main")
	assert.Contains(t, out2, "pushed to upstream proj")
	head, _ := hostGit(t, w, false, "rev-parse", "HEAD")
	res, err := v.e.Exec(ctx, sshd, backends.ExecRequest{Argv: []string{"git", "-C", "/srv/proj.git", "rev-parse", "main"}})
	require.NoError(t, err)
	assert.Equal(t, strings.TrimSpace(head), strings.TrimSpace(res.Stdout))

	hostGit(t, w, false, "commit", "--amend", "-m", "rewritten")
	out3, err := hostGit(t, w, true, "push", "--force", "origin", "main")
	require.Error(t, err)
	assert.Contains(t, out3, "refusing a non-fast-forward")

	_, err = hostGit(t, work, true, "ls-remote", "git://"+loopback(v.port(gate, 9418))+"/other.git")
	assert.Error(t, err)
}
