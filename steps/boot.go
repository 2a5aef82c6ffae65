package steps

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/internal/plan"
)

// Boot starts the agent: a container on the bundle network (docker) or a
// microVM (smolmachines). The agent idles (`sleep infinity`) until the
// launch execs claude in it.
type Boot struct{ base }

// NewBoot needs the images and, on docker, the networks. On smolmachines
// the guest reaches the proxy through a host port published by the egress
// sidecar, which the VM's environment names, so boot waits for it.
func NewBoot(l *Launch) *Boot {
	deps := []string{IDImage, IDNetwork}
	if l.smol() {
		deps = []string{IDImage, proxySidecarID(l.Plan)}
	}
	return &Boot{base{L: l, id: IDBoot, deps: deps}}
}

func (s *Boot) Timeout() time.Duration { return s.L.Timeouts.withDefaults().Boot }

// proxySidecarID is the sidecar the agent's proxy variables point at.
func proxySidecarID(p *plan.Plan) string {
	if p.CASidecar() == plan.RolePipelock {
		return IDSidecarPipelock
	}
	return IDSidecarEgress
}

func (s *Boot) Run(ctx context.Context) error {
	p := s.L.Plan
	_, _, image := s.L.images()
	env, err := AgentEnv(s.L)
	if err != nil {
		return err
	}
	if s.L.Machines != nil {
		g, err := s.L.Machines.Boot(ctx, MachineSpec{Name: p.Names.Machine, Image: image, Env: env, Labels: s.L.labels(plan.RoleMachine)})
		if err != nil {
			return fmt.Errorf("booting machine %s: %w", p.Names.Machine, err)
		}
		s.L.setGuest(g)
		return nil
	}
	spec := backends.ContainerSpec{
		Name:       p.Names.Agent,
		Image:      image,
		Entrypoint: []string{"sleep", "infinity"},
		Env:        env,
		Workdir:    plan.GuestWorkspace,
		Labels:     s.L.labels(plan.RoleAgent),
		Networks:   []backends.Attachment{{Network: p.Names.Bundle, Aliases: []string{"agent"}}},
		Init:       true,
		// Root in the agent keeps what provisioning needs (chown,
		// runuser's setuid, update-ca-certificates) and nothing that
		// could forge packets or devices.
		CapDrop: []string{"NET_RAW", "MKNOD", "SYS_CHROOT", "SETFCAP"},
	}
	if _, err := s.L.Engine.CreateContainer(ctx, spec); err != nil {
		return fmt.Errorf("creating the agent container: %w", err)
	}
	if err := s.L.Engine.StartContainer(ctx, p.Names.Agent); err != nil {
		return fmt.Errorf("starting the agent container: %w", err)
	}
	s.L.setGuest(s.L.Engine.Guest(p.Names.Agent))
	return nil
}

// Undo removes the agent container or machine; missing is fine.
func (s *Boot) Undo(ctx context.Context) error {
	if s.L.Machines != nil {
		return s.L.Machines.Delete(ctx, s.L.Plan.Names.Machine)
	}
	err := s.L.Engine.RemoveContainer(ctx, s.L.Plan.Names.Agent)
	if errors.Is(err, backends.ErrNotFound) {
		return nil
	}
	return err
}

// AgentEnv is the agent's environment: the bottle's own variables, then
// the proxy and trust settings that make egress its only way out. Nothing
// secret is ever here.
func AgentEnv(l *Launch) ([]string, error) {
	p := l.Plan
	var env []string
	keys := make([]string, 0, len(p.AgentEnv))
	for k := range p.AgentEnv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+p.AgentEnv[k])
	}
	proxyRole := plan.RoleEgress
	if p.CASidecar() == plan.RolePipelock {
		proxyRole = plan.RolePipelock
	}
	proxy, ok := agentSidecarAddr(l, proxyRole)
	if !ok {
		return nil, fmt.Errorf("the %s sidecar has no address yet", proxyRole)
	}
	noProxy := "localhost,127.0.0.1"
	if !l.smol() {
		noProxy += "," + SidecarAlias(plan.RoleGitGate) + "," + SidecarAlias(plan.RoleSupervise)
	}
	url := "http://" + proxy
	env = append(env,
		"HTTPS_PROXY="+url, "HTTP_PROXY="+url, "https_proxy="+url, "http_proxy="+url,
		"NO_PROXY="+noProxy, "no_proxy="+noProxy,
		"SSL_CERT_FILE="+plan.GuestCABundle,
		"NODE_EXTRA_CA_CERTS="+plan.GuestCAPath,
		"GIT_SSL_CAINFO="+plan.GuestCABundle,
		"HOME="+plan.GuestHome,
		"USER="+plan.GuestUser,
	)
	return env, nil
}

// SidecarAlias is the DNS name of a sidecar on the bundle network.
func SidecarAlias(role string) string { return role }

// SidecarPort is the port a sidecar role serves the agent on.
func SidecarPort(role string) int {
	switch role {
	case plan.RoleEgress:
		return plan.EgressPort
	case plan.RoleGitGate:
		return plan.GitGatePort
	case plan.RoleSupervise:
		return plan.SupervisePort
	case plan.RolePipelock:
		return plan.PipelockPort
	}
	return 0
}

// agentSidecarAddr is where the agent dials a sidecar: on docker its
// alias on the bundle network (known before it starts); on smolmachines
// the host loopback port it published (known once it started).
func agentSidecarAddr(l *Launch, role string) (string, bool) {
	if !l.smol() {
		return fmt.Sprintf("%s:%d", SidecarAlias(role), SidecarPort(role)), true
	}
	return l.SidecarAddr(role)
}
