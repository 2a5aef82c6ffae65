// Package steps holds the typed steps of a bottle launch and the builder
// that wires them into a graph. Each step kind is its own struct in its own
// file; all of them share one *Launch, which carries the plan, the backends
// and what earlier steps discovered (networks, addresses, the guest).
package steps

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/dag"
	"github.com/bot-bottle/bot-bottle/internal/plan"
	"github.com/bot-bottle/bot-bottle/internal/sidecar/pipelock"
)

// Step IDs. They are stable: the same string names the node in `bottle
// plan`, the label in metrics, the key in timings JSON and the word in
// error messages.
const (
	IDImage            = "image"
	IDNetwork          = "network"
	IDSidecarEgress    = "sidecar:egress"
	IDSidecarGitGate   = "sidecar:git-gate"
	IDSidecarSupervise = "sidecar:supervise"
	IDSidecarPipelock  = "sidecar:pipelock"
	IDBoot             = "boot"
	IDCA               = "ca"
	IDPrompt           = "prompt"
	IDSkills           = "skills"
	IDWorkspace        = "workspace"
	IDGitconfig        = "gitconfig"
	IDGitUser          = "git_user"
	IDSupervise        = "supervise"
)

// Images provides the images a launch needs, building only what is missing.
type Images interface {
	// AgentImage returns the agent image ref (override wins when set).
	AgentImage(ctx context.Context, override string) (string, error)
	// SidecarImage returns the sidecar image ref.
	SidecarImage(ctx context.Context) (string, error)
}

// Machines boots the agent as a microVM (smolmachines backend).
type Machines interface {
	// PrepareImage turns the agent image into what the VM boots from.
	PrepareImage(ctx context.Context, imageRef string) (string, error)
	// Boot creates and starts the machine and returns its guest.
	Boot(ctx context.Context, spec MachineSpec) (backends.Guest, error)
	// Delete removes the machine; a missing machine is not an error.
	Delete(ctx context.Context, name string) error
}

// MachineSpec describes the agent VM.
type MachineSpec struct {
	Name   string
	Image  string
	Env    []string
	Labels map[string]string
}

// Launch is the shared state of one launch.
type Launch struct {
	Plan     *plan.Plan
	Engine   backends.Engine
	Images   Images
	Machines Machines // nil on the docker backend
	Log      *slog.Logger
	// Secrets holds token values read from the host environment at launch,
	// keyed by env var name. They go to the egress sidecar's secrets file
	// alone.
	Secrets map[string]string
	// Timeouts per step kind; zero fields take defaults.
	Timeouts Timeouts
	// Pipelock is where pipelock was found (firewall: pipelock only).
	Pipelock pipelock.Location
	// UpstreamCA is a host PEM file of extra roots the egress proxy trusts
	// for upstream servers (a private CA); empty means the system pool.
	UpstreamCA string
	// KnownHosts is the host's ssh known_hosts file, mounted into the git
	// gate to check upstream host keys; empty pins the first key seen.
	KnownHosts string
	// GuestRetry is the retry policy of every step that talks to the
	// guest (the smolvm warm-up race); nil on docker.
	GuestRetry *dag.RetryPolicy
	// ExtraLabels are added to every resource (the launcher's pid and
	// start time, so gc can tell a live launch from a dead one).
	ExtraLabels map[string]string

	mu          sync.Mutex
	agentImage  string
	sidecarImg  string
	bootImage   string
	guest       backends.Guest
	bundle      NetworkInfo
	outside     NetworkInfo
	sidecarAddr map[string]string // role -> address the agent dials
	caCertPath  map[string]string // role -> host path of the CA cert
}

// Timeouts bound each attempt of a step kind.
type Timeouts struct {
	Image     time.Duration
	Network   time.Duration
	Sidecar   time.Duration
	Boot      time.Duration
	Provision time.Duration
}

func (t Timeouts) withDefaults() Timeouts {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&t.Image, 30*time.Minute)
	def(&t.Network, time.Minute)
	def(&t.Sidecar, 2*time.Minute)
	def(&t.Boot, 2*time.Minute)
	def(&t.Provision, 2*time.Minute)
	return t
}

// NetworkInfo is what the network step learned about one network.
type NetworkInfo struct {
	Name    string
	Subnet  string
	Gateway string
}

func (l *Launch) logger() *slog.Logger {
	if l.Log == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return l.Log
}

// Guest returns the agent's guest once boot has run.
func (l *Launch) Guest() (backends.Guest, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.guest == nil {
		return nil, fmt.Errorf("the agent is not booted")
	}
	return l.guest, nil
}

func (l *Launch) setGuest(g backends.Guest) {
	l.mu.Lock()
	l.guest = g
	l.mu.Unlock()
}

// SidecarAddr returns the host:port the agent dials for a sidecar role.
func (l *Launch) SidecarAddr(role string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a, ok := l.sidecarAddr[role]
	return a, ok
}

// SetSidecarAddr records the address the agent dials for a sidecar role.
func (l *Launch) SetSidecarAddr(role, addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sidecarAddr == nil {
		l.sidecarAddr = map[string]string{}
	}
	l.sidecarAddr[role] = addr
}

// CACert returns the host path of a sidecar's CA certificate.
func (l *Launch) CACert(role string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p, ok := l.caCertPath[role]
	return p, ok
}

// SetCACert records the host path of a sidecar's CA certificate.
func (l *Launch) SetCACert(role, path string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.caCertPath == nil {
		l.caCertPath = map[string]string{}
	}
	l.caCertPath[role] = path
}

func (l *Launch) images() (agent, sidecar, boot string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.agentImage, l.sidecarImg, l.bootImage
}

func (l *Launch) networks() (bundle, outside NetworkInfo) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bundle, l.outside
}

// smol reports whether the agent runs in a microVM.
func (l *Launch) smol() bool { return l.Plan.Backend == plan.BackendSmolmachines }

// guestRetry is the retry policy of steps that talk to the guest: the
// smolvm warm-up race on smolmachines, none on docker.
func (l *Launch) guestRetry() *dag.RetryPolicy { return l.GuestRetry }

// base holds what every step shares: its launch, ID and dependencies.
type base struct {
	L    *Launch
	id   string
	deps []string
}

func (b *base) ID() string     { return b.id }
func (b *base) Deps() []string { return b.deps }

// labels returns the labels of a resource of the given role.
func (l *Launch) labels(role string) map[string]string {
	out := l.Plan.Labels(role)
	for k, v := range l.ExtraLabels {
		out[k] = v
	}
	return out
}
