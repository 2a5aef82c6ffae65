package launcher

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/internal/plan"
	"github.com/bot-bottle/bot-bottle/internal/sidecar/supervise"
	"github.com/bot-bottle/bot-bottle/internal/statedir"
	"github.com/bot-bottle/bot-bottle/internal/testenv"
	"github.com/bot-bottle/bot-bottle/manifest"
)

// From inside the agent, an MCP client asks supervise for a blocked host;
// a human approves it with the CLI; the host becomes reachable through
// egress without restarting anything.
func TestSuperviseApprovalOpensEgressLive(t *testing.T) {
	m := &manifest.Manifest{
		Bottles: map[string]*manifest.Bottle{"dev": {Supervise: true, Allow: []string{"upstream.test"}}},
		Agents:  map[string]*manifest.Agent{"demo": {Bottle: "dev"}},
	}
	o, eng := dockerOptions(t, m, "demo", env{})
	xdg := t.TempDir()
	o.StateRoot = filepath.Join(xdg, "bot-bottle")
	var slug string
	o.OnPlanned = func(p *plan.Plan) { slug = p.Slug }
	removeAtEnd(t, o, &slug)
	ctx := context.Background()
	launched, _, err := Run(ctx, o)
	require.NoError(t, err)
	p := launched.Plan

	testNet := testNetwork(t, eng, "bbt-upnet")
	up := server(t, eng, testNet, nil, "/testserver", "-http", ":80")
	require.NoError(t, connect(ctx, eng, up, p.Names.Outside, "upstream.test", "blocked.test"))

	g := eng.Guest(p.Names.Agent)
	require.NoError(t, g.CopyFile(ctx, testenv.GoBinary(t, "./internal/testenv/mcpclient"), "/usr/local/bin/mcpclient"))
	curl := func(url string) string {
		_, out := tryRun(t, g, "runuser", "-u", "node", "--", "env", "HOME=/home/node", "curl", "-sS", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}", url)
		return out
	}
	// Positive control: the allowed host answers, the other is refused.
	require.Equal(t, "200", curl("http://upstream.test/"))
	require.Equal(t, "403", curl("http://blocked.test/"))
	egressBefore, err := eng.Client().ContainerInspect(ctx, p.Names.Egress, client.ContainerInspectOptions{})
	require.NoError(t, err)

	type answer struct {
		code int
		out  string
	}
	done := make(chan answer, 1)
	go func() {
		c, out := tryRun(t, g, "runuser", "-u", "node", "--", "env", "HOME=/home/node",
			"mcpclient", "http://supervise:8080"+supervise.MCPPath, "request_egress", `{"host":"blocked.test","reason":"integration test"}`)
		done <- answer{c, out}
	}()

	// The request lands in the host queue; a human approves it.
	queue := filepath.Join(o.StateRoot, slug, statedir.SuperviseQueue)
	var id string
	require.Eventually(t, func() bool {
		entries, err := supervise.ListRequests(queue)
		if err != nil {
			return false
		}
		for _, e := range entries {
			if e.Status == supervise.StatusPending {
				id = e.ID
				return true
			}
		}
		return false
	}, 60*time.Second, 100*time.Millisecond, "no request reached the queue")
	cmd := exec.Command(testenv.BottleBinary(t), "supervise", "approve", id)
	cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+xdg)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)

	select {
	case a := <-done:
		require.Equal(t, 0, a.code, a.out)
		assert.Contains(t, a.out, "approved")
	case <-time.After(2 * time.Minute):
		t.Fatal("the tool call did not return after approval")
	}
	require.Eventually(t, func() bool { return curl("http://blocked.test/") == "200" }, 30*time.Second, 200*time.Millisecond,
		"the approved host never became reachable")
	egressAfter, err := eng.Client().ContainerInspect(ctx, p.Names.Egress, client.ContainerInspectOptions{})
	require.NoError(t, err)
	assert.Equal(t, egressBefore.Container.State.StartedAt, egressAfter.Container.State.StartedAt, "egress was not restarted")
	assert.Equal(t, 0, egressAfter.Container.RestartCount)
	// Still no token, no other host.
	assert.Equal(t, "403", curl("http://other.test/"))
}
