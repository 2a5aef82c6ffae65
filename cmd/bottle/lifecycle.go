package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/internal/launcher"
	"github.com/bot-bottle/bot-bottle/internal/plan"
	"github.com/bot-bottle/bot-bottle/internal/statedir"
)

func newLsCmd() *cobra.Command {
	var (
		asJSON bool
		smolvm string
	)
	cmd := &cobra.Command{
		Use:   "ls [--json]",
		Short: "List bottles and their state",
		Long: `List every bottle found by label, with its state:
  ready      launched, its agent runs
  launching  its launch is still in progress
  stopped    its agent was stopped
  broken     its launch died or its agent is gone ('bottle gc' removes it)
  unknown    it runs on smolmachines and smolvm is not available to see it`,
		Example: `  bottle ls
  bottle ls --json | jq -r '.[] | select(.state=="broken") | .slug'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rt, err := openLifecycleRuntime(cmd.Context(), smolvm)
			if err != nil {
				return err
			}
			defer rt.Close()
			all, err := launcher.List(cmd.Context(), rt.engine, rt.machines, statedir.Root())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(all)
			}
			tw := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "SLUG\tAGENT\tBACKEND\tSTATE\tAGE\tRESOURCES")
			for _, b := range all {
				state := b.State
				if b.Reason != "" {
					state += " (" + b.Reason + ")"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", b.Slug, b.Agent, b.Backend, state, age(b.Created), len(b.Resources))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().StringVar(&smolvm, "smolvm", "", "path of the smolvm CLI, to list smolmachines bottles")
	return cmd
}

func age(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// findBottle looks a slug up by label.
func findBottle(ctx context.Context, rt *runtimeEnv, slug string) (launcher.Bottle, error) {
	all, err := launcher.List(ctx, rt.engine, rt.machines, statedir.Root())
	if err != nil {
		return launcher.Bottle{}, err
	}
	var slugs []string
	for _, b := range all {
		if b.Slug == slug {
			return b, nil
		}
		slugs = append(slugs, b.Slug)
	}
	hint := "see 'bottle ls'"
	if len(slugs) > 0 {
		hint = "bottles: " + strings.Join(slugs, ", ")
	}
	return launcher.Bottle{}, &usageError{fmt.Errorf("no bottle %q (%s)", slug, hint)}
}

// bottlePlan rebuilds the names of a found bottle.
func bottlePlan(b launcher.Bottle) *plan.Plan {
	backend := b.Backend
	if backend == "" {
		backend = plan.BackendDocker
	}
	p := &plan.Plan{Slug: b.Slug, Agent: b.Agent, Backend: backend}
	p.Names.Agent = plan.ResourceName(b.Slug, plan.RoleAgent)
	if backend == plan.BackendSmolmachines {
		p.Names.Machine = plan.MachineName(b.Slug)
	}
	return p
}

func newExecCmd() *cobra.Command {
	var (
		smolvm  string
		workdir string
		root    bool
	)
	cmd := &cobra.Command{
		Use:   "exec SLUG -- ARGV...",
		Short: "Run a command in a bottle's agent, as the node user",
		Long: `Run ARGV in the agent of bottle SLUG as the node user (HOME=/home/node)
in /home/node/workspace. No shell is involved: ARGV[0] is the program.
Standard input, output and error are attached (a TTY when this terminal
is one) and the command's exit status is passed through.`,
		Example: `  bottle exec demo-abc12 -- git status
  bottle exec demo-abc12 -- bash
  bottle exec --root demo-abc12 -- cat /etc/os-release`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 || cmd.ArgsLenAtDash() != 1 {
				return usageErrorf("usage: bottle exec SLUG -- ARGV... (put the command after --)")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			rt, err := openLifecycleRuntime(ctx, smolvm)
			if err != nil {
				return err
			}
			defer rt.Close()
			b, err := findBottle(ctx, rt, args[0])
			if err != nil {
				return err
			}
			if b.State != launcher.StateReady {
				return fmt.Errorf("bottle %s is %s, not ready", b.Slug, b.State)
			}
			argv := args[1:]
			if !root {
				argv = append([]string{"runuser", "-u", plan.GuestUser, "--", "env", "HOME=" + plan.GuestHome, "USER=" + plan.GuestUser}, argv...)
			}
			code, err := rt.attach(ctx, bottlePlan(b), backends.ExecRequest{Argv: argv, Workdir: workdir})
			if err != nil {
				return err
			}
			if code != 0 {
				return &exitCodeError{code}
			}
			return nil
		},
	}
	smolvmFlag(cmd, &smolvm)
	cmd.Flags().StringVarP(&workdir, "workdir", "w", plan.GuestWorkspace, "working directory in the agent")
	cmd.Flags().BoolVar(&root, "root", false, "run as root instead of node")
	return cmd
}

