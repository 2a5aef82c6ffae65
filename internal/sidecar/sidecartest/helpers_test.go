package sidecartest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/backends/docker"
	"github.com/bot-bottle/bot-bottle/internal/testenv"
	"github.com/bot-bottle/bot-bottle/internal/testskip"
)

type env struct {
	t       *testing.T
	e       *docker.Engine
	sidecar string
	base    string
	labels  backends.Labels
	outside string
	bundle  string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	testskip.Short(t, "container tests need Docker and the images")
	e := testenv.RequireDocker(t)
	var sidecar string
	if bin := os.Getenv("BOT_BOTTLE_SIDECARTEST_BINARY"); bin != "" {
		// A prebuilt bottle binary (static, linux) to test instead of
		// building ./cmd/bottle.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		var err error
		sidecar, err = testenv.Builder(t).EnsureSidecar(ctx, bin)
		cancel()
		require.NoError(t, err)
	} else {
		_, sidecar = testenv.Images(t)
	}
	base := testenv.BaseImage(t)
	labels := testenv.Labels(t)
	testenv.Cleanup(t, e, labels)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	outside := testenv.Name("sc-outside")
	_, err := e.CreateNetwork(ctx, backends.NetworkSpec{Name: outside, Labels: labels})
	require.NoError(t, err)
	bundle := testenv.Name("sc-bundle")
	_, err = e.CreateNetwork(ctx, backends.NetworkSpec{Name: bundle, Internal: true, Labels: labels})
	require.NoError(t, err)
	return &env{t: t, e: e, sidecar: sidecar, base: base, labels: labels, outside: outside, bundle: bundle}
}

// writeJSON writes v into dir/name for mounting.
func writeJSON(t *testing.T, dir, name string, v any) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, name), b, 0o644))
}

// run creates and starts a container and returns its id.
func (v *env) run(spec backends.ContainerSpec) string {
	v.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spec.Labels = v.labels
	if spec.Name == "" {
		spec.Name = testenv.Name("sc")
	}
	id, err := v.e.CreateContainer(ctx, spec)
	require.NoError(v.t, err)
	require.NoError(v.t, v.e.StartContainer(ctx, id))
	return id
}

// waitReady follows the container's log until the sidecar's "ready" line,
// failing fast if the container stops.
func (v *env) waitReady(id string) string {
	v.t.Helper()
	start := time.Now()
	deadline := start.Add(90 * time.Second)
	var logs string
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		logs, _ = v.e.Logs(ctx, id)
		state, _ := v.e.State(ctx, id)
		cancel()
		if strings.Contains(logs, `"msg":"ready"`) {
			v.t.Logf("container %.12s ready %s after start", id, time.Since(start).Round(time.Millisecond))
			return logs
		}
		if state != "" && state != "running" && state != "created" {
			v.t.Fatalf("container %s is %s before ready:\n%s", id, state, logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	v.t.Fatalf("container %s not ready in time:\n%s", id, logs)
	return ""
}

func (v *env) port(id string, p int) int {
	v.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hp, err := v.e.PublishedPort(ctx, id, p)
	require.NoError(v.t, err)
	return hp
}

func loopback(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }
