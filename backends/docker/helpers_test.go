package docker_test

import (
	"context"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/backends/docker"
	"github.com/bot-bottle/bot-bottle/internal/testenv"
)

// serverPort is where test server containers listen.
const serverPort = 8080

// serverScript answers every TCP connection on port $1 with the line $2. It
// is constant; values travel as positional arguments.
const serverScript = `while :; do printf '%s\n' "$2" | nc -l -N -p "$1" >/dev/null 2>&1 || sleep 0.1; done`

// fixture is what most integration tests start from: an engine, the base
// image, labels unique to the test, and cleanup by those labels.
type fixture struct {
	e      *docker.Engine
	image  string
	labels backends.Labels
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	e := testenv.RequireDocker(t)
	img := testenv.BaseImage(t)
	labels := testenv.Labels(t)
	testenv.Cleanup(t, e, labels)
	return fixture{e: e, image: img, labels: labels}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// network creates an auto-subnet network carrying the test labels.
func (f fixture) network(t *testing.T, internal bool) (string, docker.NetworkAllocation) {
	t.Helper()
	name := testenv.Name("bbt-net")
	alloc, err := f.e.CreateNetworkAuto(ctxT(t), backends.NetworkSpec{Name: name, Internal: internal, Labels: f.labels}, netip.Prefix{})
	require.NoError(t, err)
	return name, alloc
}

// start creates and starts a container from the base image carrying the test
// labels; spec fields left empty get a sleeping main process.
func (f fixture) start(t *testing.T, spec backends.ContainerSpec) string {
	t.Helper()
	id := f.create(t, spec)
	require.NoError(t, f.e.StartContainer(ctxT(t), id))
	return id
}

func (f fixture) create(t *testing.T, spec backends.ContainerSpec) string {
	t.Helper()
	if spec.Name == "" {
		spec.Name = testenv.Name("bbt-c")
	}
	if spec.Image == "" {
		spec.Image = f.image
	}
	if spec.Cmd == nil && spec.Entrypoint == nil {
		spec.Cmd = []string{"sleep", "infinity"}
		spec.Init = true
	}
	labels := backends.Labels{}
	for k, v := range f.labels {
		labels[k] = v
	}
	for k, v := range spec.Labels {
		labels[k] = v
	}
	spec.Labels = labels
	id, err := f.e.CreateContainer(ctxT(t), spec)
	require.NoError(t, err)
	return id
}

// server starts a container answering reply on serverPort.
func (f fixture) server(t *testing.T, reply string, spec backends.ContainerSpec) string {
	t.Helper()
	spec.Entrypoint = []string{"/bin/sh", "-c", serverScript, "server"}
	spec.Cmd = []string{strconv.Itoa(serverPort), reply}
	spec.Init = true
	return f.start(t, spec)
}

// exec runs argv in a container and fails the test on any error.
func (f fixture) exec(t *testing.T, id string, argv ...string) backends.ExecResult {
	t.Helper()
	res, err := f.e.Exec(ctxT(t), id, backends.ExecRequest{Argv: argv})
	require.NoError(t, err, "%v: stdout=%q stderr=%q", argv, res.Stdout, res.Stderr)
	return res
}

// connectFrom reports what a connection from container id to addr:port
// reads back, or the error of the attempt (bounded by nc's own timeouts).
func (f fixture) connectFrom(t *testing.T, id, addr string, port int) (string, error) {
	t.Helper()
	res, err := f.e.Exec(ctxT(t), id, backends.ExecRequest{Argv: []string{"nc", "-w", "2", "-N", addr, strconv.Itoa(port)}, Stdin: strings.NewReader("")})
	return res.Stdout, err
}

// eventually retries fn (bounded) until it returns nil.
func eventually(t *testing.T, attempts int, pause time.Duration, fn func() error) {
	t.Helper()
	var err error
	for range attempts {
		if err = fn(); err == nil {
			return
		}
		time.Sleep(pause)
	}
	require.NoError(t, err, "still failing after %d attempts", attempts)
}
