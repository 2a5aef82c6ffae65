package steps

import (
	"context"
	"errors"

	"github.com/bot-bottle/bot-bottle/internal/plan"
)

// PipelockSidecar runs pipelock as the allowlisting firewall.
type PipelockSidecar struct{ sidecarStep }

// NewPipelockSidecar needs the networks.
func NewPipelockSidecar(l *Launch) *PipelockSidecar {
	return &PipelockSidecar{newSidecarStep(l, IDSidecarPipelock, plan.RolePipelock, l.Plan.Names.Pipelock)}
}

func (s *PipelockSidecar) Run(ctx context.Context) error {
	return errors.New("pipelock: not wired")
}
