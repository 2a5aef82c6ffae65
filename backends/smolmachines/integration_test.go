package smolmachines_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/backends/smolmachines"
	"github.com/bot-bottle/bot-bottle/backends/smolmachines/smolmachinestest"
	"github.com/bot-bottle/bot-bottle/dag"
	"github.com/bot-bottle/bot-bottle/dag/dagtest"
	"github.com/bot-bottle/bot-bottle/internal/images"
	"github.com/bot-bottle/bot-bottle/internal/testenv"
	"github.com/bot-bottle/bot-bottle/internal/testskip"
)

// testTimeout bounds each integration test.
const testTimeout = 3 * time.Minute

var agentTar struct {
	once sync.Once
	ref  string
	path string
	err  error
}

// agentImageTar builds the stub agent image (once per process) and saves
// it as the tar smolvm boots, in a cache shared by test runs.
func agentImageTar(t *testing.T) (ref, tarPath string) {
	t.Helper()
	skipShort(t)
	e := testenv.RequireDocker(t)
	b := testenv.Builder(t)
	agentTar.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		defer cancel()
		agentTar.ref, agentTar.err = b.EnsureAgent(ctx, images.FlavourStub)
		if agentTar.err != nil {
			return
		}
		cache := filepath.Join(os.TempDir(), "bot-bottle-smolvm-test-cache")
		agentTar.path, agentTar.err = smolmachines.SaveImage(ctx, e.Client(), agentTar.ref, cache)
		if agentTar.err == nil {
			pruneOtherTars(cache, agentTar.path)
		}
	})
	require.NoError(t, agentTar.err)
	return agentTar.ref, agentTar.path
}

// skipShort skips the tests that need the Docker Engine under -short
// (`make unit`).
func skipShort(t *testing.T) {
	t.Helper()
	testskip.Short(t, "integration test: needs the Docker Engine")
}

// pruneOtherTars keeps the test cache to the current agent image: the tar
// and lock of any other image ID go.
func pruneOtherTars(dir, keep string) {
	id := strings.TrimSuffix(filepath.Base(keep), ".tar")
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), id) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// simCLI returns a CLI on a fresh simulator, and the simulator.
func simCLI(t *testing.T, extraEnv ...string) (*smolmachines.CLI, *smolmachinestest.Sim, *client.Client) {
	t.Helper()
	skipShort(t)
	api := testenv.RequireDocker(t).Client()
	sim := smolmachinestest.New(t, api, extraEnv...)
	cli := smolmachines.NewCLI(sim.Bin)
	cli.Env = sim.Env
	return cli, sim, api
}

// createStarted creates and starts a machine from the agent image, deleted
// when the test ends.
func createStarted(t *testing.T, ctx context.Context, cli *smolmachines.CLI, name string) {
	t.Helper()
	_, tarPath := agentImageTar(t)
	labels := testenv.Labels(t)
	labels[backends.LabelSlug] = strings.TrimPrefix(name, smolmachines.NamePrefix)
	labels[backends.LabelBackend] = "smolmachines"
	require.NoError(t, cli.Create(ctx, smolmachines.MachineSpec{Name: name, ImageTar: tarPath, Labels: labels}))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		assert.NoError(t, cli.Delete(ctx, name))
	})
	require.NoError(t, cli.Start(ctx, name))
}

func TestSaveImageFromEngine(t *testing.T) {
	ref, _ := agentImageTar(t)
	api := testenv.RequireDocker(t).Client()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	dir := t.TempDir()

	p, err := smolmachines.SaveImage(ctx, api, ref, dir)
	require.NoError(t, err)
	insp, err := api.ImageInspect(ctx, ref)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, strings.TrimPrefix(insp.ID, "sha256:")+".tar"), p)
	tags := manifestTags(t, p)
	assert.Contains(t, tags, ref, "the tar names the image by its tag")

	st1, err := os.Stat(p)
	require.NoError(t, err)
	start := time.Now()
	p2, err := smolmachines.SaveImage(ctx, api, ref, dir)
	require.NoError(t, err)
	assert.Equal(t, p, p2)
	st2, err := os.Stat(p2)
	require.NoError(t, err)
	assert.Equal(t, st1.ModTime(), st2.ModTime(), "served from the cache, not exported again")
	assert.Less(t, time.Since(start), 5*time.Second)
}

