package docker_test

import (
	"errors"
	"net/netip"
	"sync"
	"testing"

	"github.com/moby/moby/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/backends/docker"
	"github.com/bot-bottle/bot-bottle/internal/testenv"
)

func TestNetworkCreateInspectListRemove(t *testing.T) {
	t.Parallel()
	e := testenv.RequireDocker(t)
	labels := testenv.Labels(t)
	testenv.Cleanup(t, e, labels)
	ctx := ctxT(t)
	labels[backends.LabelRole] = "bundle"

	// An explicit subnet: take the first free one of a few candidates.
	cands, err := docker.SubnetCandidates(docker.DefaultSubnetPool, 24, t.Name())
	require.NoError(t, err)
	name := testenv.Name("bbt-net")
	var id string
	var subnet netip.Prefix
	for _, c := range cands[:16] {
		gw, _ := docker.HostAddr(c, 1)
		id, err = e.CreateNetwork(ctx, backends.NetworkSpec{Name: name, Internal: true, Subnet: c.String(), Gateway: gw.String(), Labels: labels})
		if err == nil {
			subnet = c
			break
		}
	}
	require.NoError(t, err)

	ins, err := e.Client().NetworkInspect(ctx, id, client.NetworkInspectOptions{})
	require.NoError(t, err)
	n := ins.Network
	assert.Equal(t, name, n.Name)
	assert.True(t, n.Internal)
	assert.Equal(t, "bridge", n.Driver)
	assert.Equal(t, labels["bot-bottle.role"], n.Labels["bot-bottle.role"])
	require.Len(t, n.IPAM.Config, 1)
	assert.Equal(t, subnet, n.IPAM.Config[0].Subnet)
	assert.Equal(t, subnet.Addr().Next(), n.IPAM.Config[0].Gateway)

	rs, err := e.List(ctx, labels)
	require.NoError(t, err)
	require.Len(t, rs, 1)
	assert.Equal(t, "network", rs[0].Kind)
	assert.Equal(t, id, rs[0].ID)
	assert.Equal(t, name, rs[0].Name)
	assert.Empty(t, rs[0].State)
	assert.False(t, rs[0].Created.IsZero())

	// The name is taken now.
	_, err = e.CreateNetwork(ctx, backends.NetworkSpec{Name: name, Labels: labels})
	assert.ErrorIs(t, err, docker.ErrConflict)

	require.NoError(t, e.RemoveNetwork(ctx, name))
	require.NoError(t, e.RemoveNetwork(ctx, name), "removing a missing network is not an error")
	require.NoError(t, e.RemoveNetwork(ctx, id))
	rs, err = e.List(ctx, labels)
	require.NoError(t, err)
	assert.Empty(t, rs)
}

func TestNetworkBadSpec(t *testing.T) {
	t.Parallel()
	e := testenv.RequireDocker(t)
	ctx := ctxT(t)
	_, err := e.CreateNetwork(ctx, backends.NetworkSpec{Name: testenv.Name("bbt-net"), Subnet: "not-a-cidr"})
	assert.Error(t, err)
	_, err = e.CreateNetwork(ctx, backends.NetworkSpec{Name: testenv.Name("bbt-net"), Gateway: "10.213.0.1"})
	assert.Error(t, err)
	_, err = e.CreateNetworkAuto(ctx, backends.NetworkSpec{Name: testenv.Name("bbt-net"), Subnet: "10.213.0.0/24"}, netip.Prefix{})
	assert.Error(t, err)
}

// Concurrent creators of one name: exactly one wins, even on engines that
// accept duplicate names.
func TestNetworkSameNameConcurrently(t *testing.T) {
	t.Parallel()
	e := testenv.RequireDocker(t)
	labels := testenv.Labels(t)
	testenv.Cleanup(t, e, labels)
	ctx := ctxT(t)
	name := testenv.Name("bbt-dup")
	const n = 4
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = e.CreateNetwork(ctx, backends.NetworkSpec{Name: name, Labels: labels})
		}()
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		if err == nil {
			wins++
		} else {
			assert.ErrorIs(t, err, docker.ErrConflict)
		}
	}
	assert.Equal(t, 1, wins)
	rs, err := e.List(ctx, labels)
	require.NoError(t, err)
	assert.Len(t, rs, 1)
}

