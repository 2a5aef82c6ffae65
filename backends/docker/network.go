package docker

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"sort"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/bot-bottle/bot-bottle/backends"
)

// DefaultSubnetPool is where CreateNetworkAuto carves bottle subnets. It lies
// outside Docker's default address pools (172.17.0.0/16-172.31.0.0/16 and
// 192.168.0.0/16), so bottles never take addresses the engine would hand to
// other projects' networks.
var DefaultSubnetPool = netip.MustParsePrefix("10.213.0.0/16")

// AutoSubnetBits is the prefix length of an auto-allocated subnet. A /24
// leaves room for any number of sidecars and keeps addresses readable; the
// default /16 pool holds 256 of them, far more than one host runs at once.
const AutoSubnetBits = 24

// maxSubnetProbes bounds how many candidates CreateNetworkAuto tries, so a
// huge pool cannot turn one launch into thousands of engine calls.
const maxSubnetProbes = 1024

// NetworkAllocation is what CreateNetworkAuto chose.
type NetworkAllocation struct {
	ID      string
	Subnet  netip.Prefix
	Gateway netip.Addr
}

// CreateNetwork creates a bridge network. A name that is already taken yields
// an error wrapping ErrConflict.
func (e *Engine) CreateNetwork(ctx context.Context, spec backends.NetworkSpec) (string, error) {
	opts := client.NetworkCreateOptions{
		Driver:   "bridge",
		Internal: spec.Internal,
		Labels:   spec.Labels,
	}
	if spec.NoHostAddress {
		// The bridge driver then assigns the host no IPv4 address on the
		// network's bridge: containers on it have no path to the host.
		opts.Options = map[string]string{"com.docker.network.bridge.inhibit_ipv4": "true"}
	}
	if spec.Subnet != "" {
		subnet, err := netip.ParsePrefix(spec.Subnet)
		if err != nil {
			return "", fmt.Errorf("network %s: subnet: %w", spec.Name, err)
		}
		cfg := network.IPAMConfig{Subnet: subnet}
		if spec.Gateway != "" {
			gw, err := netip.ParseAddr(spec.Gateway)
			if err != nil {
				return "", fmt.Errorf("network %s: gateway: %w", spec.Name, err)
			}
			cfg.Gateway = gw
		}
		opts.IPAM = &network.IPAM{Driver: "default", Config: []network.IPAMConfig{cfg}}
	} else if spec.Gateway != "" {
		return "", fmt.Errorf("network %s: gateway %s given without a subnet", spec.Name, spec.Gateway)
	}
	return e.createNetworkUnique(ctx, spec.Name, opts)
}

// createNetworkUnique creates a network and makes sure no other network has
// the same name. Engines before API 1.44 accept duplicate names unless the
// request sets CheckDuplicate, which this client no longer sends; so the name
// is checked before, and again after creation, when the oldest of the
// same-named networks wins and the others remove themselves. Every creator
// lists after its own creation, so exactly one of concurrent creators keeps
// its network.
func (e *Engine) createNetworkUnique(ctx context.Context, name string, opts client.NetworkCreateOptions) (string, error) {
	ctx, cancel, err := settle(ctx)
	if err != nil {
		return "", fmt.Errorf("create network %s: %w", name, err)
	}
	defer cancel()
	existing, err := e.networksNamed(ctx, name)
	if err != nil {
		return "", err
	}
	if len(existing) > 0 {
		return "", fmt.Errorf("create network %s: %w", name, ErrConflict)
	}
	res, err := e.cli.NetworkCreate(ctx, name, opts)
	if err != nil {
		return "", wrapCreateErr(err, "create network %s", name)
	}
	same, err := e.networksNamed(ctx, name)
	if err != nil {
		_ = e.RemoveNetwork(context.WithoutCancel(ctx), res.ID)
		return "", err
	}
	if len(same) > 1 {
		sort.Slice(same, func(i, j int) bool {
			if !same[i].Created.Equal(same[j].Created) {
				return same[i].Created.Before(same[j].Created)
			}
			return same[i].ID < same[j].ID
		})
		if same[0].ID != res.ID {
			if err := e.RemoveNetwork(context.WithoutCancel(ctx), res.ID); err != nil {
				return "", fmt.Errorf("create network %s: %w (and removing the duplicate %s failed: %v)", name, ErrConflict, res.ID, err)
			}
			return "", fmt.Errorf("create network %s: %w", name, ErrConflict)
		}
	}
	return res.ID, nil
}

// networksNamed lists networks whose name is exactly name (the engine's name
// filter also matches substrings).
func (e *Engine) networksNamed(ctx context.Context, name string) ([]network.Summary, error) {
	res, err := e.cli.NetworkList(ctx, client.NetworkListOptions{Filters: make(client.Filters).Add("name", name)})
	if err != nil {
		return nil, wrapErr(err, "list networks named %s", name)
	}
	var out []network.Summary
	for _, n := range res.Items {
		if n.Name == name {
			out = append(out, n)
		}
	}
	return out, nil
}

