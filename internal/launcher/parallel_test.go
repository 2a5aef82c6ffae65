package launcher

import (
	"context"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/internal/plan"
)

func TestParallelLaunchesThenRacingRemovals(t *testing.T) {
	c := newFaultCLI(t)
	const n = 8

	// Eight launches of the same agent at once.
	start := time.Now()
	runs := make([]cliRun, n)
	var wg sync.WaitGroup
	for i := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runs[i] = c.run(nil, c.launchArgs()...)
		}()
	}
	wg.Wait()
	launchWall := time.Since(start)
	var slugs []string
	for i, r := range runs {
		require.Equal(t, 0, r.code, "launch %d:\n%s", i, r.stderr)
		slugs = append(slugs, strings.TrimSpace(r.stdout))
	}
	assert.Len(t, slices.Compact(slices.Sorted(slices.Values(slugs))), n, "slugs are unique: %v", slugs)
	st := c.states()
	for _, s := range slugs {
		assert.Equal(t, StateReady, st[s], s)
	}
	t.Logf("%d concurrent launches ready in %s", n, launchWall.Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	api := c.eng.Client()

	// Every bottle has its own two subnets, overlapping no other network's.
	type subnet struct {
		name   string
		prefix netip.Prefix
	}
	var ours []subnet
	for _, s := range slugs {
		for _, role := range []string{plan.RoleBundle, plan.RoleOutside} {
			name := plan.ResourceName(s, role)
			insp, err := api.NetworkInspect(ctx, name, client.NetworkInspectOptions{})
			require.NoError(t, err, name)
			require.Len(t, insp.Network.IPAM.Config, 1, name)
			ours = append(ours, subnet{name, insp.Network.IPAM.Config[0].Subnet})
		}
	}
	all, err := api.NetworkList(ctx, client.NetworkListOptions{})
	require.NoError(t, err)
	for _, a := range ours {
		for _, nw := range all.Items {
			if nw.Name == a.name {
				continue
			}
			for _, cfg := range nw.IPAM.Config {
				assert.False(t, cfg.Subnet.IsValid() && a.prefix.Overlaps(cfg.Subnet), "%s (%s) overlaps %s (%s)", a.name, a.prefix, nw.Name, cfg.Subnet)
			}
		}
	}

	// No two containers hold the same host port or the same address.
	hostPorts := map[string]string{}
	addrs := map[string]string{}
	containers := 0
	for _, s := range slugs {
		for _, r := range c.resources(s) {
			if r.Kind != KindContainer {
				continue
			}
			containers++
			insp, err := api.ContainerInspect(ctx, r.ID, client.ContainerInspectOptions{})
			require.NoError(t, err)
			ns := insp.Container.NetworkSettings
			require.NotNil(t, ns)
			for port, bindings := range ns.Ports {
				for _, b := range bindings {
					key := b.HostIP.String() + ":" + b.HostPort
					assert.Empty(t, hostPorts[key], "%s (%s) and %s share host port %s", r.Name, port, hostPorts[key], key)
					hostPorts[key] = r.Name
				}
			}
			for net, ep := range ns.Networks {
				key := ep.IPAddress.String()
				assert.Empty(t, addrs[key], "%s and %s share %s", r.Name, addrs[key], key)
				addrs[key] = r.Name + " on " + net
			}
		}
	}
	assert.Equal(t, n*3, containers, "each bottle has its agent, egress and supervise containers")
	t.Logf("%d bottles: %d subnets, %d containers, %d addresses, %d published host ports, all distinct", n, len(ours), containers, len(addrs), len(hostPorts))

	// Half the bottles lose their agent: broken, gc's to collect.
	for _, s := range slugs[:n/2] {
		require.NoError(t, c.eng.RemoveContainer(ctx, plan.ResourceName(s, plan.RoleAgent)))
	}
	st = c.states()
	for i, s := range slugs {
		want := StateReady
		if i < n/2 {
			want = StateBroken
		}
		assert.Equal(t, want, st[s], s)
	}

	// Eight removers race over the same bottles: rm of every slug and gc.
	start = time.Now()
	removers := make([]cliRun, n)
	for i := range removers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				removers[i] = c.run(nil, append([]string{"rm"}, slugs...)...)
			} else {
				removers[i] = c.run(nil, "gc")
			}
		}()
	}
	wg.Wait()
	t.Logf("%d concurrent rm/gc done in %s", n, time.Since(start).Round(time.Millisecond))
	alreadyGone := regexp.MustCompile(`^(\S+): already gone$`)
	removed := map[string]bool{}
	for i, r := range removers {
		what := "rm"
		if i%2 == 1 {
			what = "gc"
		}
		for _, s := range c.mine(r.stdout) {
			assert.Contains(t, slugs, s, "%s %d printed a slug it was not given", what, i)
			removed[s] = true
		}
		if what == "gc" {
			assert.Equal(t, 0, r.code, "gc %d: %s", i, r.stderr)
			assert.Contains(t, []string{"", "nothing to collect"}, strings.TrimSpace(r.stderr), "gc %d", i)
			continue
		}
		if r.code == 0 {
			assert.Empty(t, r.stderr, "rm %d", i)
			continue
		}
		assert.Equal(t, 1, r.code, "rm %d", i)
		msg := strings.TrimPrefix(strings.TrimSpace(r.stderr), "bottle: ")
		for _, line := range strings.Split(msg, "\n") {
			m := alreadyGone.FindStringSubmatch(line)
			if assert.NotNil(t, m, "rm %d: an error other than already gone: %q", i, line) {
				assert.Contains(t, slugs, m[1])
			}
		}
	}
	assert.Len(t, removed, n, "every bottle was removed by someone")
	c.requireAllGone()
	for _, s := range slugs {
		assert.Empty(t, c.resources(s), s)
	}
}
