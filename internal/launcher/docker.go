package launcher

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/backends/docker"
	"github.com/bot-bottle/bot-bottle/steps"
)

// DockerEngine adapts the Docker backend to what launch steps look for:
// subnet allocation from the bottle pool and readiness by following logs.
type DockerEngine struct {
	*docker.Engine
	// Pool is where bottle subnets are carved; zero means the default.
	Pool netip.Prefix
}

var (
	_ steps.SubnetAllocator = (*DockerEngine)(nil)
	_ steps.ReadyWaiter     = (*DockerEngine)(nil)
)

// CreateNetworkAuto creates the network on a free subnet of the pool.
func (d *DockerEngine) CreateNetworkAuto(ctx context.Context, spec backends.NetworkSpec) (backends.NetworkSpec, error) {
	a, err := d.Engine.CreateNetworkAuto(ctx, spec, d.Pool)
	if err != nil {
		return spec, err
	}
	spec.Subnet, spec.Gateway = a.Subnet.String(), a.Gateway.String()
	return spec, nil
}

// WaitForLog follows the container's output until a line matches. The
// stream ends when the container stops, so a sidecar that dies fails the
// wait at once, with the tail of its log in the error.
func (d *DockerEngine) WaitForLog(ctx context.Context, container string, match func([]byte) bool) error {
	rc, err := d.Client().ContainerLogs(ctx, container, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Follow: true})
	if err != nil {
		return fmt.Errorf("following the log of %s: %w", container, err)
	}
	defer rc.Close()
	pr, pw := io.Pipe()
	// The sidecar may log on after its ready line: closing the reading end
	// when the wait ends fails the copier's pending write, so it exits
	// instead of blocking forever.
	defer pr.Close()
	go func() {
		_, err := stdcopy.StdCopy(pw, pw, rc)
		pw.CloseWithError(err)
	}()
	// Closing the log stream on cancellation unblocks the scanner.
	stop := context.AfterFunc(ctx, func() { rc.Close() })
	defer stop()
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	var tail []string
	for sc.Scan() {
		line := sc.Bytes()
		if match(line) {
			return nil
		}
		tail = append(tail, string(line))
		if len(tail) > 20 {
			tail = tail[1:]
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	msg := strings.Join(tail, "\n")
	if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: reading its log: %w\n%s", container, err, msg)
	}
	return fmt.Errorf("%s exited before it was ready; its log ends:\n%s", container, msg)
}