// CreateNetworkAuto creates spec's network on a free subnet of pool (the zero
// prefix means DefaultSubnetPool). The first candidate depends on a hash of
// the name so concurrent launches start apart; on the engine's "pool
// overlaps" refusal the next candidate is tried. The engine is the arbiter:
// two creators can never both be granted one subnet. spec.Subnet and
// spec.Gateway must be empty.
func (e *Engine) CreateNetworkAuto(ctx context.Context, spec backends.NetworkSpec, pool netip.Prefix) (NetworkAllocation, error) {
	if spec.Subnet != "" || spec.Gateway != "" {
		return NetworkAllocation{}, fmt.Errorf("network %s: CreateNetworkAuto picks the subnet; spec must not set one", spec.Name)
	}
	if !pool.IsValid() {
		pool = DefaultSubnetPool
	}
	candidates, err := SubnetCandidates(pool, AutoSubnetBits, spec.Name)
	if err != nil {
		return NetworkAllocation{}, fmt.Errorf("network %s: %w", spec.Name, err)
	}
	var lastErr error
	for _, subnet := range candidates {
		if err := ctx.Err(); err != nil {
			return NetworkAllocation{}, fmt.Errorf("network %s: %w", spec.Name, err)
		}
		gw := subnet.Addr().Next()
		s := spec
		s.Subnet, s.Gateway = subnet.String(), gw.String()
		id, err := e.CreateNetwork(ctx, s)
		if err == nil {
			return NetworkAllocation{ID: id, Subnet: subnet, Gateway: gw}, nil
		}
		if !isPoolOverlap(err) {
			return NetworkAllocation{}, err
		}
		lastErr = err
	}
	return NetworkAllocation{}, fmt.Errorf("network %s: no free /%d subnet in %s after %d tries: %w", spec.Name, AutoSubnetBits, pool, len(candidates), lastErr)
}

// isPoolOverlap recognises the engine's refusal of a subnet that overlaps an
// existing network. Engines answer 403 Forbidden; the message check covers
// engines that map the same refusal to another status.
func isPoolOverlap(err error) bool {
	if errors.Is(err, ErrConflict) || errors.Is(err, backends.ErrNotFound) {
		return false
	}
	return cerrdefs.IsPermissionDenied(err) || strings.Contains(strings.ToLower(err.Error()), "overlaps")
}

// SubnetCandidates lists the /bits subnets of pool in the order
// CreateNetworkAuto tries them: starting at an index derived from name,
// wrapping around, at most maxSubnetProbes of them. IPv4 only.
func SubnetCandidates(pool netip.Prefix, bits int, name string) ([]netip.Prefix, error) {
	pool = pool.Masked()
	if !pool.Addr().Is4() {
		return nil, fmt.Errorf("subnet pool %s: only IPv4 pools are supported", pool)
	}
	if bits < pool.Bits() || bits > 30 {
		return nil, fmt.Errorf("subnet pool %s cannot hold /%d subnets", pool, bits)
	}
	count := uint64(1) << (bits - pool.Bits())
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	start := uint64(h.Sum32()) % count
	n := min(count, maxSubnetProbes)
	base := pool.Addr().As4()
	baseU := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	out := make([]netip.Prefix, 0, n)
	for i := range n {
		idx := (start + i) % count
		v := baseU + uint32(idx)<<(32-bits)
		addr := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
		out = append(out, netip.PrefixFrom(addr, bits))
	}
	return out, nil
}

// HostAddr returns the n-th address of subnet (n=1 is the gateway by the
// convention CreateNetworkAuto follows), so steps can derive fixed sidecar
// addresses from whatever subnet was allocated.
func HostAddr(subnet netip.Prefix, n int) (netip.Addr, error) {
	subnet = subnet.Masked()
	if !subnet.Addr().Is4() || n < 1 {
		return netip.Addr{}, fmt.Errorf("host %d of %s: invalid", n, subnet)
	}
	size := uint64(1) << (32 - subnet.Bits())
	if uint64(n) >= size-1 {
		return netip.Addr{}, fmt.Errorf("host %d of %s: outside the subnet", n, subnet)
	}
	b := subnet.Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), nil
}

// RemoveNetwork removes a network; a missing one is not an error. Any
// container still attached (one that is not the bottle's, so no label
// sweep removed it) is disconnected first: a foreign endpoint must not
// keep a bottle's network alive.
func (e *Engine) RemoveNetwork(ctx context.Context, nameOrID string) error {
	_, err := e.cli.NetworkRemove(ctx, nameOrID, client.NetworkRemoveOptions{})
	if err == nil || cerrdefs.IsNotFound(err) {
		return nil
	}
	insp, ierr := e.cli.NetworkInspect(ctx, nameOrID, client.NetworkInspectOptions{})
	if ierr != nil || len(insp.Network.Containers) == 0 {
		return wrapErr(err, "remove network %s", nameOrID)
	}
	for id := range insp.Network.Containers {
		_, derr := e.cli.NetworkDisconnect(ctx, nameOrID, client.NetworkDisconnectOptions{Container: id, Force: true})
		if derr != nil && !cerrdefs.IsNotFound(derr) {
			return wrapErr(derr, "remove network %s: disconnect %s", nameOrID, id)
		}
	}
	_, err = e.cli.NetworkRemove(ctx, nameOrID, client.NetworkRemoveOptions{})
	if err == nil || cerrdefs.IsNotFound(err) {
		return nil
	}
	return wrapErr(err, "remove network %s", nameOrID)
}

// RemoveVolume removes a volume; a missing one is not an error.
func (e *Engine) RemoveVolume(ctx context.Context, name string) error {
	_, err := e.cli.VolumeRemove(ctx, name, client.VolumeRemoveOptions{})
	if err == nil || cerrdefs.IsNotFound(err) {
		return nil
	}
	return wrapErr(err, "remove volume %s", name)
}
