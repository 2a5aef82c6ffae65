package steps

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/bot-bottle/bot-bottle/internal/plan"
)

// GuestGitRewrites is the node user's XDG git config, where the gate's
// insteadOf rewrites live. git_user runs concurrently and writes the node
// user's other global file, ~/.gitconfig, with GIT_CONFIG_GLOBAL pinning
// it there (left alone, git sends --global writes to this file when it
// exists and ~/.gitconfig does not yet). Each step owns one file, so
// neither can clobber the other's writes, in any order, on any rerun; git
// reads both.
const GuestGitRewrites = "/home/node/.config/git/config"

// Gitconfig points every declared upstream at the git gate with
// `url.<gate>.insteadOf`, so the agent clones and pushes by the upstream's
// own URL and never holds its credentials.
type Gitconfig struct{ guestStep }

// NewGitconfig needs the booted guest and the git gate.
func NewGitconfig(l *Launch) *Gitconfig {
	return &Gitconfig{guestStep{base{L: l, id: IDGitconfig, deps: []string{IDBoot, IDSidecarGitGate}}}}
}

// GitRewrites renders the insteadOf rules for the gate at gateHost
// (host or host:port). Values are quoted for git's config syntax.
func GitRewrites(gateHost string, repos []plan.GitRepo) string {
	var b strings.Builder
	for _, r := range repos {
		fmt.Fprintf(&b, "[url %s]\n\tinsteadOf = %s\n",
			gitConfigQuote("git://"+gateHost+"/"+r.Name+".git"), gitConfigValue(r.Upstream))
	}
	return b.String()
}

// gitConfigQuote quotes a subsection name: backslash and double quote are
// escaped; newlines are rejected by manifest validation.
func gitConfigQuote(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	s = strings.ReplaceAll(s, `"`, `\"`)
	return `"` + s + `"`
}

// gitConfigValue escapes a value so git reads it back verbatim (comment
// characters and quotes would otherwise be interpreted).
func gitConfigValue(s string) string {
	if !strings.ContainsAny(s, "\\\"#; \t") {
		return s
	}
	return gitConfigQuote(s)
}

func (s *Gitconfig) Run(ctx context.Context) error {
	p := s.L.Plan
	gate, ok := s.L.SidecarAddr(plan.RoleGitGate)
	if !ok {
		return fmt.Errorf("the git gate has no address")
	}
	staged := filepath.Join(p.StateDir, plan.RoleAgent, "gitconfig")
	if err := os.MkdirAll(filepath.Dir(staged), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(staged, []byte(GitRewrites(gate, p.Git)), 0o644); err != nil {
		return fmt.Errorf("staging the gitconfig: %w", err)
	}
	if err := s.copyFile(ctx, staged, GuestGitRewrites); err != nil {
		return fmt.Errorf("copying the gitconfig: %w", err)
	}
	// The copy lands as root, and so do the directories it created.
	if _, err := s.exec(ctx, "chown", "-R", "node:node", "/home/node/.config"); err != nil {
		return err
	}
	return nil
}
