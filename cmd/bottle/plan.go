package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/bot-bottle/bot-bottle/backends/smolmachines"
	"github.com/bot-bottle/bot-bottle/internal/plan"
	"github.com/bot-bottle/bot-bottle/internal/statedir"
	"github.com/bot-bottle/bot-bottle/steps"
)

func newPlanCmd() *cobra.Command {
	var (
		file, backend, format string
		copyCwd               bool
	)
	cmd := &cobra.Command{
		Use:   "plan AGENT [-f FILE] [--backend docker|smolmachines] [--format text|json|dot]",
		Short: "Print the launch plan and step graph of an agent, without side effects",
		Long: `Print what a launch of AGENT would do: the slug, resource names, guest
paths and the graph of steps with their dependencies, retry policies and
timeouts. Nothing is created. The slug shown is one possible draw.`,
		Example: `  bottle plan demo
  bottle plan demo --backend smolmachines --format json
  bottle plan demo --format dot | dot -Tsvg > launch.svg`,
		Args: exactAgentArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch format {
			case "text", "json", "dot":
			default:
				return usageErrorf("--format %q: want text, json or dot", format)
			}
			m, _, err := loadManifest(file)
			if err != nil {
				return err
			}
			cwd, _ := os.Getwd()
			p, err := plan.New(plan.Input{
				Manifest: m, Agent: args[0], Backend: backend, CopyCwd: copyCwd, UserCwd: cwd,
				Version: buildVersion(), StateRoot: statedir.Root(), Getenv: os.Getenv, Home: homeDir(),
			})
			if err != nil {
				return &usageError{err}
			}
			l := newPlanOnlyLaunch(p)
			g, err := steps.BuildGraph(l)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			switch format {
			case "json":
				return steps.WritePlanJSON(out, p, g)
			case "dot":
				return g.DOT(out)
			}
			return steps.WritePlanText(out, p, g)
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "manifest file (default: looked up)")
	cmd.Flags().StringVar(&backend, "backend", plan.BackendDocker, "docker or smolmachines")
	cmd.Flags().StringVar(&format, "format", "text", "text, json or dot")
	cmd.Flags().BoolVar(&copyCwd, "copy-cwd", false, "plan copying the current directory's .git into the workspace")
	return cmd
}

func exactAgentArg(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return usageErrorf("%s takes exactly one AGENT (a key of agents in the manifest); see --help", cmd.CommandPath())
	}
	return nil
}

func homeDir() string {
	h, _ := os.UserHomeDir()
	return h
}

// newPlanOnlyLaunch is a launch that is only described, never run.
func newPlanOnlyLaunch(p *plan.Plan) *steps.Launch {
	l := &steps.Launch{Plan: p}
	if p.Backend == plan.BackendSmolmachines {
		l.GuestRetry = smolmachines.WarmupRetryPolicy()
	}
	return l
}
