package steps

import (
	"context"
	"errors"

	"github.com/bot-bottle/bot-bottle/internal/plan"
)

// SuperviseSidecar starts the supervise MCP server, backed by the
// bottle's host queue dir, through which the agent asks a human for
// changes.
type SuperviseSidecar struct{ sidecarStep }

// NewSuperviseSidecar needs the sidecar image and the networks.
func NewSuperviseSidecar(l *Launch) *SuperviseSidecar {
	return &SuperviseSidecar{newSidecarStep(l, IDSidecarSupervise, plan.RoleSupervise, l.Plan.Names.Supervise)}
}

func (s *SuperviseSidecar) Run(ctx context.Context) error {
	return errors.New("supervise: not wired")
}
