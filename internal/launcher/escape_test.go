package launcher

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/backends/docker"
	"github.com/bot-bottle/bot-bottle/internal/plan"
	"github.com/bot-bottle/bot-bottle/internal/testenv"
	"github.com/bot-bottle/bot-bottle/manifest"
)

// escapeUpstreamScript serves plain HTTP on 80 and HTTPS on 443 (with the
// test's own upstream certificate). It is constant.
const escapeUpstreamScript = `exec /testserver -http :80 -https :443 -cert /tls/cert.pem -key /tls/key.pem`

// dnsAnswer is what the test's resolver answers every A query with (a
// documentation address: nothing ever dials it).
const dnsAnswer = "192.0.2.53"

// hostListener is a TCP listener of the test's own on a host address (a
// gateway), recording who connected, so a probe's failure can be told
// from "nothing listens there".
type hostListener struct {
	ln    net.Listener
	mu    sync.Mutex
	peers []string
}

func listenOnHost(t *testing.T, addr string) *hostListener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err, "listening on %s", addr)
	h := &hostListener{ln: ln}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.mu.Lock()
			h.peers = append(h.peers, c.RemoteAddr().String())
			h.mu.Unlock()
			_, _ = c.Write([]byte("bbt-host-listener\n"))
			_ = c.Close()
		}
	}()
	return h
}

func (h *hostListener) port() string {
	_, p, _ := net.SplitHostPort(h.ln.Addr().String())
	return p
}

func (h *hostListener) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.peers)
}

// connectedFrom reports whether a peer with the given IP connected.
func (h *hostListener) connectedFrom(ip string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range h.peers {
		host, _, _ := net.SplitHostPort(p)
		if a, err := netip.ParseAddr(host); err == nil && a.Unmap().String() == ip {
			return true
		}
	}
	return false
}

// networkGateway returns the IPv4 gateway of a network as the engine
// configured it.
func networkGateway(t *testing.T, eng *docker.Engine, name string) string {
	t.Helper()
	res, err := eng.Client().NetworkInspect(context.Background(), name, client.NetworkInspectOptions{})
	require.NoError(t, err)
	for _, c := range res.Network.IPAM.Config {
		if c.Gateway.IsValid() && c.Gateway.Is4() {
			return c.Gateway.String()
		}
	}
	t.Fatalf("network %s has no IPv4 gateway", name)
	return ""
}

// bridgeOf returns the host interface of a bridge network: br-<id[:12]>.
func bridgeOf(t *testing.T, eng *docker.Engine, name string) string {
	t.Helper()
	res, err := eng.Client().NetworkInspect(context.Background(), name, client.NetworkInspectOptions{})
	require.NoError(t, err)
	if b := res.Network.Options["com.docker.network.bridge.name"]; b != "" {
		return b
	}
	return "br-" + res.Network.ID[:12]
}

// interfaceAddrs returns the host addresses of an interface, empty when it
// does not exist.
func interfaceAddrs(name string) []netip.Addr {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return nil
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr())
		}
	}
	return out
}

func firstAddr(addrs []netip.Addr, keep func(netip.Addr) bool) (netip.Addr, bool) {
	for _, a := range addrs {
		if keep(a) {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// asAgent is the argv prefix that runs a probe the way the agent runs:
// as node, with the agent's environment (proxy variables included).
var asAgent = []string{"runuser", "-u", plan.GuestUser, "--", "env", "HOME=" + plan.GuestHome, "USER=" + plan.GuestUser}

// probe runs argv as the agent user and returns its exit code and output.
func probe(t *testing.T, g backends.Guest, argv ...string) (int, string) {
	t.Helper()
	return tryRun(t, g, append(append([]string{}, asAgent...), argv...)...)
}

// reachScript tries every host:port argument at once and prints "open
// host:port" for each that accepts a TCP connection. It is constant; the
// targets travel as arguments.
const reachScript = `for t in "$@"; do ( nc -z -w 3 "${t%:*}" "${t##*:}" 2>/dev/null && echo "open $t" ) & done; wait`

// reachable returns the IPv4 host:port targets that accept a connection
// from g (as the agent user when asAgentUser).
func reachable(t *testing.T, g backends.Guest, asAgentUser bool, targets ...string) []string {
	t.Helper()
	argv := append([]string{"sh", "-c", reachScript, "sh"}, targets...)
	if asAgentUser {
		argv = append(append([]string{}, asAgent...), argv...)
	}
	return prefixed(run(t, g, argv...), "open ")
}

// resolveScript looks every name argument up at once through the C
// library, the way programs do, and prints "resolved NAME" for each that
// resolved.
const resolveScript = `for n in "$@"; do ( RES_OPTIONS="timeout:2 attempts:1" getent hosts "$n" >/dev/null && echo "resolved $n" ) & done; wait`

// resolvable returns the names that resolve in g (looked up as the agent
// user when asAgentUser).
func resolvable(t *testing.T, g backends.Guest, asAgentUser bool, names ...string) []string {
	t.Helper()
	argv := append([]string{"sh", "-c", resolveScript, "sh"}, names...)
	if asAgentUser {
		argv = append(append([]string{}, asAgent...), argv...)
	}
	return prefixed(run(t, g, argv...), "resolved ")
}

// prefixed returns what follows prefix on each line that has it.
func prefixed(out, prefix string) []string {
	var res []string
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), prefix); ok {
			res = append(res, v)
		}
	}
	return res
}

