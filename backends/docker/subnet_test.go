package docker

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/backends"
)

func TestSubnetCandidatesCoverThePoolOnceFromAHashedStart(t *testing.T) {
	pool := netip.MustParsePrefix("10.213.0.0/16")
	a, err := SubnetCandidates(pool, 24, "bottle-a")
	require.NoError(t, err)
	require.Len(t, a, 256)
	seen := map[netip.Prefix]bool{}
	for _, p := range a {
		assert.Equal(t, 24, p.Bits())
		assert.True(t, pool.Contains(p.Addr()), p)
		assert.Equal(t, p, p.Masked(), "candidates are network addresses")
		assert.False(t, seen[p], "duplicate %s", p)
		seen[p] = true
	}
	again, err := SubnetCandidates(pool, 24, "bottle-a")
	require.NoError(t, err)
	assert.Equal(t, a, again, "deterministic")
	b, err := SubnetCandidates(pool, 24, "bottle-b")
	require.NoError(t, err)
	assert.NotEqual(t, a[0], b[0], "different names start apart")
	// Consecutive after the start, wrapping around.
	assert.Equal(t, a[0].Addr().As4()[2]+1, a[1].Addr().As4()[2])
}

func TestSubnetCandidatesBounds(t *testing.T) {
	got, err := SubnetCandidates(netip.MustParsePrefix("10.213.4.0/23"), 24, "x")
	require.NoError(t, err)
	assert.ElementsMatch(t, []netip.Prefix{
		netip.MustParsePrefix("10.213.4.0/24"), netip.MustParsePrefix("10.213.5.0/24"),
	}, got)

	got, err = SubnetCandidates(netip.MustParsePrefix("10.0.0.0/8"), 28, "x")
	require.NoError(t, err)
	assert.Len(t, got, maxSubnetProbes, "probing is bounded")

	_, err = SubnetCandidates(netip.MustParsePrefix("10.213.0.0/25"), 24, "x")
	assert.Error(t, err)
	_, err = SubnetCandidates(netip.MustParsePrefix("fd00::/64"), 80, "x")
	assert.Error(t, err)
	// An unmasked pool is treated as its network.
	got, err = SubnetCandidates(netip.MustParsePrefix("10.213.4.77/24"), 24, "x")
	require.NoError(t, err)
	assert.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.213.4.0/24")}, got)
}

func TestHostAddr(t *testing.T) {
	s := netip.MustParsePrefix("10.213.7.0/24")
	for n, want := range map[int]string{1: "10.213.7.1", 2: "10.213.7.2", 254: "10.213.7.254"} {
		got, err := HostAddr(s, n)
		require.NoError(t, err)
		assert.Equal(t, want, got.String())
	}
	for _, n := range []int{0, -1, 255, 1000} {
		_, err := HostAddr(s, n)
		assert.Error(t, err, "n=%d", n)
	}
}

func TestIsPoolOverlap(t *testing.T) {
	assert.True(t, isPoolOverlap(errors.New("Pool overlaps with other one on this address space")))
	assert.False(t, isPoolOverlap(errors.New("something else")))
	assert.False(t, isPoolOverlap(ErrConflict))
	assert.False(t, isPoolOverlap(backends.ErrNotFound))
}

func TestNewReportsUnreachableEngine(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix://"+t.TempDir()+"/no-such.sock")
	_, err := New(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "cannot reach the Docker Engine at unix://")
	assert.Contains(t, err.Error(), "is dockerd running? set DOCKER_HOST")
}
