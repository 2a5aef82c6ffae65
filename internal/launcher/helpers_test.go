package launcher

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/backends/docker"
	"github.com/bot-bottle/bot-bottle/internal/plan"
	"github.com/bot-bottle/bot-bottle/internal/testenv"
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
		Mounts:     []backends.Mount{{Source: testenv.GoBinary(t, "./internal/testenv/testserver"), Target: "/testserver", ReadOnly: true}},
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