// probeStdout is probe keeping stdout and stderr apart.
func probeStdout(t *testing.T, g backends.Guest, argv ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := g.Exec(ctx, backends.ExecRequest{Argv: append(append([]string{}, asAgent...), argv...)})
	if err != nil && res.ExitCode == 0 {
		return -1, "", err.Error()
	}
	return res.ExitCode, res.Stdout, res.Stderr
}

// randomULA returns a /64 of the fd00::/8 unique local range, random so
// parallel runs never collide.
func randomULA(t *testing.T) string {
	var b [5]byte
	_, err := rand.Read(b[:])
	require.NoError(t, err)
	return fmt.Sprintf("fd%02x:%02x%02x:%02x%02x::/64", b[0], b[1], b[2], b[3], b[4])
}

// ifaceWith returns the name of the interface inside a container that
// carries an address for which keep is true, and that address.
func ifaceWith(t *testing.T, g backends.Guest, keep func(netip.Addr) bool) (string, netip.Addr) {
	t.Helper()
	out := run(t, g, "ip", "-o", "addr", "show")
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		// "7: eth1    inet6 fd12::2/64 scope global ..."
		f := strings.Fields(sc.Text())
		if len(f) < 4 {
			continue
		}
		p, err := netip.ParsePrefix(f[3])
		if err != nil || !keep(p.Addr()) {
			continue
		}
		return strings.SplitN(f[1], "@", 2)[0], p.Addr()
	}
	t.Fatalf("no interface with the wanted address in:\n%s", out)
	return "", netip.Addr{}
}