func manifestTags(t *testing.T, tarPath string) []string {
	t.Helper()
	f, err := os.Open(tarPath)
	require.NoError(t, err)
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		require.NoError(t, err, "manifest.json not found")
		if hdr.Name != "manifest.json" {
			continue
		}
		b, err := io.ReadAll(tr)
		require.NoError(t, err)
		var ms []struct{ RepoTags []string }
		require.NoError(t, json.Unmarshal(b, &ms))
		require.Len(t, ms, 1)
		return ms[0].RepoTags
	}
}

// TestMachineRoundTrip drives a machine through its whole life on the
// simulator: create, start, exec, cp, CopyDir, ls/status, stop, delete.
func TestMachineRoundTrip(t *testing.T) {
	cli, sim, api := simCLI(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	_, tarPath := agentImageTar(t)
	name := testenv.Name("bot-bottle-it")
	labels := testenv.Labels(t)
	labels[backends.LabelSlug] = strings.TrimPrefix(name, smolmachines.NamePrefix)
	labels[backends.LabelRole] = "machine"
	spec := smolmachines.MachineSpec{Name: name, ImageTar: tarPath, Env: []string{"BOTTLE_GREETING=hi there"}, Labels: labels}

	require.NoError(t, cli.Create(ctx, spec))
	t.Cleanup(func() { _ = cli.Delete(context.Background(), name) })
	info, err := cli.Status(ctx, name)
	require.NoError(t, err)
	assert.Equal(t, smolmachines.StateCreated, info.State)
	assert.Equal(t, labels, info.Labels)

	var cliErr *smolmachines.CLIError
	err = cli.Create(ctx, spec)
	require.ErrorAs(t, err, &cliErr)
	assert.Contains(t, cliErr.Message(), "already exists")

	m := smolmachines.NewMachine(cli, name)
	_, err = m.Exec(ctx, backends.ExecRequest{Argv: []string{"true"}})
	require.ErrorAs(t, err, &cliErr, "exec before start")
	assert.True(t, cliErr.NotRunning())

	require.NoError(t, cli.Start(ctx, name))
	require.NoError(t, cli.Start(ctx, name), "starting a running machine succeeds")
	info, err = cli.Status(ctx, name)
	require.NoError(t, err)
	assert.Equal(t, smolmachines.StateRunning, info.State)
	assert.Positive(t, info.PID)

	t.Run("exec", func(t *testing.T) {
		res, err := m.Exec(ctx, backends.ExecRequest{
			Argv:    []string{"sh", "-c", `printf '%s|%s|%s|%s' "$(id -u)" "$PWD" "$FOO" "$BOTTLE_GREETING"`},
			Env:     []string{"FOO=a b;c"},
			Workdir: "/tmp",
		})
		require.NoError(t, err)
		assert.Equal(t, "0|/tmp|a b;c|hi there", res.Stdout)

		res, err = m.Exec(ctx, backends.ExecRequest{Argv: []string{"id", "-un"}, User: "node"})
		require.NoError(t, err)
		assert.Equal(t, "node\n", res.Stdout)

		res, err = m.Exec(ctx, backends.ExecRequest{Argv: []string{"cat"}, Stdin: strings.NewReader("through stdin")})
		require.NoError(t, err)
		assert.Equal(t, "through stdin", res.Stdout)

		res, err = m.Exec(ctx, backends.ExecRequest{Argv: []string{"sh", "-c", "echo out; echo oops >&2; exit 3"}})
		var exitErr *backends.ExitError
		require.ErrorAs(t, err, &exitErr)
		assert.Equal(t, 3, exitErr.Result.ExitCode)
		assert.Equal(t, backends.ExecResult{ExitCode: 3, Stdout: "out\n", Stderr: "oops\n"}, res)
		assert.False(t, smolmachines.IsWarmupRace(err))
	})

	t.Run("attach streams stdio and passes the exit code", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		code, err := m.Attach(ctx, backends.ExecRequest{
			Argv: []string{"sh", "-c", `cat; echo " as $(id -un)"; echo done >&2; exit 5`}, User: "node",
		}, strings.NewReader("typed"), &stdout, &stderr, false)
		require.NoError(t, err)
		assert.Equal(t, 5, code)
		assert.Equal(t, "typed as node\n", stdout.String())
		assert.Equal(t, "done\n", stderr.String())
	})

	t.Run("guest loopback is host loopback", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer l.Close()
		go func() {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("hello from the host"))
			c.Close()
		}()
		port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
		res, err := m.Exec(ctx, backends.ExecRequest{
			Argv: []string{"bash", "-c", `exec 3<>/dev/tcp/127.0.0.1/"$1" && timeout 10 cat <&3`, "bash", port},
		})
		require.NoError(t, err, res.Stderr)
		assert.Equal(t, "hello from the host", res.Stdout)
	})

	t.Run("CopyFile", func(t *testing.T) {
		host := filepath.Join(t.TempDir(), "prompt.txt")
		require.NoError(t, os.WriteFile(host, []byte("You are helpful."), 0o600))
		require.NoError(t, m.CopyFile(ctx, host, "/home/node/new/dir/prompt.txt"))
		res, err := m.Exec(ctx, backends.ExecRequest{Argv: []string{"sh", "-c", `stat -c '%U:%G' "$1" && cat "$1"`, "sh", "/home/node/new/dir/prompt.txt"}})
		require.NoError(t, err, res.Stderr)
		assert.Equal(t, "root:root\nYou are helpful.", res.Stdout)

		err = m.CopyFile(ctx, host, "/home/node/new") // a directory is in the way
		require.ErrorAs(t, err, &cliErr)
	})

	t.Run("CopyDir", func(t *testing.T) {
		src := t.TempDir()
		require.NoError(t, os.MkdirAll(filepath.Join(src, "refs", "heads"), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(src, "HEAD"), []byte("ref: refs/heads/main\n"), 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(src, "refs", "heads", "main"), []byte("abc\n"), 0o600))
		require.NoError(t, os.Symlink("refs/heads/main", filepath.Join(src, "link")))

		require.NoError(t, m.CopyDir(ctx, src, "/home/node/workspace/.git"))
		res, err := m.Exec(ctx, backends.ExecRequest{
			Argv:    []string{"sh", "-c", `cat HEAD refs/heads/main && readlink link && stat -c '%a %U' refs/heads/main && ls /tmp | grep -c '^bot-bottle-.*\.tar$' || true`},
			Workdir: "/home/node/workspace/.git",
		})
		require.NoError(t, err, res.Stderr)
		assert.Equal(t, "ref: refs/heads/main\nabc\nrefs/heads/main\n600 root\n0\n", res.Stdout)
	})

	t.Run("ls and Resources find it by label", func(t *testing.T) {
		infos, err := cli.List(ctx)
		require.NoError(t, err)
		require.Len(t, infos, 1)
		assert.Equal(t, name, infos[0].Name)
		rs, err := cli.Resources(ctx, backends.Labels{backends.LabelSlug: labels[backends.LabelSlug]})
		require.NoError(t, err)
		require.Len(t, rs, 1)
		assert.Equal(t, "machine", rs[0].Kind)
		assert.Equal(t, name, rs[0].Name)
		assert.Equal(t, "running", rs[0].State)
	})

	t.Run("delete without -f cancels", func(t *testing.T) {
		cmd := exec.CommandContext(ctx, sim.Bin, "machine", "delete", "--name", name)
		cmd.Env = append(os.Environ(), sim.Env...)
		var stdout bytes.Buffer
		cmd.Stdout = &stdout
		require.NoError(t, cmd.Run(), "exits 0")
		assert.Equal(t, "Cancelled\n", stdout.String())
		info, err := cli.Status(ctx, name)
		require.NoError(t, err, "still there")
		assert.Equal(t, smolmachines.StateRunning, info.State)
	})

	require.NoError(t, cli.Stop(ctx, name))
	require.NoError(t, cli.Stop(ctx, name), "stop is idempotent")
	info, err = cli.Status(ctx, name)
	require.NoError(t, err)
	assert.Equal(t, smolmachines.StateStopped, info.State)
	_, err = m.Exec(ctx, backends.ExecRequest{Argv: []string{"true"}})
	require.ErrorAs(t, err, &cliErr)
	assert.True(t, cliErr.NotRunning())
	_, err = m.Attach(ctx, backends.ExecRequest{Argv: []string{"true"}}, nil, io.Discard, io.Discard, false)
	require.ErrorAs(t, err, &cliErr)
	assert.True(t, cliErr.NotRunning())

	// A restart keeps the machine's files, as a VM's disk would.
	require.NoError(t, cli.Start(ctx, name))
	res, err := m.Exec(ctx, backends.ExecRequest{Argv: []string{"cat", "/home/node/new/dir/prompt.txt"}})
	require.NoError(t, err)
	assert.Equal(t, "You are helpful.", res.Stdout)

	require.NoError(t, cli.Delete(ctx, name))
	_, err = cli.Status(ctx, name)
	assert.ErrorIs(t, err, backends.ErrNotFound)
	require.NoError(t, cli.Delete(ctx, name), "deleting a missing machine succeeds")
	_, err = api.ContainerInspect(ctx, "smolvmsim-"+name, client.ContainerInspectOptions{})
	assert.True(t, cerrdefs.IsNotFound(err), "the machine's container is gone: %v", err)
	_, err = m.Exec(ctx, backends.ExecRequest{Argv: []string{"true"}})
	require.ErrorAs(t, err, &cliErr)
	assert.True(t, cliErr.NotFound())
}

