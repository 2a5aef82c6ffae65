package docker_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/backends/docker"
	"github.com/bot-bottle/bot-bottle/internal/testenv"
)

// An internal network has no route out: a container on it cannot reach a
// server on another network, while a container beside that server can, and
// peers on the internal network still reach each other.
func TestInternalNetworkHasNoRouteOut(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := ctxT(t)
	extNet, _ := f.network(t, false)
	intNet, intAlloc := f.network(t, true)

	srv := f.server(t, "pong-ext", backends.ContainerSpec{Networks: []backends.Attachment{{Network: extNet}}})
	srvIP, err := f.e.ContainerIP(ctx, srv, extNet)
	require.NoError(t, err)
	peer := f.server(t, "pong-int", backends.ContainerSpec{Networks: []backends.Attachment{{Network: intNet, Aliases: []string{"peer"}}}})

	beside := f.start(t, backends.ContainerSpec{Networks: []backends.Attachment{{Network: extNet}}})
	inside := f.start(t, backends.ContainerSpec{Networks: []backends.Attachment{{Network: intNet}}})

	// Control: the server answers its own network.
	eventually(t, 50, 100*time.Millisecond, func() error {
		out, err := f.connectFrom(t, beside, srvIP, serverPort)
		if err != nil || strings.TrimSpace(out) != "pong-ext" {
			return fmt.Errorf("beside: %q %v", out, err)
		}
		return nil
	})
	eventually(t, 50, 100*time.Millisecond, func() error {
		out, err := f.connectFrom(t, inside, "peer", serverPort)
		if err != nil || strings.TrimSpace(out) != "pong-int" {
			return fmt.Errorf("peer: %q %v", out, err)
		}
		return nil
	})
	_ = peer

	routes := f.exec(t, inside, "ip", "-4", "route", "show")
	assert.Contains(t, routes.Stdout, intAlloc.Subnet.String())

	out, err := f.connectFrom(t, inside, srvIP, serverPort)
	require.Error(t, err, "the internal container reached %s: %q", srvIP, out)
	var exit *backends.ExitError
	require.ErrorAs(t, err, &exit)
	assert.NotZero(t, exit.Result.ExitCode)
	assert.Empty(t, out)
}

func TestPublishedPortIsOnLoopbackAndReachable(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := ctxT(t)
	netName, _ := f.network(t, false)
	srv := f.server(t, "hello-host", backends.ContainerSpec{
		Networks:        []backends.Attachment{{Network: netName}},
		PublishLoopback: []int{serverPort},
	})
	port, err := f.e.PublishedPort(ctx, srv, serverPort)
	require.NoError(t, err)
	assert.Positive(t, port)

	ins, err := f.e.Client().ContainerInspect(ctx, srv, client.ContainerInspectOptions{})
	require.NoError(t, err)
	for p, bs := range ins.Container.NetworkSettings.Ports {
		for _, b := range bs {
			assert.Equal(t, "127.0.0.1", b.HostIP.String(), "port %s must bind loopback only", p)
		}
	}

	eventually(t, 50, 100*time.Millisecond, func() error {
		conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 2*time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if strings.TrimSpace(line) != "hello-host" {
			return fmt.Errorf("got %q", line)
		}
		return nil
	})

	_, err = f.e.PublishedPort(ctx, srv, 9999)
	assert.Error(t, err, "an unpublished port")
}

