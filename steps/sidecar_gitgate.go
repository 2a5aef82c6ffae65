package steps

import (
	"context"
	"errors"

	"github.com/bot-bottle/bot-bottle/internal/plan"
)

// GitGateSidecar starts the git gate: a git daemon holding a mirror of
// each declared repository and the identity files to reach their
// upstreams, which the agent never sees.
type GitGateSidecar struct{ sidecarStep }

// NewGitGateSidecar needs the sidecar image and the networks.
func NewGitGateSidecar(l *Launch) *GitGateSidecar {
	return &GitGateSidecar{newSidecarStep(l, IDSidecarGitGate, plan.RoleGitGate, l.Plan.Names.GitGate)}
}

func (s *GitGateSidecar) Run(ctx context.Context) error {
	return errors.New("git gate: not wired")
}