// TestRaceInjectionWindow: with P=1, every exec and cp within the window
// after start is killed (137) and classified as the warm-up race; after the
// window they succeed.
func TestRaceInjectionWindow(t *testing.T) {
	const window = 3 * time.Second
	cli, sim, _ := simCLI(t, "SMOLVM_SIM_RACE_P=1", "SMOLVM_SIM_RACE_MS="+strconv.Itoa(int(window.Milliseconds())), "SMOLVM_SIM_SEED=7")
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	name := testenv.Name("bot-bottle-race")
	// The simulator's window opens somewhere between these two instants.
	beforeStart := time.Now()
	createStarted(t, ctx, cli, name)
	afterStart := time.Now()
	m := smolmachines.NewMachine(cli, name)

	_, err := m.Exec(ctx, backends.ExecRequest{Argv: []string{"true"}})
	var exitErr *backends.ExitError
	require.ErrorAs(t, err, &exitErr)
	assert.Equal(t, 137, exitErr.Result.ExitCode)
	assert.True(t, smolmachines.IsWarmupRace(err))

	host := filepath.Join(t.TempDir(), "f")
	require.NoError(t, os.WriteFile(host, []byte("x"), 0o644))
	err = m.CopyFile(ctx, host, "/tmp/f")
	var cliErr *smolmachines.CLIError
	require.ErrorAs(t, err, &cliErr)
	assert.Equal(t, 137, cliErr.ExitCode)
	assert.True(t, smolmachines.IsWarmupRace(err))
	require.Less(t, time.Since(beforeStart), window, "the machine was too slow to test inside the window")

	time.Sleep(time.Until(afterStart.Add(window + 100*time.Millisecond)))
	_, err = m.Exec(ctx, backends.ExecRequest{Argv: []string{"true"}})
	require.NoError(t, err)
	require.NoError(t, m.CopyFile(ctx, host, "/tmp/f"))

	var races []string
	for _, inv := range sim.Log(t) {
		if inv.Machine == name && (inv.Subcommand() == "exec" || inv.Subcommand() == "cp") {
			races = append(races, inv.Subcommand()+" "+strconv.FormatBool(inv.Race)+" "+strconv.Itoa(inv.Exit))
		}
	}
	assert.Equal(t, []string{"exec true 137", "cp true 137", "exec false 0", "cp false 0"}, races)
}