func newStopCmd() *cobra.Command {
	var smolvm string
	cmd := &cobra.Command{
		Use:     "stop SLUG...",
		Short:   "Stop a bottle's agent and sidecars, keeping them for inspection",
		Example: "  bottle stop demo-abc12",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			rt, err := openLifecycleRuntime(ctx, smolvm)
			if err != nil {
				return err
			}
			defer rt.Close()
			var errs []error
			for _, slug := range args {
				b, err := findBottle(ctx, rt, slug)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				if err := launcher.Stop(ctx, rt.engine, rt.machines, b); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", slug, err))
					continue
				}
				fmt.Fprintln(cmd.OutOrStdout(), slug)
			}
			return errors.Join(errs...)
		},
	}
	smolvmFlag(cmd, &smolvm)
	return cmd
}

func newRmCmd() *cobra.Command {
	var (
		all    bool
		smolvm string
	)
	cmd := &cobra.Command{
		Use:   "rm SLUG...|--all",
		Short: "Remove bottles: every container, network, volume, machine and state dir",
		Example: `  bottle rm demo-abc12
  bottle rm --all`,
		Args: func(cmd *cobra.Command, args []string) error {
			if all == (len(args) > 0) {
				return usageErrorf("give SLUG... or --all, not both and not neither")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := context.WithoutCancel(cmd.Context())
			rt, err := openLifecycleRuntime(ctx, smolvm)
			if err != nil {
				return err
			}
			defer rt.Close()
			found, err := launcher.List(ctx, rt.engine, rt.machines, statedir.Root())
			if err != nil {
				return err
			}
			exists := map[string]bool{}
			for _, b := range found {
				exists[b.Slug] = true
				if all {
					args = append(args, b.Slug)
				}
			}
			var errs []error
			for _, slug := range args {
				if !exists[slug] {
					errs = append(errs, fmt.Errorf("%s: already gone", slug))
					continue
				}
				if err := launcher.RemoveSlug(ctx, rt.engine, rt.machines, statedir.Root(), slug); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", slug, err))
					continue
				}
				fmt.Fprintln(cmd.OutOrStdout(), slug)
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "remove every bottle")
	smolvmFlag(cmd, &smolvm)
	return cmd
}

func newGCCmd() *cobra.Command {
	var smolvm string
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Remove broken bottles: failed or crashed launches, bottles without an agent",
		Long: `Remove every resource of bottles whose launch failed, whose launching
process died before the bottle was ready, or that have no agent container
or machine. Bottles whose launch is still in progress, and ready or
stopped ones, are never touched. Safe to run at any time, repeatedly.`,
		Example: "  bottle gc",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := context.WithoutCancel(cmd.Context())
			rt, err := openLifecycleRuntime(ctx, smolvm)
			if err != nil {
				return err
			}
			defer rt.Close()
			removed, err := launcher.GC(ctx, rt.engine, rt.machines, statedir.Root())
			for _, s := range removed {
				fmt.Fprintln(cmd.OutOrStdout(), s)
			}
			if len(removed) == 0 && err == nil {
				fmt.Fprintln(os.Stderr, "nothing to collect")
			}
			return err
		},
	}
	smolvmFlag(cmd, &smolvm)
	return cmd
}

// smolvmFlag registers --smolvm on a lifecycle command.
func smolvmFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVar(p, "smolvm", "", "path of the smolvm CLI (smolmachines bottles; default $BOT_BOTTLE_SMOLVM, else smolvm on PATH)")
}
