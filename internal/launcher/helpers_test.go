package launcher

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/backends/docker"
	"github.com/bot-bottle/bot-bottle/backends/smolmachines"
	"github.com/bot-bottle/bot-bottle/backends/smolmachines/smolmachinestest"
	"github.com/bot-bottle/bot-bottle/internal/ca"
	"github.com/bot-bottle/bot-bottle/internal/plan"
	"github.com/bot-bottle/bot-bottle/internal/testenv"
	"github.com/bot-bottle/bot-bottle/internal/testskip"
	"github.com/bot-bottle/bot-bottle/manifest"
	"github.com/bot-bottle/bot-bottle/steps"
)

// fixedImages hands the launch images the test environment built.
type fixedImages struct{ agent, sidecar string }

func (f fixedImages) AgentImage(_ context.Context, override string) (string, error) {
	if override != "" {
		return override, nil
	}
	return f.agent, nil
}
func (f fixedImages) SidecarImage(context.Context) (string, error) { return f.sidecar, nil }

var _ steps.Images = fixedImages{}

// env is a fake host environment.
type env map[string]string

func (e env) get(k string) string { return e[k] }

// dockerOptions returns launch options on the real engine with the test
// images, a private state root and the given host environment.
func dockerOptions(t *testing.T, m *manifest.Manifest, agent string, e env) (Options, *docker.Engine) {
	t.Helper()
	eng := testenv.RequireDocker(t)
	agentRef, sidecarRef := testenv.Images(t)
	return Options{
		Manifest:  m,
		Agent:     agent,
		Backend:   plan.BackendDocker,
		Version:   "test",
		StateRoot: t.TempDir(),
		Getenv:    e.get,
		Home:      t.TempDir(),
		Engine:    &DockerEngine{Engine: eng},
		Images:    fixedImages{agentRef, sidecarRef},
	}, eng
}

// smolCacheRoot is the XDG_CACHE_HOME of smolmachines tests: the exported
// agent image tar lives under it (bot-bottle/smolvm), shared by every test
// and test process instead of being exported per test.
func smolCacheRoot() string { return filepath.Join(os.TempDir(), "bot-bottle-launcher-smolvm-cache") }

// smolImageCache is where smolmachines tests keep the agent image tar, as
// SaveImage lays it out under smolCacheRoot.
func smolImageCache() string { return filepath.Join(smolCacheRoot(), "bot-bottle", "smolvm") }

var pruneSmolCache sync.Once

// smolOptions returns launch options on the smolmachines backend: sidecars
// on the real engine, the agent in a machine of a fresh smolvm simulator
// (simEnv configures it, e.g. its warm-up race), the test images, a private
// state root and the given host environment.
func smolOptions(t *testing.T, m *manifest.Manifest, agent string, e env, simEnv ...string) (Options, *docker.Engine, *smolmachinestest.Sim) {
	t.Helper()
	testskip.Short(t, "integration test: launches a bottle")
	o, eng := dockerOptions(t, m, agent, e)
	sim := smolmachinestest.New(t, eng.Client(), simEnv...)
	cli := smolmachines.NewCLI(sim.Bin)
	cli.Env = sim.Env
	pruneSmolCache.Do(func() { pruneImageCache(t, eng, o.Images) })
	o.Backend = plan.BackendSmolmachines
	o.Machines = &SmolMachines{CLI: cli, Images: eng.Client(), CacheDir: smolImageCache()}
	return o, eng, sim
}

// pruneImageCache keeps the test image cache to the current agent image:
// tars of images rebuilt since would otherwise pile up.
func pruneImageCache(t *testing.T, eng *docker.Engine, imgs steps.Images) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ref, err := imgs.AgentImage(ctx, "")
	require.NoError(t, err)
	insp, err := eng.Client().ImageInspect(ctx, ref)
	require.NoError(t, err)
	keep := strings.TrimPrefix(insp.ID, "sha256:")
	entries, _ := os.ReadDir(smolImageCache())
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), keep) && !strings.HasPrefix(e.Name(), "."+keep) {
			_ = os.Remove(filepath.Join(smolImageCache(), e.Name()))
		}
	}
}

