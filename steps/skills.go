package steps

import (
	"context"
	"fmt"
	"os"
)

// Skills copies each of the agent's skills from the host into the guest's
// skills dir, replacing what is there, owned by node. A missing skill fails
// the launch naming it.
type Skills struct{ guestStep }

// NewSkills needs only the booted guest.
func NewSkills(l *Launch) *Skills {
	return &Skills{guestStep{base{L: l, id: IDSkills, deps: []string{IDBoot}}}}
}

func (s *Skills) Run(ctx context.Context) error {
	p := s.L.Plan
	// Check every skill before touching the guest, so the error names all
	// of the missing ones.
	var missing []string
	for _, sk := range p.Skills {
		if fi, err := os.Stat(sk.HostDir); err != nil || !fi.IsDir() {
			missing = append(missing, fmt.Sprintf("%q (looked in %s)", sk.Name, sk.HostDir))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("skill not found on the host: %v; set BOT_BOTTLE_SKILLS_DIR or remove it from agents.%s.skills", missing, p.Agent)
	}
	if _, err := s.exec(ctx, "mkdir", "-p", p.GuestSkillsDir); err != nil {
		return err
	}
	for _, sk := range p.Skills {
		if _, err := s.exec(ctx, "rm", "-rf", sk.GuestDir); err != nil {
			return err
		}
		if err := s.copyDir(ctx, sk.HostDir, sk.GuestDir); err != nil {
			return fmt.Errorf("copying skill %q: %w", sk.Name, err)
		}
		if _, err := s.exec(ctx, "chown", "-R", "node:node", sk.GuestDir); err != nil {
			return err
		}
	}
	return nil
}
