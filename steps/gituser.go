package steps

import "context"

// GitUser sets the agent's git identity with `git config --global`, run as
// node with HOME and USER forced so it lands in /home/node/.gitconfig.
type GitUser struct{ guestStep }

// NewGitUser needs only the booted guest.
func NewGitUser(l *Launch) *GitUser {
	return &GitUser{guestStep{base{L: l, id: IDGitUser, deps: []string{IDBoot}}}}
}

func (s *GitUser) Run(ctx context.Context) error {
	u := s.L.Plan.GitUser
	if u == nil {
		return nil
	}
	if u.Name != "" {
		if _, err := s.execAsNode(ctx, "git", "config", "--global", "user.name", u.Name); err != nil {
			return err
		}
	}
	if u.Email != "" {
		if _, err := s.execAsNode(ctx, "git", "config", "--global", "user.email", u.Email); err != nil {
			return err
		}
	}
	return nil
}
