// Package backends holds what launch steps need to act on a bottle: a
// container engine for networks and sidecars (Engine) and the place the agent
// runs (Guest). backends/docker implements both on the Docker Engine API;
// backends/smolmachines implements Guest on the smolvm CLI.
package backends

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// Label keys carried by every resource a launch creates. Labels are the
// source of truth for ls, rm and gc: a crash can lose local files, never
// labels.
const (
	LabelSlug    = "bot-bottle.slug"
	LabelAgent   = "bot-bottle.agent"
	LabelRole    = "bot-bottle.role"
	LabelVersion = "bot-bottle.version"
	// LabelBackend says which backend launched the bottle.
	LabelBackend = "bot-bottle.backend"
	// LabelLauncherPID and LabelLauncherStart identify the `bottle launch`
	// process that owns a bottle still being launched, so gc can tell a
	// live launch from a dead one.
	LabelLauncherPID   = "bot-bottle.launcher-pid"
	LabelLauncherStart = "bot-bottle.launcher-start"
	// LabelStateRoot is the state root (where the bottle's ready marker
	// and launch record live) of the launch that created a resource. ls
	// and gc look only at bottles of their own state root: seen from
	// another one, a healthy bottle has no ready marker and looks broken.
	LabelStateRoot = "bot-bottle.state-root"
)

// NamePrefix starts the name of every container, network and machine a
// launch creates (bot-bottle-<slug>-<role>, and bot-bottle-<slug> for a
// smolvm machine), so gc can find even resources whose labels were lost.
const NamePrefix = "bot-bottle-"

// Labels is a set of resource labels.
type Labels map[string]string

// ErrNotFound is returned (wrapped) when a resource does not exist. Removal
// of a missing resource is not an error: Remove* return nil.
var ErrNotFound = errors.New("not found")

// NetworkSpec describes a network to create.
type NetworkSpec struct {
	Name string
	// Internal networks have no route out of the host.
	Internal bool
	// NoHostAddress leaves the host without an address on the network, so
	// its containers cannot reach services the host runs (an internal
	// network alone still lets them reach the host through its gateway
	// address).
	NoHostAddress bool
	// Subnet and Gateway in CIDR / dotted form; empty lets the engine pick.
	Subnet  string
	Gateway string
	Labels  Labels
}

// Attachment connects a container to a network.
type Attachment struct {
	Network string
	// IP is a fixed address on the network; empty lets the engine pick.
	IP      string
	Aliases []string
}

// Mount binds a host path into a container.
type Mount struct {
	Source   string
	Target   string
	ReadOnly bool
}

// ContainerSpec describes a container to create.
type ContainerSpec struct {
	Name       string
	Image      string
	Entrypoint []string
	Cmd        []string
	// Env is KEY=VALUE pairs.
	Env     []string
	User    string
	Workdir string
	Labels  Labels
	// Networks: the first is attached at create, the rest after.
	Networks []Attachment
	Mounts   []Mount
	// PublishLoopback lists container TCP ports to publish on host
	// 127.0.0.1 at an engine-chosen port (see Engine.PublishedPort).
	PublishLoopback []int
	// HostNetwork runs the container in the host's network namespace.
	HostNetwork bool
	Init        bool
	// Tty allocates a terminal for the main process.
	Tty bool
	// CapDrop / ReadOnlyRootfs harden sidecars.
	CapDrop        []string
	ReadOnlyRootfs bool
}

// ExecRequest runs an argv in a guest or container. There is no shell:
// Argv[0] is the program.
type ExecRequest struct {
	Argv []string
	// Env is KEY=VALUE pairs added to the process environment.
	Env     []string
	User    string
	Workdir string
	Stdin   io.Reader
}

// ExecResult is the outcome of an exec that ran.
type ExecResult struct {
	ExitCode int
	Stdout   string
	Stderr   string
}

// ExitError reports a non-zero exit. Exec implementations return it
// (with the result) when the process ran and exited non-zero, so callers can
// classify failures by code with errors.As.
type ExitError struct {
	Argv   []string
	Result ExecResult
}

func (e *ExitError) Error() string {
	prog := ""
	if len(e.Argv) > 0 {
		prog = e.Argv[0]
	}
	msg := e.Result.Stderr
	if len(msg) > 512 {
		msg = msg[:512] + "..."
	}
	return fmt.Sprintf("%s exited %d: %s", prog, e.Result.ExitCode, msg)
}

// Resource is something a launch created, as found by label.
type Resource struct {
	Kind   string // "container", "network", "volume" or "machine"
	ID     string
	Name   string
	Labels Labels
	// State is the engine's word for a container or machine ("running",
	// "exited", ...); empty for networks and volumes.
	State   string
	Created time.Time
}

// Guest is where the agent runs: a container or a microVM. Provisioning
// steps speak only to this interface.
type Guest interface {
	// Exec runs req and returns its result. A process that ran and exited
	// non-zero yields the result and an *ExitError.
	Exec(ctx context.Context, req ExecRequest) (ExecResult, error)
	// CopyFile copies one host file to an absolute guest path, creating
	// parent directories. The file lands owned by root.
	CopyFile(ctx context.Context, hostPath, guestPath string) error
	// CopyDir copies a host directory tree to an absolute guest path
	// (the directory itself becomes guestPath).
	CopyDir(ctx context.Context, hostDir, guestPath string) error
}

// Engine is the container engine that runs sidecars (and, on the Docker
// backend, the agent).
type Engine interface {
	CreateNetwork(ctx context.Context, spec NetworkSpec) (id string, err error)
	RemoveNetwork(ctx context.Context, nameOrID string) error
	CreateContainer(ctx context.Context, spec ContainerSpec) (id string, err error)
	StartContainer(ctx context.Context, nameOrID string) error
	StopContainer(ctx context.Context, nameOrID string, grace time.Duration) error
	// RemoveContainer force-removes a container and its anonymous volumes.
	RemoveContainer(ctx context.Context, nameOrID string) error
	RemoveVolume(ctx context.Context, name string) error
	// PublishedPort returns the host port bound to a container TCP port.
	PublishedPort(ctx context.Context, nameOrID string, port int) (int, error)
	// ContainerIP returns the container's address on a network.
	ContainerIP(ctx context.Context, nameOrID, network string) (string, error)
	// Guest returns a Guest that execs and copies into the container.
	Guest(nameOrID string) Guest
	// List returns every container, network and volume carrying all the
	// given labels. A selector value of "" matches any value: the key must
	// be present.
	List(ctx context.Context, selector Labels) ([]Resource, error)
	// ImageExists reports whether a local image ref exists.
	ImageExists(ctx context.Context, ref string) (bool, error)
}
