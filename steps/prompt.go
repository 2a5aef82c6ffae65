package steps

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/bot-bottle/bot-bottle/internal/plan"
)

// Prompt copies the agent's prompt to the guest, owned by node with mode
// 600. The file is copied even when the prompt is empty: the agent's launch
// command reads it unconditionally.
type Prompt struct{ guestStep }

// NewPrompt needs only the booted guest.
func NewPrompt(l *Launch) *Prompt {
	return &Prompt{guestStep{base{L: l, id: IDPrompt, deps: []string{IDBoot}}}}
}

func (s *Prompt) Run(ctx context.Context) error {
	host := s.L.Plan.PromptFile
	if err := os.MkdirAll(filepath.Dir(host), 0o700); err != nil {
		return fmt.Errorf("staging the prompt: %w", err)
	}
	if err := os.WriteFile(host, []byte(s.L.Plan.Prompt), 0o600); err != nil {
		return fmt.Errorf("staging the prompt: %w", err)
	}
	if err := s.copyFile(ctx, host, plan.GuestPromptPath); err != nil {
		return fmt.Errorf("copying the prompt to %s: %w", plan.GuestPromptPath, err)
	}
	// The copy lands as root; without the chown, node can't read its own
	// mode-600 prompt.
	if _, err := s.exec(ctx, "chown", "node:node", plan.GuestPromptPath); err != nil {
		return err
	}
	if _, err := s.exec(ctx, "chmod", "600", plan.GuestPromptPath); err != nil {
		return err
	}
	return nil
}
