package steps

import (
	"context"
	"fmt"

	"github.com/bot-bottle/bot-bottle/backends"

	"github.com/bot-bottle/bot-bottle/internal/plan"
)

// Supervise registers the supervise MCP server with the agent's claude.
// A failed registration is a warning: the bottle still works without it.
type Supervise struct{ guestStep }

// NewSupervise needs the booted guest and the supervise sidecar.
func NewSupervise(l *Launch) *Supervise {
	return &Supervise{guestStep{base{L: l, id: IDSupervise, deps: []string{IDBoot, IDSidecarSupervise}}}}
}

func (s *Supervise) Run(ctx context.Context) error {
	addr, ok := s.L.SidecarAddr(plan.RoleSupervise)
	if !ok {
		return fmt.Errorf("the supervise sidecar has no address")
	}
	guest, err := s.L.Guest()
	if err != nil {
		return err
	}
	argv := SuperviseArgv(SuperviseURL(addr))
	res, err := guest.Exec(ctx, backends.ExecRequest{Argv: argv})
	if err != nil {
		// Cancellation and the warm-up race are not the registration's
		// fault: let the executor cancel or retry.
		if ctx.Err() != nil {
			return err
		}
		if p := s.L.guestRetry(); p != nil && p.Retryable != nil && p.Retryable(err) {
			return err
		}
		s.L.logger().Warn("registering the supervise MCP server failed; the bottle works without it",
			"step", IDSupervise, "exit_code", res.ExitCode, "stderr", res.Stderr, "err", err)
	}
	return nil
}

// SuperviseArgv is `claude mcp add` run as node with HOME set, so the
// registration lands in /home/node/.claude.json.
func SuperviseArgv(url string) []string {
	return append(append([]string{}, asNode...),
		"env", "HOME="+plan.GuestHome,
		"claude", "mcp", "add", "--scope", "user", "--transport", "http", "supervise", url)
}