// TestDockerNoWayOut launches one bottle and tries every way out of it
// from the agent, against containers and listeners of the test's own.
// Each refused probe has a positive control: the same probe succeeding
// from a container on the outside network, through egress to an allowed
// host, or from the agent once a path is deliberately opened.
func TestDockerNoWayOut(t *testing.T) {
	m := &manifest.Manifest{
		Bottles: map[string]*manifest.Bottle{"dev": {Allow: []string{"upstream.test"}}},
		Agents:  map[string]*manifest.Agent{"escape": {Bottle: "dev"}},
	}
	o, eng := dockerOptions(t, m, "escape", env{})
	ctx := context.Background()
	tlsDir, upstreamCA := upstreamTLS(t, "upstream.test")
	o.UpstreamCA = upstreamCA
	var slug string
	o.OnPlanned = func(pl *plan.Plan) { slug = pl.Slug }
	removeAtEnd(t, o, &slug)
	launched, _, err := Run(ctx, o)
	require.NoError(t, err)
	p := launched.Plan
	g := eng.Guest(p.Names.Agent)

	// The test's own containers: an upstream (HTTP, HTTPS) and a DNS
	// resolver, on a network of the test's, both joined to the bottle's
	// outside network, where a sidecar (or an escaped agent) would find
	// them.
	labels := testenv.Labels(t)
	testenv.Cleanup(t, eng, labels)
	testNet := testenv.Name("bbt-escnet")
	_, err = eng.CreateNetwork(ctx, backends.NetworkSpec{Name: testNet, Labels: labels})
	require.NoError(t, err)
	upstream := serverWithMounts(t, eng, testNet, []string{"upstream-mine.test"},
		[]backends.Mount{{Source: tlsDir, Target: "/tls", ReadOnly: true}}, "sh", "-c", escapeUpstreamScript)
	resolver := serverWithMounts(t, eng, testNet, nil,
		[]backends.Mount{{Source: testenv.GoBinary(t, "./internal/testenv/dnsresponder"), Target: "/dnsresponder", ReadOnly: true}},
		"/dnsresponder", "-listen", ":53", "-answer", dnsAnswer)
	require.NoError(t, connect(ctx, eng, upstream, p.Names.Outside, "upstream.test"))
	require.NoError(t, connect(ctx, eng, resolver, p.Names.Outside))
	up, res := eng.Guest(upstream), eng.Guest(resolver)
	upIP, err := eng.ContainerIP(ctx, upstream, p.Names.Outside)
	require.NoError(t, err)
	resolverIP, err := eng.ContainerIP(ctx, resolver, p.Names.Outside)
	require.NoError(t, err)
	egressOutside, err := eng.ContainerIP(ctx, p.Names.Egress, p.Names.Outside)
	require.NoError(t, err)
	agentIP, err := eng.ContainerIP(ctx, p.Names.Agent, p.Names.Bundle)
	require.NoError(t, err)

	// Listeners of the test's own on the host's gateway addresses: the
	// outside network's gateway and docker0. The bundle network's gateway
	// address is assigned to nothing (NoHostAddress), so nothing can
	// listen there; it is probed on the same port.
	bundleGW := networkGateway(t, eng, p.Names.Bundle)
	outsideGW := networkGateway(t, eng, p.Names.Outside)
	outsideLn := listenOnHost(t, net.JoinHostPort(outsideGW, "0"))
	var docker0Ln *hostListener
	docker0IP, haveDocker0 := firstAddr(interfaceAddrs("docker0"), netip.Addr.Is4)
	if haveDocker0 {
		docker0Ln = listenOnHost(t, net.JoinHostPort(docker0IP.String(), "0"))
	} else {
		t.Log("no docker0 interface on this host: its probes are skipped")
	}

	t.Logf("agent %s; upstream %s, resolver %s, egress %s on the outside network; gateways: bundle %s, outside %s, docker0 %v",
		agentIP, upIP, resolverIP, egressOutside, bundleGW, outsideGW, docker0IP)

	t.Run("the bundle network gives the host no address", func(t *testing.T) {
		br := bridgeOf(t, eng, p.Names.Bundle)
		for _, a := range interfaceAddrs(br) {
			assert.False(t, a.Is4(), "the host has %s on the bundle bridge %s", a, br)
		}
		// Control: the outside bridge does carry the host's gateway address.
		_, ok := firstAddr(interfaceAddrs(bridgeOf(t, eng, p.Names.Outside)), func(a netip.Addr) bool { return a.String() == outsideGW })
		assert.True(t, ok, "the outside bridge has the gateway address")
	})

	t.Run("probes", func(t *testing.T) {
		t.Run("direct TCP to an outside server", func(t *testing.T) {
			t.Parallel()
			code, out := probe(t, g, "nc", "-z", "-w", "3", upIP, "80")
			assert.NotEqual(t, 0, code, out)
			code, out = probe(t, g, "curl", "-sS", "-m", "5", "--noproxy", "*", "http://"+upIP+"/")
			assert.NotEqual(t, 0, code, out)
			// Control: from a container on the outside network.
			code, out = tryRun(t, res, "nc", "-z", "-w", "3", upIP, "80")
			assert.Equal(t, 0, code, out)
			assert.Contains(t, run(t, res, "curl", "-sS", "-m", "5", "http://"+upIP+"/x"), `"path":"/x"`)
		})

		t.Run("the host's gateways", func(t *testing.T) {
			t.Parallel()
			var targets []string
			for _, ip := range []string{bundleGW, outsideGW} {
				targets = append(targets, ip+":"+outsideLn.port(), ip+":2375", ip+":2376")
			}
			if haveDocker0 {
				targets = append(targets, docker0IP.String()+":"+docker0Ln.port(), docker0IP.String()+":2375", docker0IP.String()+":2376")
			}
			assert.Empty(t, reachable(t, g, true, targets...), "gateway ports the agent reached")
			assert.False(t, outsideLn.connectedFrom(agentIP), "the agent reached the outside gateway listener")
			// Control: the same probe from a container of the test's own
			// on the outside network reaches both listeners.
			want := []string{outsideGW + ":" + outsideLn.port()}
			if haveDocker0 {
				want = append(want, docker0IP.String()+":"+docker0Ln.port())
			}
			assert.ElementsMatch(t, want, reachable(t, res, false, want...))
			resIP, err := eng.ContainerIP(ctx, resolver, p.Names.Outside)
			require.NoError(t, err)
			assert.True(t, outsideLn.connectedFrom(resIP), "the control reached the outside gateway listener")
		})

		t.Run("DNS to an outside resolver", func(t *testing.T) {
			t.Parallel()
			code, out := probe(t, g, "dig", "+time=2", "+tries=1", "@"+resolverIP, "leak-from-agent.test")
			assert.NotEqual(t, 0, code, out)
			assert.NotContains(t, out, dnsAnswer)
			code, out = probe(t, g, "dig", "+tcp", "+time=2", "+tries=1", "@"+resolverIP, "leak-from-agent-tcp.test")
			assert.NotEqual(t, 0, code, out)
			// Control: a container on the outside network gets an answer.
			assert.Equal(t, dnsAnswer, run(t, up, "dig", "+short", "+time=2", "+tries=1", "@"+resolverIP, "control-from-outside.test"))
			logs, err := eng.Logs(ctx, resolver)
			require.NoError(t, err)
			assert.Contains(t, logs, "query control-from-outside.test from")
			assert.NotContains(t, logs, "leak-from-agent", "a query from the agent arrived at the resolver")
		})

		t.Run("names of outside containers do not resolve", func(t *testing.T) {
			t.Parallel()
			outside := []string{"upstream.test", "upstream-mine.test", upstream, resolver}
			assert.Empty(t, resolvable(t, g, true, outside...), "outside names the agent resolved")
			_, out, _ := probeStdout(t, g, "dig", "+short", "+time=2", "+tries=1", "@127.0.0.11", "upstream.test")
			assert.NotRegexp(t, `(?m)^[0-9.]+$`, out, "dig got an address from the engine's resolver")
			// Control: names on the bundle network resolve the same way,
			// and the outside names resolve from the outside network.
			assert.Equal(t, []string{"egress"}, resolvable(t, g, true, "egress"))
			assert.Regexp(t, `(?m)^[0-9.]+$`, run(t, g, "dig", "+short", "+time=2", "+tries=1", "@127.0.0.11", "egress"))
			assert.ElementsMatch(t, []string{"upstream.test", upstream}, resolvable(t, res, false, "upstream.test", upstream))
		})

		t.Run("no route but the bundle subnet", func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, "nameserver 127.0.0.11", strings.TrimSpace(grepLines(run(t, g, "cat", "/etc/resolv.conf"), "nameserver")))
			// The engine adds a default route via the bundle gateway, an
			// address nobody owns; what matters is that no interface but
			// the bundle one exists and nothing answers there (above).
			links := run(t, g, "ip", "-o", "link", "show")
			assert.Equal(t, 2, len(strings.Split(links, "\n")), "only lo and the bundle interface: %s", links)
		})

		t.Run("IPv6", func(t *testing.T) {
			t.Parallel()
			assert.Empty(t, run(t, g, "ip", "-6", "addr", "show", "scope", "global"), "no global or ULA address")
			assert.Empty(t, run(t, g, "ip", "-6", "route", "show"), "no IPv6 route at all")
			assert.Equal(t, "1", run(t, g, "cat", "/proc/sys/net/ipv6/conf/eth0/disable_ipv6"), "IPv6 is off on the bundle interface")
			// The host holds a link-local address on the bundle bridge:
			// the one IPv6 path that would otherwise exist.
			br := bridgeOf(t, eng, p.Names.Bundle)
			if ll, ok := firstAddr(interfaceAddrs(br), netip.Addr.IsLinkLocalUnicast); ok {
				ln := listenOnHost(t, net.JoinHostPort(ll.String()+"%"+br, "0"))
				t.Logf("the host's link-local address on the bundle bridge: %s%%%s", ll, br)
				code, out := probe(t, g, "curl", "-g", "-6", "-sS", "-m", "5", "--noproxy", "*", "http://["+ll.String()+"%25eth0]:"+ln.port()+"/")
				assert.NotEqual(t, 0, code, out)
				assert.Zero(t, ln.count(), "something reached the host's link-local listener")
			}

			// Control: on an IPv6 network of the test's own, the same
			// link-local probe connects; one of the test's containers is
			// also given a ULA the agent then tries.
			ula := randomULA(t)
			v6Net := testenv.Name("bbt-v6")
			on := true
			_, err := eng.Client().NetworkCreate(ctx, v6Net, client.NetworkCreateOptions{
				Driver: "bridge", EnableIPv6: &on, Labels: labels,
				IPAM: &network.IPAM{Config: []network.IPAMConfig{{Subnet: netip.MustParsePrefix(ula)}}},
			})
			require.NoError(t, err)
			require.NoError(t, connect(ctx, eng, upstream, v6Net))
			require.NoError(t, connect(ctx, eng, resolver, v6Net))
			inULA := func(a netip.Addr) bool { return netip.MustParsePrefix(ula).Contains(a) }
			upIf, upULA := ifaceWith(t, up, inULA)
			resIf, _ := ifaceWith(t, res, inULA)
			upLL := linkLocalOf(t, up, upIf)
			url := "http://[" + upLL.String() + "%25" + resIf + "]/ll"
			assert.Contains(t, run(t, res, "curl", "-g", "-6", "-sS", "-m", "5", url), `"path":"/ll"`, "control: link-local works between containers with IPv6")
			code, out := probe(t, g, "curl", "-g", "-6", "-sS", "-m", "5", "--noproxy", "*", "http://["+upLL.String()+"%25eth0]/ll")
			assert.NotEqual(t, 0, code, out)
			code, out = probe(t, g, "curl", "-g", "-6", "-sS", "-m", "5", "--noproxy", "*", "http://["+upULA.String()+"]/ula")
			assert.NotEqual(t, 0, code, out)
		})

		t.Run("HTTP with the proxy variables unset", func(t *testing.T) {
			t.Parallel()
			unset := []string{"env", "-u", "HTTP_PROXY", "-u", "http_proxy", "-u", "HTTPS_PROXY", "-u", "https_proxy"}
			code, out := probe(t, g, append(unset, "curl", "-sS", "-m", "5", "http://upstream.test/direct")...)
			assert.NotEqual(t, 0, code, out)
			code, out = probe(t, g, append(unset, "curl", "-sS", "-m", "5", "--resolve", "upstream.test:80:"+upIP, "http://upstream.test/direct")...)
			assert.NotEqual(t, 0, code, out)
			// Control: with the agent's proxy settings it arrives.
			code, out = probe(t, g, "curl", "-sS", "-m", "10", "http://upstream.test/proxied")
			assert.Equal(t, 0, code, out)
			assert.Contains(t, out, `"path":"/proxied"`)
		})

		t.Run("CONNECT through egress", func(t *testing.T) {
			t.Parallel()
			connectStatus := func(url string) string {
				_, out, _ := probeStdout(t, g, "curl", "-sS", "-m", "10", "-p", "-o", "/dev/null", "-w", "%{http_connect} %{http_code}", url)
				return out
			}
			assert.Equal(t, "403 000", connectStatus("https://other.test/"), "disallowed host")
			assert.Equal(t, "403 000", connectStatus("https://upstream.test:8443/"), "disallowed port")
			assert.Equal(t, "403 000", connectStatus("https://"+upIP+"/"), "an IP literal")
			assert.Equal(t, "403 000", connectStatus("https://egress:9090/"), "the metrics port by name")
			// Control: the allowed host on the allowed port goes through,
			// verified end to end against the bottle's CA.
			assert.Equal(t, "200 200", connectStatus("https://upstream.test/"))
		})

		t.Run("the egress metrics port", func(t *testing.T) {
			t.Parallel()
			metrics := "http://" + net.JoinHostPort(egressOutside, strconv.Itoa(plan.EgressMetricsPort)) + "/metrics"
			code, out := probe(t, g, "curl", "-sS", "-m", "5", "--noproxy", "*", "http://egress:9090/metrics")
			assert.NotEqual(t, 0, code, out)
			code, out = probe(t, g, "curl", "-sS", "-m", "5", "--noproxy", "*", metrics)
			assert.NotEqual(t, 0, code, out)
			// Through the proxy it is just a host that is not allowed.
			_, out = probe(t, g, "curl", "-sS", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}", "http://egress:9090/metrics")
			assert.Equal(t, "403", out)
			_, out = probe(t, g, "curl", "-sS", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}", metrics)
			assert.Equal(t, "403", out)
			// Control: from the outside network the metrics answer.
			assert.Contains(t, run(t, res, "curl", "-sS", "-m", "5", metrics), "bot_bottle_egress")
		})

		t.Run("the Docker socket", func(t *testing.T) {
			t.Parallel()
			insp, err := eng.Client().ContainerInspect(ctx, p.Names.Agent, client.ContainerInspectOptions{})
			require.NoError(t, err)
			assert.Empty(t, insp.Container.Mounts, "the agent has no mounts")
			assert.Empty(t, insp.Container.HostConfig.Binds)
			for _, path := range []string{"/var/run/docker.sock", "/run/docker.sock", "/var/run/docker", "/run/containerd"} {
				code, _ := probe(t, g, "test", "-e", path)
				assert.NotEqual(t, 0, code, "%s exists in the agent", path)
			}
			// No unix socket of any kind on the agent's filesystem, but
			// the one planted as the control.
			run(t, g, "sh", "-c", "nc -lU /tmp/bbt-control.sock >/dev/null 2>&1 & i=0; while [ ! -S /tmp/bbt-control.sock ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done")
			socks := run(t, g, "find", "/", "-xdev", "-type", "s")
			assert.Equal(t, "/tmp/bbt-control.sock", socks)
		})

		t.Run("the agent user has no privileges to change any of this", func(t *testing.T) {
			t.Parallel()
			_, status := probe(t, g, "grep", "^Cap", "/proc/self/status")
			for _, f := range []string{"CapPrm", "CapEff", "CapAmb"} {
				assert.Contains(t, status, f+":\t0000000000000000")
			}
			code, _ := probe(t, g, "sh", "-c", "command -v sudo")
			assert.NotEqual(t, 0, code, "sudo is installed in the agent")
			code, out := probe(t, g, "ip", "route", "add", "10.0.0.0/8", "dev", "eth0")
			assert.NotEqual(t, 0, code, out)
		})
	})

	// Last, a positive control from inside the agent itself: once one of
	// the test's containers joins the bundle network, the agent resolves
	// its name and the very same DNS and TCP probes succeed. It runs after
	// the probes above because it opens a path.
	t.Run("control: the probes succeed once a path exists", func(t *testing.T) {
		require.NoError(t, connect(ctx, eng, resolver, p.Names.Bundle, "dnsctl.test"))
		require.NoError(t, connect(ctx, eng, upstream, p.Names.Bundle, "upctl.test"))
		resBundle, err := eng.ContainerIP(ctx, resolver, p.Names.Bundle)
		require.NoError(t, err)
		upBundle, err := eng.ContainerIP(ctx, upstream, p.Names.Bundle)
		require.NoError(t, err)
		assert.Equal(t, resBundle, run(t, g, "dig", "+short", "+time=2", "+tries=1", "@127.0.0.11", "dnsctl.test"))
		code, out := probe(t, g, "dig", "+short", "+time=2", "+tries=1", "@"+resBundle, "control-from-agent.test")
		assert.Equal(t, 0, code, out)
		assert.Equal(t, dnsAnswer, strings.TrimSpace(out))
		code, out = probe(t, g, "nc", "-z", "-w", "3", upBundle, "80")
		assert.Equal(t, 0, code, out)
		code, out = probe(t, g, "curl", "-sS", "-m", "5", "--noproxy", "*", "http://upctl.test/ctl")
		assert.Equal(t, 0, code, out)
		assert.Contains(t, out, `"path":"/ctl"`)
	})
}

// grepLines returns the lines of s containing sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// linkLocalOf returns the link-local address of an interface in a
// container, waiting (bounded) for duplicate address detection to finish.
func linkLocalOf(t *testing.T, g backends.Guest, ifname string) netip.Addr {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out := run(t, g, "ip", "-o", "-6", "addr", "show", "dev", ifname, "scope", "link")
		if !strings.Contains(out, "tentative") {
			for _, f := range strings.Fields(out) {
				if p, err := netip.ParsePrefix(f); err == nil && p.Addr().IsLinkLocalUnicast() {
					return p.Addr()
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no usable link-local address on %s: %s", ifname, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
