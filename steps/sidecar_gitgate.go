package steps

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/internal/plan"
	"github.com/bot-bottle/bot-bottle/internal/sidecar/gitgate"
	"github.com/bot-bottle/bot-bottle/internal/statedir"
)

// Paths inside the git gate.
const (
	gateMirrors    = "/var/lib/git-gate"
	gateKeys       = "/etc/bot-bottle/keys"
	gateKnownHosts = "/etc/bot-bottle/known_hosts"
)

// GitGateSidecar starts the git gate: a git daemon holding a mirror of
// each declared repository and the identity files to reach their
// upstreams, mounted read-only into the gate alone.
type GitGateSidecar struct{ sidecarStep }

// NewGitGateSidecar needs the sidecar image and the networks.
func NewGitGateSidecar(l *Launch) *GitGateSidecar {
	return &GitGateSidecar{newSidecarStep(l, IDSidecarGitGate, plan.RoleGitGate, l.Plan.Names.GitGate)}
}

func (s *GitGateSidecar) Run(ctx context.Context) error {
	p := s.L.Plan
	dir, err := s.stateSubdir(statedir.GitGateDir)
	if err != nil {
		return err
	}
	cfg := gitgate.Config{
		Listen:   fmt.Sprintf(":%d", plan.GitGatePort),
		BasePath: gateMirrors,
	}
	mounts := []backends.Mount{{Source: dir, Target: sidecarConfigRoot + "/git-gate", ReadOnly: true}}
	for _, r := range p.Git {
		repo := gitgate.Repo{Name: r.Name, Upstream: r.Upstream, AllowForce: r.AllowForce}
		if r.IdentityFile != "" {
			// The engine binds absolute paths only; a relative one means
			// what it meant to the host check: relative to the cwd.
			key, err := filepath.Abs(r.IdentityFile)
			if err == nil {
				_, err = os.Stat(key)
			}
			if err != nil {
				return fmt.Errorf("bottles.%s.git %s: IdentityFile: %w", p.Bottle, r.Name, err)
			}
			repo.IdentityFile = gateKeys + "/" + r.Name
			mounts = append(mounts, backends.Mount{Source: key, Target: repo.IdentityFile, ReadOnly: true})
		}
		cfg.Repos = append(cfg.Repos, repo)
	}
	// Upstream host keys: the user's known_hosts when there is one, so the
	// gate checks them strictly; otherwise the first key seen is pinned.
	if kh := s.L.KnownHosts; kh != "" {
		if _, err := os.Stat(kh); err == nil {
			cfg.SSHKnownHostsFile = gateKnownHosts
			mounts = append(mounts, backends.Mount{Source: kh, Target: gateKnownHosts, ReadOnly: true})
		}
	}
	if cfg.SSHKnownHostsFile == "" {
		cfg.SSHStrictHostKeyChecking = "accept-new"
	}
	if err := writeJSONAtomic(filepath.Join(dir, "git-gate.json"), cfg, 0o644); err != nil {
		return fmt.Errorf("writing the git gate config: %w", err)
	}
	return s.start(ctx, sidecarSpec{
		Cmd:    []string{sidecarBinary, "sidecar", "git-gate", "--config", sidecarConfigRoot + "/git-gate/git-gate.json"},
		Mounts: mounts,
		Port:   plan.GitGatePort,
	})
}
