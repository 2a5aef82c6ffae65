package sidecartest

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/internal/sidecar/egress"
	"github.com/bot-bottle/bot-bottle/internal/sidecar/supervise"
	"github.com/bot-bottle/bot-bottle/internal/statedir"
)

// TestEgressAndSuperviseContainers: the agent's view of a bottle's way
// out. Egress forwards to an allowed host by its name on the outside
// network and refuses another; the agent asks supervise for the second,
// the human approves on the host, and egress lets it through without a
// restart. The upstream "hosts" are network aliases of the supervise
// container, whose /healthz answers plain HTTP.
func TestEgressAndSuperviseContainers(t *testing.T) {
	v := newEnv(t)
	state := t.TempDir()
	cur := filepath.Join(state, statedir.CurrentConfigDir)
	queue := filepath.Join(state, statedir.SuperviseQueue)
	cfgDir := filepath.Join(state, "config")
	for _, d := range []string{cur, queue, cfgDir} {
		require.NoError(t, os.MkdirAll(d, 0o755))
	}
	writeJSON(t, cfgDir, "supervise.json", supervise.Config{
		Listen:           ":8080",
		Slug:             "ctest-1",
		QueueDir:         "/state/" + statedir.SuperviseQueue,
		CurrentConfigDir: "/state/" + statedir.CurrentConfigDir,
		DecisionTimeout:  supervise.Duration(2 * time.Minute),
	})
	writeJSON(t, cfgDir, "egress.json", egress.Config{
		Listen:              ":3128",
		MetricsListen:       ":9090",
		Allow:               []string{"mcp.example.test"},
		AllowedConnectPorts: []int{443, 8080},
		DynamicAllowFile:    "/state/" + statedir.CurrentConfigDir + "/" + supervise.DynamicAllowFile,
		Bottle:              "demo",
		Supervise:           true,
	})
	mounts := []backends.Mount{{Source: cfgDir, Target: "/config", ReadOnly: true}, {Source: state, Target: "/state"}}

	sup := v.run(backends.ContainerSpec{
		Image: v.sidecar, Init: true,
		Cmd:    []string{"/usr/local/bin/bottle", "sidecar", "supervise", "--config", "/config/supervise.json"},
		Mounts: mounts,
		Networks: []backends.Attachment{
			{Network: v.outside, Aliases: []string{"mcp.example.test", "late.example.test"}},
			{Network: v.bundle, Aliases: []string{"supervise"}},
		},
		PublishLoopback: []int{8080},
	})
	eg := v.run(backends.ContainerSpec{
		Image: v.sidecar, Init: true,
		Cmd:    []string{"/usr/local/bin/bottle", "sidecar", "egress", "--config", "/config/egress.json"},
		Mounts: mounts,
		Networks: []backends.Attachment{
			{Network: v.outside},
			{Network: v.bundle, Aliases: []string{"egress"}},
		},
		PublishLoopback: []int{3128, 9090},
		CapDrop:         []string{"ALL"},
		ReadOnlyRootfs:  true,
	})
	v.waitReady(sup)
	v.waitReady(eg)

	proxy, _ := url.Parse("http://" + loopback(v.port(eg, 3128)))
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxy)}}
	get := func(u string) (int, string) {
		resp, err := hc.Get(u)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("http://mcp.example.test:8080/healthz")
	assert.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, body, `"status":"ok"`)
	code, body = get("http://late.example.test:8080/healthz")
	assert.Equal(t, http.StatusForbidden, code)
	assert.Contains(t, body, `host "late.example.test" is not allowed; add it to bottles.demo.allow`)

	// The agent asks through supervise (reached here on its published port).
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	session, err := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "v0"}, nil).Connect(ctx,
		&mcp.StreamableClientTransport{Endpoint: "http://" + loopback(v.port(sup, 8080)) + supervise.MCPPath, MaxRetries: -1}, nil)
	require.NoError(t, err)
	defer session.Close()
	type result struct {
		res *mcp.CallToolResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "request_egress", Arguments: map[string]any{"host": "late.example.test", "reason": "health checks"}})
		done <- result{res, err}
	}()
	var entries []supervise.Entry
	require.Eventually(t, func() bool {
		entries, _ = supervise.ListRequests(queue)
		return len(entries) == 1
	}, 20*time.Second, 50*time.Millisecond)
	_, err = supervise.Approve(state, entries[0].ID, supervise.WithReload(func(supervise.Request) error {
		_, err := v.e.Client().ContainerKill(ctx, eg, client.ContainerKillOptions{Signal: "SIGHUP"})
		return err
	}))
	require.NoError(t, err)
	r := <-done
	require.NoError(t, r.err)
	b, _ := json.Marshal(r.res.StructuredContent)
	assert.Contains(t, string(b), `"status":"approved"`)

	code, body = get("http://late.example.test:8080/healthz")
	assert.Equal(t, http.StatusOK, code, body)

	// Metrics are on their own listener.
	resp, err := http.Get("http://" + loopback(v.port(eg, 9090)) + "/metrics")
	require.NoError(t, err)
	mb, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	assert.Contains(t, string(mb), `bot_bottle_egress_requests_total{decision="deny"} 1`)
	assert.Contains(t, string(mb), `bot_bottle_egress_reloads_total{result="ok"}`)

	// SIGTERM: a graceful, prompt, clean exit.
	stopCtx, stopCancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer stopCancel()
	t0 := time.Now()
	require.NoError(t, v.e.StopContainer(stopCtx, eg, 20*time.Second))
	code2, err := v.e.Wait(stopCtx, eg)
	require.NoError(t, err)
	assert.Equal(t, 0, code2)
	assert.Less(t, time.Since(t0), 15*time.Second)
	logs, _ := v.e.Logs(stopCtx, eg)
	assert.Contains(t, logs, `"msg":"stopped"`)
	assert.Equal(t, 1, strings.Count(logs, `"msg":"ready"`))
}
