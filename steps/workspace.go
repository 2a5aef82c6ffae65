package steps

import (
	"context"
	"fmt"

	"github.com/bot-bottle/bot-bottle/internal/plan"
)

// Workspace copies the user's cwd .git into the guest workspace, owned by
// node, so the agent starts on the user's repository history.
type Workspace struct{ guestStep }

// NewWorkspace needs only the booted guest.
func NewWorkspace(l *Launch) *Workspace {
	return &Workspace{guestStep{base{L: l, id: IDWorkspace, deps: []string{IDBoot}}}}
}

func (s *Workspace) Run(ctx context.Context) error {
	src := s.L.Plan.CopyCwdGit
	if _, err := s.exec(ctx, "mkdir", "-p", plan.GuestWorkspace); err != nil {
		return err
	}
	if err := s.copyDir(ctx, src, plan.GuestGitDir); err != nil {
		return fmt.Errorf("copying %s: %w", src, err)
	}
	if _, err := s.exec(ctx, "chown", "-R", "node:node", plan.GuestGitDir); err != nil {
		return err
	}
	return nil
}
