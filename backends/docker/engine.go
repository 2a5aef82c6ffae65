// Package docker implements backends.Engine and backends.Guest on the Docker
// Engine API. It talks to the daemon only through the API client, never the
// docker CLI, so behaviour does not depend on which CLI version is installed.
package docker

import (
	"context"
	"errors"
	"fmt"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/bot-bottle/bot-bottle/backends"
)

var (
	_ backends.Engine = (*Engine)(nil)
	_ backends.Guest  = (*Guest)(nil)
)

// ErrConflict is returned (wrapped) when a name is already taken by another
// container or network.
var ErrConflict = errors.New("name already in use")

// pingTimeout bounds the reachability check in New so a wedged socket does
// not hang the CLI.
const pingTimeout = 10 * time.Second

// Engine is a Docker Engine reached through its API.
type Engine struct {
	cli *client.Client
}

// New connects to the engine named by the environment (DOCKER_HOST and
// friends, else the local socket), negotiates the API version and checks
// that the daemon answers.
func New(ctx context.Context) (*Engine, error) {
	cli, err := client.New(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if _, err := cli.Ping(pctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		host := cli.DaemonHost()
		_ = cli.Close()
		return nil, fmt.Errorf("cannot reach the Docker Engine at %s: %w (is dockerd running? set DOCKER_HOST)", host, err)
	}
	return &Engine{cli: cli}, nil
}

// Client exposes the API client for callers (the image builder) that need
// calls this package does not wrap.
func (e *Engine) Client() *client.Client { return e.cli }

// Host is the daemon address in use, for messages.
func (e *Engine) Host() string { return e.cli.DaemonHost() }

// Close releases the client's connections.
func (e *Engine) Close() error { return e.cli.Close() }

// ImageExists reports whether ref names a local image.
func (e *Engine) ImageExists(ctx context.Context, ref string) (bool, error) {
	_, err := e.cli.ImageInspect(ctx, ref)
	if err == nil {
		return true, nil
	}
	if cerrdefs.IsNotFound(err) {
		return false, nil
	}
	return false, fmt.Errorf("inspect image %s: %w", ref, err)
}

// settleTimeout bounds a mutating call whose caller set no deadline.
const settleTimeout = 2 * time.Minute

// settle returns the context for a call that changes the engine's state
// (create, start, connect), or an error when ctx is already done so no new
// change begins. The daemon carries such a call out to the end even when
// the client gives up on the request: a create abandoned on Ctrl-C still
// makes its container a moment later. Abandoning it would hide a resource
// that is about to exist from the caller's undo, which could then run
// before it appears and leave it behind. So once begun, a change ignores
// the caller's cancellation and only its deadline (or settleTimeout)
// bounds it; the caller notices the cancellation at its next call.
func settle(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	detached := context.WithoutCancel(ctx)
	if dl, ok := ctx.Deadline(); ok {
		c, cancel := context.WithDeadline(detached, dl)
		return c, cancel, nil
	}
	c, cancel := context.WithTimeout(detached, settleTimeout)
	return c, cancel, nil
}

// wrapErr adds context to an engine error and tags a missing object with
// backends.ErrNotFound, so callers can use errors.Is without knowing the
// engine client's error types.
func wrapErr(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	msg := fmt.Sprintf(format, args...)
	if cerrdefs.IsNotFound(err) {
		return fmt.Errorf("%s: %w: %w", msg, backends.ErrNotFound, err)
	}
	return fmt.Errorf("%s: %w", msg, err)
}

// wrapCreateErr is wrapErr for creation, where the engine's conflict means
// the name is taken.
func wrapCreateErr(err error, format string, args ...any) error {
	if cerrdefs.IsConflict(err) {
		return fmt.Errorf("%s: %w: %w", fmt.Sprintf(format, args...), ErrConflict, err)
	}
	return wrapErr(err, format, args...)
}