// execStep is a provisioning-like step: one exec through the Machine,
// retried on the warm-up race.
type execStep struct {
	m    *smolmachines.Machine
	argv []string
}

func (s execStep) ID() string                    { return "provision-probe" }
func (s execStep) Deps() []string                { return nil }
func (s execStep) RetryPolicy() *dag.RetryPolicy { return smolmachines.WarmupRetryPolicy() }
func (s execStep) Run(ctx context.Context) error {
	_, err := s.m.Exec(ctx, backends.ExecRequest{Argv: s.argv})
	return err
}

func runProbe(t *testing.T, env ...string) (*dag.Result, error, *dagtest.EventLog, *dagtest.FakeClock, []smolmachinestest.Invocation) {
	t.Helper()
	cli, sim, _ := simCLI(t, env...)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	// A fixed name keeps the race draws, which depend on the machine
	// name, the same from run to run.
	const name = "bot-bottle-race-dag"
	createStarted(t, ctx, cli, name)
	g, err := dag.New(execStep{m: smolmachines.NewMachine(cli, name), argv: []string{"touch", "/tmp/probed"}})
	require.NoError(t, err)
	events := &dagtest.EventLog{}
	clock := dagtest.NewFakeClock(time.Unix(0, 0))
	res, err := g.Execute(ctx, dag.Options{
		Observers: []dag.Observer{events},
		Clock:     clock,
		Rand:      func() float64 { return 0.5 },
	})
	var execs []smolmachinestest.Invocation
	for _, inv := range sim.Log(t) {
		if inv.Machine == name && inv.Subcommand() == "exec" {
			execs = append(execs, inv)
		}
	}
	return res, err, events, clock, execs
}

