package steps

import (
	"context"
	"time"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/dag"
	"github.com/bot-bottle/bot-bottle/internal/plan"
)

// guestStep is the shared part of the provisioning steps: they act only on
// the guest, take the backend's guest retry policy (the smolvm warm-up race)
// and the provisioning timeout.
type guestStep struct{ base }

func (g *guestStep) RetryPolicy() *dag.RetryPolicy { return g.L.guestRetry() }
func (g *guestStep) Timeout() time.Duration        { return g.L.Timeouts.withDefaults().Provision }

// exec runs argv in the guest as root.
func (g *guestStep) exec(ctx context.Context, argv ...string) (backends.ExecResult, error) {
	guest, err := g.L.Guest()
	if err != nil {
		return backends.ExecResult{}, err
	}
	return guest.Exec(ctx, backends.ExecRequest{Argv: argv})
}

// asNode is the argv prefix that runs a command as the agent user without
// a login shell. HOME and USER are forced separately through the exec
// environment (nodeEnv): bare runuser keeps root's HOME, which would send
// `git config --global` to /root/.gitconfig.
var asNode = []string{"runuser", "-u", plan.GuestUser, "--"}

// nodeEnv is the environment forced on commands run as the agent user.
// GIT_CONFIG_GLOBAL pins `git config --global` to ~/.gitconfig, whatever
// exists in ~/.config/git (see GuestGitRewrites).
var nodeEnv = []string{"HOME=" + plan.GuestHome, "USER=" + plan.GuestUser, "GIT_CONFIG_GLOBAL=" + plan.GuestHome + "/.gitconfig"}

// execAsNode runs argv as the agent user with HOME and USER forced.
func (g *guestStep) execAsNode(ctx context.Context, argv ...string) (backends.ExecResult, error) {
	guest, err := g.L.Guest()
	if err != nil {
		return backends.ExecResult{}, err
	}
	full := append(append([]string{}, asNode...), argv...)
	return guest.Exec(ctx, backends.ExecRequest{Argv: full, Env: nodeEnv})
}

func (g *guestStep) copyFile(ctx context.Context, host, guestPath string) error {
	guest, err := g.L.Guest()
	if err != nil {
		return err
	}
	return guest.CopyFile(ctx, host, guestPath)
}

func (g *guestStep) copyDir(ctx context.Context, host, guestPath string) error {
	guest, err := g.L.Guest()
	if err != nil {
		return err
	}
	return guest.CopyDir(ctx, host, guestPath)
}