func TestContainerSpecIsHonoured(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := ctxT(t)
	netA, allocA := f.network(t, true)
	netB, _ := f.network(t, true)
	fixedIP := allocA.Subnet.Addr().Next().Next().Next() // .3

	roDir, rwDir := t.TempDir(), t.TempDir()
	require.NoError(t, os.Chmod(rwDir, 0o777))
	require.NoError(t, os.WriteFile(filepath.Join(roDir, "in.txt"), []byte("from host"), 0o644))

	id := f.start(t, backends.ContainerSpec{
		Env:     []string{"BOTTLE_TEST=yes", "SPACED=a b  c"},
		User:    "65534:65534",
		Workdir: "/tmp",
		Labels:  backends.Labels{backends.LabelRole: "agent"},
		Networks: []backends.Attachment{
			{Network: netA, IP: fixedIP.String(), Aliases: []string{"alpha"}},
			{Network: netB, Aliases: []string{"beta"}},
		},
		Mounts: []backends.Mount{
			{Source: roDir, Target: "/ro", ReadOnly: true},
			{Source: rwDir, Target: "/rw"},
		},
		CapDrop:        []string{"ALL"},
		ReadOnlyRootfs: true,
	})

	ipA, err := f.e.ContainerIP(ctx, id, netA)
	require.NoError(t, err)
	assert.Equal(t, fixedIP.String(), ipA)
	ipB, err := f.e.ContainerIP(ctx, id, netB)
	require.NoError(t, err)
	_, err = f.e.ContainerIP(ctx, id, "bridge")
	assert.ErrorIs(t, err, backends.ErrNotFound, "not attached to the default bridge")

	// Exec inherits the container's user, workdir and environment.
	res := f.exec(t, id, "sh", "-c", `echo "$(id -u):$(id -g) $(pwd) $BOTTLE_TEST [$SPACED]"; cat /proc/1/comm; grep CapBnd /proc/self/status`)
	lines := strings.Split(strings.TrimSpace(res.Stdout), "\n")
	require.Len(t, lines, 3)
	assert.Equal(t, "65534:65534 /tmp yes [a b  c]", lines[0])
	assert.Equal(t, "docker-init", lines[1], "Init runs an init as PID 1")
	assert.Equal(t, "CapBnd:\t0000000000000000", lines[2], "every capability dropped")

	assert.Equal(t, "from host", f.exec(t, id, "cat", "/ro/in.txt").Stdout)
	_, err = f.e.Exec(ctx, id, backends.ExecRequest{Argv: []string{"touch", "/ro/new"}, User: "0"})
	assert.Error(t, err, "read-only bind")
	_, err = f.e.Exec(ctx, id, backends.ExecRequest{Argv: []string{"touch", "/etc/new"}, User: "0"})
	assert.Error(t, err, "read-only rootfs")
	f.exec(t, id, "sh", "-c", "echo written > /rw/out.txt")
	got, err := os.ReadFile(filepath.Join(rwDir, "out.txt"))
	require.NoError(t, err)
	assert.Equal(t, "written\n", string(got))

	// Aliases resolve for peers on each network.
	peerA := f.start(t, backends.ContainerSpec{Networks: []backends.Attachment{{Network: netA}}})
	assert.Equal(t, ipA, strings.Fields(f.exec(t, peerA, "getent", "hosts", "alpha").Stdout)[0])
	peerB := f.start(t, backends.ContainerSpec{Networks: []backends.Attachment{{Network: netB}}})
	assert.Equal(t, ipB, strings.Fields(f.exec(t, peerB, "getent", "hosts", "beta").Stdout)[0])

	rs, err := f.e.List(ctx, backends.Labels{backends.LabelRole: "agent", testenv.LabelTest: f.labels[testenv.LabelTest]})
	require.NoError(t, err)
	require.Len(t, rs, 1)
	assert.Equal(t, id, rs[0].ID)
	assert.Equal(t, "running", rs[0].State)
}

// A failed connection to a later network removes the half-made container.
func TestCreateContainerRollsBackOnConnectFailure(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := ctxT(t)
	netA, _ := f.network(t, true)
	name := testenv.Name("bbt-c")
	_, err := f.e.CreateContainer(ctx, backends.ContainerSpec{
		Name: name, Image: f.image, Cmd: []string{"true"}, Labels: f.labels,
		Networks: []backends.Attachment{{Network: netA}, {Network: testenv.Name("bbt-no-such-net")}},
	})
	require.ErrorIs(t, err, backends.ErrNotFound)
	_, err = f.e.State(ctx, name)
	assert.ErrorIs(t, err, backends.ErrNotFound, "the container was removed again")

	// A taken name is a conflict.
	f.create(t, backends.ContainerSpec{Name: name})
	_, err = f.e.CreateContainer(ctx, backends.ContainerSpec{Name: name, Image: f.image, Labels: f.labels})
	assert.ErrorIs(t, err, docker.ErrConflict)
}