func TestCreateNetworkAutoConcurrentAllocationsAreDisjoint(t *testing.T) {
	t.Parallel()
	e := testenv.RequireDocker(t)
	labels := testenv.Labels(t)
	testenv.Cleanup(t, e, labels)
	ctx := ctxT(t)

	const n = 8
	allocs := make([]docker.NetworkAllocation, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	// All start from the same hashed candidate, so they really contend.
	base := testenv.Name("bbt-auto")
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			spec := backends.NetworkSpec{Name: base + "-" + string(rune('a'+i)), Labels: labels}
			allocs[i], errs[i] = e.CreateNetworkAuto(ctx, spec, netip.Prefix{})
		}()
	}
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i])
		a := allocs[i]
		assert.True(t, docker.DefaultSubnetPool.Contains(a.Subnet.Addr()))
		assert.Equal(t, docker.AutoSubnetBits, a.Subnet.Bits())
		assert.Equal(t, a.Subnet.Addr().Next(), a.Gateway)
		for j := range i {
			assert.False(t, a.Subnet.Overlaps(allocs[j].Subnet), "%s overlaps %s", a.Subnet, allocs[j].Subnet)
		}
		ins, err := e.Client().NetworkInspect(ctx, a.ID, client.NetworkInspectOptions{})
		require.NoError(t, err)
		require.Len(t, ins.Network.IPAM.Config, 1)
		assert.Equal(t, a.Subnet, ins.Network.IPAM.Config[0].Subnet, "the engine holds what was reported")
	}
}

// A pool of two subnets fits two networks; the third is refused after
// probing both.
func TestCreateNetworkAutoProbesAndExhausts(t *testing.T) {
	t.Parallel()
	e := testenv.RequireDocker(t)
	labels := testenv.Labels(t)
	testenv.Cleanup(t, e, labels)
	ctx := ctxT(t)

	pool := freePool(t, e)
	got := map[netip.Prefix]bool{}
	for range 2 {
		a, err := e.CreateNetworkAuto(ctx, backends.NetworkSpec{Name: testenv.Name("bbt-ex"), Labels: labels}, pool)
		require.NoError(t, err)
		assert.True(t, pool.Contains(a.Subnet.Addr()))
		got[a.Subnet] = true
	}
	assert.Len(t, got, 2)
	_, err := e.CreateNetworkAuto(ctx, backends.NetworkSpec{Name: testenv.Name("bbt-ex"), Labels: labels}, pool)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no free /24 subnet")
}

// freePool picks a /23 of the default pool that no network uses now.
func freePool(t *testing.T, e *docker.Engine) netip.Prefix {
	t.Helper()
	res, err := e.Client().NetworkList(ctxT(t), client.NetworkListOptions{})
	require.NoError(t, err)
	cands, err := docker.SubnetCandidates(docker.DefaultSubnetPool, 23, t.Name()+testenv.Name(""))
	require.NoError(t, err)
	for _, c := range cands {
		free := true
		for _, n := range res.Items {
			for _, cfg := range n.IPAM.Config {
				if cfg.Subnet.IsValid() && cfg.Subnet.Overlaps(c) {
					free = false
				}
			}
		}
		if free {
			return c
		}
	}
	t.Fatal("no free /23 in the default pool")
	return netip.Prefix{}
}

func TestRemoveMissingIsNotAnError(t *testing.T) {
	t.Parallel()
	e := testenv.RequireDocker(t)
	ctx := ctxT(t)
	assert.NoError(t, e.RemoveNetwork(ctx, testenv.Name("bbt-missing")))
	assert.NoError(t, e.RemoveContainer(ctx, testenv.Name("bbt-missing")))
	assert.NoError(t, e.RemoveVolume(ctx, testenv.Name("bbt-missing")))

	missing := testenv.Name("bbt-missing")
	for name, err := range map[string]error{
		"stop":  e.StopContainer(ctx, missing, 0),
		"start": e.StartContainer(ctx, missing),
	} {
		assert.ErrorIs(t, err, backends.ErrNotFound, name)
	}
	_, err := e.PublishedPort(ctx, missing, 80)
	assert.ErrorIs(t, err, backends.ErrNotFound)
	_, err = e.ContainerIP(ctx, missing, "bridge")
	assert.ErrorIs(t, err, backends.ErrNotFound)
	_, err = e.Exec(ctx, missing, backends.ExecRequest{Argv: []string{"true"}})
	assert.ErrorIs(t, err, backends.ErrNotFound)
	err = e.Guest(missing).CopyFile(ctx, "/etc/hostname", "/tmp/x")
	assert.ErrorIs(t, err, backends.ErrNotFound)
	_, err = e.Logs(ctx, missing)
	assert.ErrorIs(t, err, backends.ErrNotFound)
	_, err = e.Wait(ctx, missing)
	assert.ErrorIs(t, err, backends.ErrNotFound)
	ok, err := e.ImageExists(ctx, "bot-bottle-no-such-image:"+testenv.Name("t"))
	assert.NoError(t, err)
	assert.False(t, ok)
	_, err = e.List(ctx, backends.Labels{})
	assert.Error(t, err, "an empty selector is refused")
	assert.False(t, errors.Is(err, backends.ErrNotFound))
}