// removeAtEnd removes the bottle when the test ends, whatever happened.
func removeAtEnd(t *testing.T, o Options, slug *string) {
	t.Cleanup(func() {
		if *slug == "" {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		_ = RemoveSlug(ctx, o.Engine, o.Machines, o.StateRoot, *slug)
	})
}

// requireNothingLeft asserts that no container, network, volume or state
// dir of the slug exists.
func requireNothingLeft(t *testing.T, eng backends.Engine, stateRoot, slug string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := eng.List(ctx, backends.Labels{backends.LabelSlug: slug})
	require.NoError(t, err)
	require.Empty(t, res, "resources of %s left behind", slug)
	_, err = os.Stat(filepath.Join(stateRoot, slug))
	require.True(t, os.IsNotExist(err), "state dir of %s left behind", slug)
}

// run execs argv in the guest and returns trimmed stdout, failing the test
// on a non-zero exit.
func run(t *testing.T, g backends.Guest, argv ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := g.Exec(ctx, backends.ExecRequest{Argv: argv})
	require.NoError(t, err, "%v: stdout %q stderr %q", argv, res.Stdout, res.Stderr)
	return strings.TrimSpace(res.Stdout)
}

// runAsNode is run as the agent user, the way the agent runs.
func runAsNode(t *testing.T, g backends.Guest, argv ...string) string {
	t.Helper()
	return run(t, g, append([]string{"runuser", "-u", "node", "--", "env", "HOME=/home/node", "USER=node"}, argv...)...)
}

// tryRun execs argv and returns its exit code (-1 when it could not run).
func tryRun(t *testing.T, g backends.Guest, argv ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := g.Exec(ctx, backends.ExecRequest{Argv: argv})
	if err != nil && res.ExitCode == 0 {
		return -1, err.Error()
	}
	return res.ExitCode, res.Stdout + res.Stderr
}

// server starts a container of the test's own from the base image, on
// network with aliases, running argv (with the test server binary mounted
// at /testserver), and returns its name.
func server(t *testing.T, eng *docker.Engine, network string, aliases []string, argv ...string) string {
	t.Helper()
	return serverWithMounts(t, eng, network, aliases, nil, argv...)
}

// serverWithMounts is server with more bind mounts.
func serverWithMounts(t *testing.T, eng *docker.Engine, network string, aliases []string, mounts []backends.Mount, argv ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	labels := testenv.Labels(t)
	testenv.Cleanup(t, eng, labels)
	name := testenv.Name("bbt-upstream")
	_, err := eng.CreateContainer(ctx, backends.ContainerSpec{
		Name:       name,
		Image:      testenv.BaseImage(t),
		Entrypoint: argv,
		Labels:     labels,
		Networks:   []backends.Attachment{{Network: network, Aliases: aliases}},
		Mounts:     append([]backends.Mount{{Source: testenv.GoBinary(t, "./internal/testenv/testserver"), Target: "/testserver", ReadOnly: true}}, mounts...),
		Init:       true,
	})
	require.NoError(t, err)
	require.NoError(t, eng.StartContainer(ctx, name))
	return name
}

// gitInit makes a repository with one commit in a temp dir.
func gitInit(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, argv := range [][]string{
		{"git", "init", "-q", "-b", "main", dir},
		{"git", "-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "--allow-empty", "-m", "first"},
	} {
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		require.NoError(t, err, "%v: %s", argv, out)
	}
	return dir
}

// upstreamTLS writes a CA and a server certificate for hosts into a temp
// dir, returning the dir (cert.pem, key.pem inside) and the CA's path.
func upstreamTLS(t *testing.T, hosts ...string) (dir, caPath string) {
	t.Helper()
	dir = t.TempDir()
	caPath, keyPath, err := ca.Generate(t.TempDir(), "upstream test CA")
	require.NoError(t, err)
	pair, err := ca.Load(caPath, keyPath)
	require.NoError(t, err)
	leaf, err := ca.IssueServer(pair, hosts...)
	require.NoError(t, err)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Certificate[0]})
	keyDER, err := x509.MarshalPKCS8PrivateKey(leaf.PrivateKey)
	require.NoError(t, err)
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	require.NoError(t, os.WriteFile(filepath.Join(dir, "cert.pem"), certPEM, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "key.pem"), keyPEM, 0o644))
	return dir, caPath
}

// testNetwork creates a network of the test's own, removed when it ends.
func testNetwork(t *testing.T, eng *docker.Engine, prefix string) string {
	t.Helper()
	labels := testenv.Labels(t)
	testenv.Cleanup(t, eng, labels)
	name := testenv.Name(prefix)
	_, err := eng.CreateNetwork(context.Background(), backends.NetworkSpec{Name: name, Labels: labels})
	require.NoError(t, err)
	return name
}

// sshUpstream makes the container behind up an ssh git upstream: sshd
// taking the public key at pubKey for root, and /srv/proj.git with one
// commit on main.
func sshUpstream(t *testing.T, up backends.Guest, pubKey string) {
	t.Helper()
	run(t, up, "ssh-keygen", "-A")
	run(t, up, "mkdir", "-p", "-m", "700", "/run/sshd", "/root/.ssh")
	require.NoError(t, up.CopyFile(context.Background(), pubKey, "/root/.ssh/authorized_keys"))
	run(t, up, "chmod", "600", "/root/.ssh/authorized_keys")
	run(t, up, "git", "init", "-q", "--bare", "-b", "main", "/srv/proj.git")
	run(t, up, "git", "clone", "-q", "/srv/proj.git", "/tmp/seed")
	run(t, up, "git", "-C", "/tmp/seed", "-c", "user.name=up", "-c", "user.email=up@example.com", "commit", "-q", "--allow-empty", "-m", "seed")
	run(t, up, "git", "-C", "/tmp/seed", "push", "-q", "origin", "HEAD:main")
	run(t, up, "/usr/sbin/sshd", "-o", "PasswordAuthentication=no")
}