// TestWarmupRetryThroughDAG: at P=0.5 (seed 8 makes the first two execs
// lose the race) the step succeeds on its third attempt, and the executor
// reports the two retries.
func TestWarmupRetryThroughDAG(t *testing.T) {
	res, err, events, clock, execs := runProbe(t, "SMOLVM_SIM_RACE_P=0.5", "SMOLVM_SIM_SEED=8")
	require.NoError(t, err)
	step, ok := res.Step("provision-probe")
	require.True(t, ok)
	assert.Equal(t, dag.OutcomeOK, step.Outcome)
	assert.Equal(t, 3, step.Attempts)
	retrying := events.Of(dag.EventRetrying, "provision-probe")
	require.Len(t, retrying, 2)
	for _, e := range retrying {
		assert.True(t, smolmachines.IsWarmupRace(e.Err), "%v", e.Err)
	}
	assert.Equal(t, []time.Duration{250 * time.Millisecond, 500 * time.Millisecond}, clock.Sleeps())
	require.Len(t, execs, 3)
	assert.Equal(t, []bool{true, true, false}, []bool{execs[0].Race, execs[1].Race, execs[2].Race})
	assert.Equal(t, 0, execs[2].Exit)
}

// TestWarmupRetryBudgetExhausted: at P=1 the step fails after the
// policy's six attempts, and the error names the step and keeps the class.
func TestWarmupRetryBudgetExhausted(t *testing.T) {
	res, err, events, _, execs := runProbe(t, "SMOLVM_SIM_RACE_P=1", "SMOLVM_SIM_SEED=8")
	require.Error(t, err)
	var stepErr *dag.StepError
	require.ErrorAs(t, err, &stepErr)
	assert.Equal(t, "provision-probe", stepErr.Step)
	assert.Equal(t, 6, stepErr.Attempts)
	assert.Contains(t, err.Error(), `step "provision-probe" failed after 6 attempts`)
	assert.True(t, smolmachines.IsWarmupRace(err))
	var exitErr *backends.ExitError
	require.ErrorAs(t, err, &exitErr)
	assert.Equal(t, 137, exitErr.Result.ExitCode)
	step, _ := res.Step("provision-probe")
	assert.Equal(t, dag.OutcomeFailed, step.Outcome)
	assert.Len(t, events.Of(dag.EventRetrying, "provision-probe"), 5)
	assert.Len(t, execs, 6)
	for _, e := range execs {
		assert.True(t, e.Race)
	}
}

// TestSimulatorLoadsImage: a machine whose image the engine does not have
// yet gets it loaded from the tar.
func TestSimulatorLoadsImage(t *testing.T) {
	cli, _, api := simCLI(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	// A one-file image made on the spot, saved, then removed from the
	// engine, so only the tar holds it.
	ref := "bot-bottle-smolvmsim-load:" + strings.TrimPrefix(testenv.Name("t"), "t-")
	var rootfs bytes.Buffer
	tw := tar.NewWriter(&rootfs)
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "hello", Mode: 0o644, Size: 2, Typeflag: tar.TypeReg}))
	_, err := tw.Write([]byte("hi"))
	require.NoError(t, err)
	require.NoError(t, tw.Close())
	imp, err := api.ImageImport(ctx, client.ImageImportSource{Source: &rootfs, SourceName: "-"}, ref, client.ImageImportOptions{})
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, imp)
	imp.Close()
	removeImage := func() {
		_, _ = api.ImageRemove(context.Background(), ref, client.ImageRemoveOptions{Force: true})
	}
	t.Cleanup(removeImage)
	tarPath, err := smolmachines.SaveImage(ctx, api, ref, t.TempDir())
	require.NoError(t, err)
	removeImage()
	_, err = api.ImageInspect(ctx, ref)
	require.True(t, cerrdefs.IsNotFound(err))

	name := testenv.Name("bot-bottle-load")
	require.NoError(t, cli.Create(ctx, smolmachines.MachineSpec{Name: name, ImageTar: tarPath}))
	t.Cleanup(func() { _ = cli.Delete(context.Background(), name) })
	_, err = api.ImageInspect(ctx, ref)
	assert.NoError(t, err, "create loaded the image")
}

func TestDeleteUnknownMachine(t *testing.T) {
	cli, _, _ := simCLI(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, cli.Delete(ctx, "bot-bottle-never-created"))
	_, err := cli.Status(ctx, "bot-bottle-never-created")
	require.True(t, errors.Is(err, backends.ErrNotFound), "%v", err)
}
