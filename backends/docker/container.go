package docker

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/bot-bottle/bot-bottle/backends"
)

// loopback is where PublishLoopback binds: never a routable host address.
var loopback = netip.MustParseAddr("127.0.0.1")

// logsTail bounds how much of a container's output Logs returns; it serves
// readiness diagnostics, not archival.
const logsTail = "400"

// CreateContainer creates (but does not start) a container. The first
// attachment is made at create, the others are connected right after; if a
// connection fails the container is removed again, so a failed create leaves
// nothing behind.
func (e *Engine) CreateContainer(ctx context.Context, spec backends.ContainerSpec) (string, error) {
	if spec.Image == "" {
		return "", fmt.Errorf("container %s: no image", spec.Name)
	}
	if spec.HostNetwork && (len(spec.Networks) > 0 || len(spec.PublishLoopback) > 0) {
		return "", fmt.Errorf("container %s: host networking excludes networks and published ports", spec.Name)
	}
	ctx, cancel, err := settle(ctx)
	if err != nil {
		return "", fmt.Errorf("create container %s: %w", spec.Name, err)
	}
	defer cancel()
	cfg := &container.Config{
		Image:      spec.Image,
		Entrypoint: spec.Entrypoint,
		Cmd:        spec.Cmd,
		Env:        spec.Env,
		User:       spec.User,
		WorkingDir: spec.Workdir,
		Labels:     spec.Labels,
		Tty:        spec.Tty,
	}
	host := &container.HostConfig{
		CapDrop:        spec.CapDrop,
		ReadonlyRootfs: spec.ReadOnlyRootfs,
	}
	if spec.Init {
		t := true
		host.Init = &t
	}
	for _, m := range spec.Mounts {
		host.Mounts = append(host.Mounts, mount.Mount{
			Type:     mount.TypeBind,
			Source:   m.Source,
			Target:   m.Target,
			ReadOnly: m.ReadOnly,
		})
	}
	if len(spec.PublishLoopback) > 0 {
		cfg.ExposedPorts = network.PortSet{}
		host.PortBindings = network.PortMap{}
		for _, p := range spec.PublishLoopback {
			port, err := tcpPort(p)
			if err != nil {
				return "", fmt.Errorf("container %s: %w", spec.Name, err)
			}
			cfg.ExposedPorts[port] = struct{}{}
			// An empty HostPort lets the engine pick a free port, so
			// concurrent bottles never race for one.
			host.PortBindings[port] = []network.PortBinding{{HostIP: loopback, HostPort: ""}}
		}
	}
	var netCfg *network.NetworkingConfig
	switch {
	case spec.HostNetwork:
		host.NetworkMode = "host"
	case len(spec.Networks) > 0:
		first := spec.Networks[0]
		ep, err := endpointSettings(first)
		if err != nil {
			return "", fmt.Errorf("container %s: %w", spec.Name, err)
		}
		host.NetworkMode = container.NetworkMode(first.Network)
		netCfg = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{first.Network: ep}}
	}

	res, err := e.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name:             spec.Name,
		Config:           cfg,
		HostConfig:       host,
		NetworkingConfig: netCfg,
	})
	if err != nil {
		return "", wrapCreateErr(err, "create container %s", spec.Name)
	}
	for _, att := range spec.Networks[min(1, len(spec.Networks)):] {
		if err := e.connect(ctx, res.ID, att); err != nil {
			_ = e.RemoveContainer(context.WithoutCancel(ctx), res.ID)
			return "", fmt.Errorf("container %s: %w", spec.Name, err)
		}
	}
	return res.ID, nil
}

func tcpPort(p int) (network.Port, error) {
	if p <= 0 || p > math.MaxUint16 {
		return network.Port{}, fmt.Errorf("port %d out of range", p)
	}
	port, _ := network.PortFrom(uint16(p), network.TCP)
	return port, nil
}

func endpointSettings(att backends.Attachment) (*network.EndpointSettings, error) {
	ep := &network.EndpointSettings{Aliases: att.Aliases}
	if att.IP != "" {
		ip, err := netip.ParseAddr(att.IP)
		if err != nil {
			return nil, fmt.Errorf("network %s: ip: %w", att.Network, err)
		}
		ep.IPAMConfig = &network.EndpointIPAMConfig{IPv4Address: ip}
	}
	return ep, nil
}

func (e *Engine) connect(ctx context.Context, containerID string, att backends.Attachment) error {
	ep, err := endpointSettings(att)
	if err != nil {
		return err
	}
	// Engines before API 1.44 accept connecting a created container to a
	// network that does not exist and fail only at start; check first so
	// the error comes from CreateContainer.
	if _, err := e.cli.NetworkInspect(ctx, att.Network, client.NetworkInspectOptions{}); err != nil {
		return wrapErr(err, "network %s", att.Network)
	}
	_, err = e.cli.NetworkConnect(ctx, att.Network, client.NetworkConnectOptions{Container: containerID, EndpointConfig: ep})
	return wrapErr(err, "connect to network %s", att.Network)
}

// StartContainer starts a created or stopped container.
func (e *Engine) StartContainer(ctx context.Context, nameOrID string) error {
	ctx, cancel, err := settle(ctx)
	if err != nil {
		return fmt.Errorf("start container %s: %w", nameOrID, err)
	}
	defer cancel()
	_, err = e.cli.ContainerStart(ctx, nameOrID, client.ContainerStartOptions{})
	return wrapErr(err, "start container %s", nameOrID)
}

