// Command bottle launches AI coding agents inside isolated bottles: a
// Docker container or a smolvm microVM per agent, wired to an egress proxy
// that holds the tokens, a git gate that holds the keys, and a supervise
// server through which the agent asks a human for changes.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/bot-bottle/bot-bottle/internal/launcher"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // a runtime failure: a launch, an engine call
	exitUsage   = 2 // bad flags, arguments or manifest
)

// usageError marks errors that are the caller's to fix (exit 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// exitCodeError carries an exit code to pass through (bottle exec).
type exitCodeError struct{ code int }

func (e *exitCodeError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ec *exitCodeError
	if errors.As(err, &ec) {
		return ec.code
	}
	fmt.Fprintln(os.Stderr, "bottle:", err)
	var ue *usageError
	var pe *launcher.PreflightError
	if errors.As(err, &ue) || errors.As(err, &pe) || isCobraUsage(err) {
		return exitUsage
	}
	return exitFailure
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "bottle",
		Short: "Launch AI coding agents in isolated bottles",
		Long: `bottle launches Claude Code agents inside isolated bottles: a Docker
container or a smolvm microVM per agent, whose only way out is an egress
proxy that injects API tokens (so tokens never enter the bottle), with a
git gate that holds the deploy keys and a supervise server through which
the agent asks a human to approve changes.

A launch is a graph of typed steps; independent steps run concurrently,
failures roll back everything the launch created, and every step is timed.`,
		Example: `  bottle manifest check -f bottle.yaml
  bottle plan demo
  bottle launch demo --detach
  bottle ls
  bottle exec demo-abc12 -- git status
  bottle rm demo-abc12`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	root.AddCommand(
		newVersionCmd(),
		newManifestCmd(),
		newPlanCmd(),
		newLaunchCmd(),
		newLsCmd(),
		newExecCmd(),
		newStopCmd(),
		newRmCmd(),
		newGCCmd(),
		newImagesCmd(),
		newBenchCmd(),
		newSidecarCmd(),
		newSuperviseCmd(),
	)
	return root
}

// isCobraUsage recognises cobra's own argument errors.
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand", "accepts ", "requires at least", "requires at most", "invalid argument", "flag needs an argument"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}
