package gitgate

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/backends/docker"
	"github.com/bot-bottle/bot-bottle/internal/testenv"
	"github.com/bot-bottle/bot-bottle/internal/testskip"
)

// sshUpstream is an sshd container of the test's own, from the base image,
// holding a bare repository /srv/proj.git with one commit on main. Its
// port 22 is published on host loopback only.
type sshUpstream struct {
	e    *docker.Engine
	id   string
	port int
	key  string // private key path on the host
}

func newSSHUpstream(t *testing.T) *sshUpstream {
	t.Helper()
	e := testenv.RequireDocker(t)
	base := testenv.BaseImage(t)
	labels := testenv.Labels(t)
	testenv.Cleanup(t, e, labels)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	dir := t.TempDir()
	key := filepath.Join(dir, "id_ed25519")
	out, err := exec.CommandContext(ctx, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "gate-test", "-f", key).CombinedOutput()
	require.NoError(t, err, string(out))

	id, err := e.CreateContainer(ctx, backends.ContainerSpec{
		Name:            testenv.Name("gitgate-sshd"),
		Image:           base,
		Cmd:             []string{"sleep", "infinity"},
		Init:            true,
		Labels:          labels,
		PublishLoopback: []int{22},
	})
	require.NoError(t, err)
	require.NoError(t, e.StartContainer(ctx, id))
	run := func(argv ...string) string {
		t.Helper()
		res, err := e.Exec(ctx, id, backends.ExecRequest{Argv: argv})
		require.NoError(t, err, "%v: %s", argv, res.Stderr)
		return res.Stdout
	}
	run("ssh-keygen", "-A")
	run("mkdir", "-p", "/run/sshd", "/root/.ssh", "/tmp/seed")
	run("chmod", "700", "/root/.ssh")
	require.NoError(t, e.CopyFile(ctx, id, key+".pub", "/root/.ssh/authorized_keys"))
	run("chmod", "600", "/root/.ssh/authorized_keys")
	run("git", "init", "--bare", "-b", "main", "/srv/proj.git")
	readme := filepath.Join(dir, "README")
	require.NoError(t, os.WriteFile(readme, []byte("over ssh\n"), 0o644))
	require.NoError(t, e.CopyFile(ctx, id, readme, "/tmp/seed/README"))
	g := []string{"git", "-C", "/tmp/seed", "-c", "user.name=Seed", "-c", "user.email=seed@example.test"}
	run("git", "init", "-b", "main", "/tmp/seed")
	run(append(g, "add", "README")...)
	run(append(g, "commit", "-m", "seed")...)
	run(append(g, "push", "/srv/proj.git", "main")...)
	run("/usr/sbin/sshd", "-o", "PasswordAuthentication=no")

	port, err := e.PublishedPort(ctx, id, 22)
	require.NoError(t, err)
	waitSSHBanner(t, port)
	return &sshUpstream{e: e, id: id, port: port, key: key}
}

func waitSSHBanner(t *testing.T, port int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			line, _ := bufio.NewReader(c).ReadString('\n')
			_ = c.Close()
			if strings.HasPrefix(line, "SSH-") {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("sshd on 127.0.0.1:%d did not answer", port)
}

func (u *sshUpstream) rev(t *testing.T, ref string) string {
	res, err := u.e.Exec(context.Background(), u.id, backends.ExecRequest{Argv: []string{"git", "-C", "/srv/proj.git", "rev-parse", ref}})
	require.NoError(t, err, res.Stderr)
	return strings.TrimSpace(res.Stdout)
}

func TestGateOverSSHUpstream(t *testing.T) {
	testskip.Short(t, "needs Docker and the base image")
	up := newSSHUpstream(t)
	root := t.TempDir()
	knownHosts := filepath.Join(root, "known_hosts")
	cfg := Config{
		Listen:   "127.0.0.1:0",
		BasePath: filepath.Join(root, "mirrors"),
		Repos: []Repo{{
			Name:         "proj",
			Upstream:     fmt.Sprintf("ssh://root@127.0.0.1:%d/srv/proj.git", up.port),
			IdentityFile: up.key,
		}},
		SSHKnownHostsFile:        knownHosts,
		SSHStrictHostKeyChecking: StrictAcceptNew,
	}
	require.NoError(t, os.MkdirAll(cfg.BasePath, 0o755))
	srv, err := New(cfg, Options{Logger: slog.New(slog.NewJSONHandler(os.Stderr, nil)), Self: os.Args[0]})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.NoError(t, srv.Start(ctx))
	defer func() { _ = srv.Shutdown(context.Background()) }()

	kh, err := os.ReadFile(knownHosts)
	require.NoError(t, err)
	assert.Contains(t, string(kh), "ssh-ed25519", "accept-new recorded the host key")

	work := filepath.Join(root, "work")
	gitRun(t, root, false, "clone", "git://"+srv.Addr()+"/proj.git", work)
	assert.Equal(t, up.rev(t, "main"), revParse(t, work, "HEAD"))
	commitFile(t, work, "ssh.txt", "pushed over ssh\n", "via the gate")
	out, _ := gitRun(t, work, false, "push", "origin", "main")
	assert.Contains(t, out, "pushed to upstream proj")
	assert.Equal(t, revParse(t, work, "HEAD"), up.rev(t, "main"))

	// With a key the upstream does not accept, the gate fails to start
	// and says why without printing the key.
	other := filepath.Join(root, "other_key")
	o, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other).CombinedOutput()
	require.NoError(t, err, string(o))
	bad := cfg
	bad.BasePath = filepath.Join(root, "mirrors2")
	bad.Repos = []Repo{{Name: "proj", Upstream: cfg.Repos[0].Upstream, IdentityFile: other}}
	require.NoError(t, os.MkdirAll(bad.BasePath, 0o755))
	srv2, err := New(bad, Options{Logger: slog.New(slog.NewJSONHandler(os.Stderr, nil)), Self: os.Args[0]})
	require.NoError(t, err)
	err = srv2.Start(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Permission denied")
	keyPEM, _ := os.ReadFile(other)
	assert.NotContains(t, err.Error(), strings.TrimSpace(string(keyPEM)))
}