// StopContainer asks the main process to stop and kills it after grace.
func (e *Engine) StopContainer(ctx context.Context, nameOrID string, grace time.Duration) error {
	secs := int(math.Ceil(grace.Seconds()))
	_, err := e.cli.ContainerStop(ctx, nameOrID, client.ContainerStopOptions{Timeout: &secs})
	return wrapErr(err, "stop container %s", nameOrID)
}

// removalPoll is how often RemoveContainer checks on a removal another
// caller started; removalWait bounds how long it waits for it.
const (
	removalPoll = 100 * time.Millisecond
	removalWait = time.Minute
)

// RemoveContainer force-removes a container with its anonymous volumes; a
// missing container is not an error. When another caller is removing the
// same container (concurrent rm, gc and rollbacks), it waits until that
// removal is over, trying again should it have failed, so it returns nil
// only once the container is gone.
func (e *Engine) RemoveContainer(ctx context.Context, nameOrID string) error {
	ctx, cancel := context.WithTimeout(ctx, removalWait)
	defer cancel()
	for {
		_, err := e.cli.ContainerRemove(ctx, nameOrID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		if err == nil || cerrdefs.IsNotFound(err) {
			return nil
		}
		if !removalInProgress(err) {
			return wrapErr(err, "remove container %s", nameOrID)
		}
		t := time.NewTimer(removalPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return wrapErr(err, "remove container %s", nameOrID)
		case <-t.C:
		}
	}
}

// removalInProgress recognises the engine's refusal to remove a container
// that another request is removing.
func removalInProgress(err error) bool {
	return cerrdefs.IsConflict(err) && strings.Contains(err.Error(), "already in progress")
}

func (e *Engine) inspect(ctx context.Context, nameOrID string) (container.InspectResponse, error) {
	res, err := e.cli.ContainerInspect(ctx, nameOrID, client.ContainerInspectOptions{})
	if err != nil {
		return container.InspectResponse{}, wrapErr(err, "inspect container %s", nameOrID)
	}
	return res.Container, nil
}

// PublishedPort returns the host port the engine bound to a container TCP
// port published with PublishLoopback. The container must be running: the
// engine assigns the port at start.
func (e *Engine) PublishedPort(ctx context.Context, nameOrID string, port int) (int, error) {
	p, err := tcpPort(port)
	if err != nil {
		return 0, err
	}
	c, err := e.inspect(ctx, nameOrID)
	if err != nil {
		return 0, err
	}
	if c.NetworkSettings != nil {
		for _, b := range c.NetworkSettings.Ports[p] {
			if b.HostPort == "" {
				continue
			}
			n, err := strconv.Atoi(b.HostPort)
			if err != nil {
				return 0, fmt.Errorf("container %s port %d: host port %q: %w", nameOrID, port, b.HostPort, err)
			}
			return n, nil
		}
	}
	state := ""
	if c.State != nil {
		state = string(c.State.Status)
	}
	return 0, fmt.Errorf("container %s: port %d/tcp is not published (state %q)", nameOrID, port, state)
}

// ContainerIP returns the container's IPv4 address on a network, named by
// name or ID.
func (e *Engine) ContainerIP(ctx context.Context, nameOrID, net string) (string, error) {
	c, err := e.inspect(ctx, nameOrID)
	if err != nil {
		return "", err
	}
	if c.NetworkSettings != nil {
		for name, ep := range c.NetworkSettings.Networks {
			if ep == nil || (name != net && ep.NetworkID != net) {
				continue
			}
			if !ep.IPAddress.IsValid() {
				return "", fmt.Errorf("container %s has no address on network %s (is it running?)", nameOrID, net)
			}
			return ep.IPAddress.String(), nil
		}
	}
	return "", fmt.Errorf("container %s on network %s: %w", nameOrID, net, backends.ErrNotFound)
}

// Wait blocks until the container is not running and returns its exit code.
func (e *Engine) Wait(ctx context.Context, nameOrID string) (int, error) {
	res := e.cli.ContainerWait(ctx, nameOrID, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	select {
	case r := <-res.Result:
		if r.Error != nil && r.Error.Message != "" {
			return int(r.StatusCode), fmt.Errorf("wait container %s: %s", nameOrID, r.Error.Message)
		}
		return int(r.StatusCode), nil
	case err := <-res.Error:
		return 0, wrapErr(err, "wait container %s", nameOrID)
	case <-ctx.Done():
		return 0, fmt.Errorf("wait container %s: %w", nameOrID, ctx.Err())
	}
}

// Logs returns the tail of the container's stdout and stderr, interleaved as
// the engine stored them, for readiness diagnostics.
func (e *Engine) Logs(ctx context.Context, nameOrID string) (string, error) {
	c, err := e.inspect(ctx, nameOrID)
	if err != nil {
		return "", err
	}
	rc, err := e.cli.ContainerLogs(ctx, nameOrID, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Tail: logsTail})
	if err != nil {
		return "", wrapErr(err, "logs of container %s", nameOrID)
	}
	defer rc.Close()
	var buf bytes.Buffer
	if c.Config != nil && c.Config.Tty {
		_, err = io.Copy(&buf, rc)
	} else {
		_, err = stdcopy.StdCopy(&buf, &buf, rc)
	}
	if err != nil {
		return buf.String(), fmt.Errorf("logs of container %s: %w", nameOrID, err)
	}
	return buf.String(), nil
}

// State returns the engine's word for the container's state ("created",
// "running", "exited", ...).
func (e *Engine) State(ctx context.Context, nameOrID string) (string, error) {
	c, err := e.inspect(ctx, nameOrID)
	if err != nil {
		return "", err
	}
	if c.State == nil {
		return "", nil
	}
	return string(c.State.Status), nil
}

func trimName(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return strings.TrimPrefix(names[0], "/")
}