func TestStopWaitLogsRemove(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := ctxT(t)

	done := f.start(t, backends.ContainerSpec{
		Entrypoint: []string{"/bin/sh", "-c", `echo to-stdout; echo to-stderr >&2; exit 7`},
	})
	code, err := f.e.Wait(ctx, done)
	require.NoError(t, err)
	assert.Equal(t, 7, code)
	logs, err := f.e.Logs(ctx, done)
	require.NoError(t, err)
	assert.Contains(t, logs, "to-stdout\n")
	assert.Contains(t, logs, "to-stderr\n")
	state, err := f.e.State(ctx, done)
	require.NoError(t, err)
	assert.Equal(t, "exited", state)

	sleeper := f.start(t, backends.ContainerSpec{})
	start := time.Now()
	// A grace far above a loaded engine's latency: stopping sooner proves
	// the init forwarded SIGTERM rather than the engine killing after it.
	require.NoError(t, f.e.StopContainer(ctx, sleeper, 30*time.Second))
	assert.Less(t, time.Since(start), 20*time.Second, "init forwards the stop signal")
	state, err = f.e.State(ctx, sleeper)
	require.NoError(t, err)
	assert.Equal(t, "exited", state)

	require.NoError(t, f.e.RemoveContainer(ctx, sleeper))
	require.NoError(t, f.e.RemoveContainer(ctx, sleeper), "idempotent")
	_, err = f.e.State(ctx, sleeper)
	assert.ErrorIs(t, err, backends.ErrNotFound)
}

func TestListByLabelFindsExactlyWhatWasCreated(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := ctxT(t)
	other := testenv.Labels(t)
	testenv.Cleanup(t, f.e, other)

	netName, alloc := f.network(t, true)
	running := f.start(t, backends.ContainerSpec{Networks: []backends.Attachment{{Network: netName}}})
	created := f.create(t, backends.ContainerSpec{})
	volName := testenv.Name("bbt-vol")
	_, err := f.e.Client().VolumeCreate(ctx, client.VolumeCreateOptions{Name: volName, Labels: f.labels})
	require.NoError(t, err)
	// Same keys, other value: must not be listed.
	_, err = f.e.CreateContainer(ctx, backends.ContainerSpec{Name: testenv.Name("bbt-other"), Image: f.image, Cmd: []string{"true"}, Labels: other})
	require.NoError(t, err)

	rs, err := f.e.List(ctx, f.labels)
	require.NoError(t, err)
	byID := map[string]backends.Resource{}
	for _, r := range rs {
		byID[r.ID] = r
		assert.Equal(t, f.labels[testenv.LabelTest], r.Labels[testenv.LabelTest])
		assert.False(t, r.Created.IsZero(), r.Name)
		assert.WithinDuration(t, time.Now(), r.Created, 10*time.Minute)
	}
	require.Len(t, rs, 4, "%+v", rs)
	assert.Equal(t, "container", byID[running].Kind)
	assert.Equal(t, "running", byID[running].State)
	assert.Equal(t, "created", byID[created].State)
	assert.Equal(t, "network", byID[alloc.ID].Kind)
	assert.Equal(t, netName, byID[alloc.ID].Name)
	assert.Equal(t, "volume", byID[volName].Kind)
	assert.Equal(t, "container", rs[0].Kind, "containers come first")

	require.NoError(t, f.e.RemoveAll(ctx, f.labels))
	rs, err = f.e.List(ctx, f.labels)
	require.NoError(t, err)
	assert.Empty(t, rs)
	rs, err = f.e.List(ctx, other)
	require.NoError(t, err)
	assert.Len(t, rs, 1, "other labels untouched")
}
