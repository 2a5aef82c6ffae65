package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/dag"
	"github.com/bot-bottle/bot-bottle/internal/launcher"
	"github.com/bot-bottle/bot-bottle/internal/plan"
	"github.com/bot-bottle/bot-bottle/internal/statedir"
	"github.com/bot-bottle/bot-bottle/manifest"
	"github.com/bot-bottle/bot-bottle/metrics"
)

// launchFlags are shared by launch and bench.
type launchFlags struct {
	file        string
	backend     string
	copyCwd     bool
	maxParallel int
	smolvm      string
}

func (f *launchFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVarP(&f.file, "file", "f", "", "manifest file (default: looked up)")
	fl.StringVar(&f.backend, "backend", plan.BackendDocker, "where the agent runs: docker or smolmachines")
	fl.BoolVar(&f.copyCwd, "copy-cwd", false, "copy the current directory's .git into the agent's workspace")
	fl.IntVar(&f.maxParallel, "max-parallel", 0, "run at most `N` steps at once (0: no bound; 1: sequential)")
	fl.StringVar(&f.smolvm, "smolvm", "", "path of the smolvm CLI (default $BOT_BOTTLE_SMOLVM, else smolvm on PATH)")
}

// options are the launcher options both launch and bench derive from the
// flags and the environment.
func (f *launchFlags) options(m *manifest.Manifest, agent, cwd string, rt *runtimeEnv, log *slog.Logger, observers ...dag.Observer) launcher.Options {
	return launcher.Options{
		Manifest: m, Agent: agent, Backend: f.backend, CopyCwd: f.copyCwd, Cwd: cwd,
		Version: buildVersion(), StateRoot: statedir.Root(), Home: homeDir(),
		Engine: rt.engine, Images: rt.images, Machines: rt.machines, Log: log,
		UpstreamCA:  os.Getenv(envUpstreamCA),
		MaxParallel: f.maxParallel, Observers: observers,
	}
}

func (f *launchFlags) check() error {
	if f.backend != plan.BackendDocker && f.backend != plan.BackendSmolmachines {
		return usageErrorf("--backend %q: want docker or smolmachines", f.backend)
	}
	if f.maxParallel < 0 {
		return usageErrorf("--max-parallel %d: want 0 (no bound) or more", f.maxParallel)
	}
	return nil
}

func newLaunchCmd() *cobra.Command {
	var (
		lf     launchFlags
		of     outputFlags
		detach bool
		keep   bool
	)
	cmd := &cobra.Command{
		Use:   "launch AGENT [-f FILE] [--backend docker|smolmachines] [--copy-cwd] [--detach]",
		Short: "Launch an agent in a new bottle",
		Long: `Launch AGENT (a key of agents in the manifest) in a new bottle: its
networks, sidecars and agent container or VM, provisioned with its prompt,
skills, CA, git settings and MCP registration.

Attached (the default), claude runs as the node user in the workspace with
your terminal, and the bottle is removed when claude exits (unless --keep).
With --detach the slug is printed and the bottle keeps running: use
'bottle exec', 'bottle stop' and 'bottle rm'.

Any failure, and Ctrl-C during the launch, rolls back everything the launch
created; the error names the step that failed.`,
		Example: `  bottle launch demo
  bottle launch demo --detach --timings timings.json --gantt launch.svg
  bottle launch demo -f examples/demo.yaml --copy-cwd --max-parallel 1
  bottle launch demo --backend smolmachines --smolvm /opt/smolvm/bin/smolvm`,
		Args: exactAgentArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := lf.check(); err != nil {
				return err
			}
			ctx := cmd.Context()
			m, _, err := loadManifest(lf.file)
			if err != nil {
				return err
			}
			rt, err := openRuntime(ctx, lf.backend, lf.smolvm)
			if err != nil {
				return err
			}
			defer rt.Close()
			progress, err := of.newProgress()
			if err != nil {
				return err
			}
			rec := metrics.New(lf.backend)
			cwd, _ := os.Getwd()
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			wrap, err := testStepWrap()
			if err != nil {
				return usageErrorf("%v", err)
			}
			var planned *plan.Plan
			opts := lf.options(m, args[0], cwd, rt, log, progress, rec)
			opts.Wrap = wrap
			opts.OnPlanned = func(p *plan.Plan) {
				planned = p
				fmt.Fprintf(os.Stderr, "launching %s (%s on %s)\n", p.Slug, p.Agent, p.Backend)
			}
			launched, res, err := launcher.Run(ctx, opts)
			_ = progress.Close()
			slug := ""
			if planned != nil {
				slug = planned.Slug
			}
			outcome := "ok"
			if err != nil {
				outcome = "failed"
			}
			if res != nil {
				rec.ObserveLaunch(res, outcome)
				if werr := of.writeResult(res, slug, args[0], lf.backend, cmd.OutOrStdout()); werr != nil {
					err = errors.Join(err, werr)
				}
				if werr := of.writeMetrics(context.WithoutCancel(ctx), rec, args[0], lf.backend); werr != nil {
					err = errors.Join(err, werr)
				}
			}
			if launched == nil || err != nil {
				if launched != nil {
					_ = launcher.RemoveSlug(context.WithoutCancel(ctx), rt.engine, rt.machines, statedir.Root(), slug)
				}
				return err
			}
			fmt.Fprintf(os.Stderr, "ready in %s (critical path %s)\n", res.Wall.Round(1e6), res.CriticalPathDuration.Round(1e6))
			if detach {
				fmt.Fprintln(cmd.OutOrStdout(), slug)
				return nil
			}
			code, runErr := runClaude(ctx, rt, launched)
			if !keep {
				rmCtx := context.WithoutCancel(ctx)
				if err := launcher.RemoveSlug(rmCtx, rt.engine, rt.machines, statedir.Root(), slug); err != nil {
					return errors.Join(runErr, fmt.Errorf("removing %s: %w", slug, err))
				}
			} else {
				fmt.Fprintf(os.Stderr, "kept %s; remove it with: bottle rm %s\n", slug, slug)
			}
			if runErr != nil {
				return runErr
			}
			if code != 0 {
				return &exitCodeError{code}
			}
			return nil
		},
	}
	lf.register(cmd)
	of.register(cmd)
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "print the slug and leave the bottle running")
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the bottle after claude exits (attached mode)")
	return cmd
}

// stepWrapHook, when set, returns the launch's step wrapper. Only test
// builds set it (faultinject.go, build tag faultinject): release builds
// have no way to alter a launch's steps.
var stepWrapHook func() (func(dag.Step) dag.Step, error)

func testStepWrap() (func(dag.Step) dag.Step, error) {
	if stepWrapHook == nil {
		return nil, nil
	}
	return stepWrapHook()
}

// maxPromptArg is the largest prompt passed to claude as an argument;
// Linux caps one argument at 128 KiB. A larger prompt is read by claude
// from the provisioned prompt file.
const maxPromptArg = 100 * 1024

// claudeArgv is claude run as node in the workspace, with the prompt. The
// prompt follows "--": a prompt starting with '-' is text for the agent,
// never an option of claude's (such as one that skips permission checks).
func claudeArgv(p *plan.Plan) []string {
	argv := []string{"runuser", "-u", plan.GuestUser, "--", "env", "HOME=" + plan.GuestHome, "USER=" + plan.GuestUser, "claude"}
	switch {
	case p.Prompt == "":
	case len(p.Prompt) <= maxPromptArg:
		argv = append(argv, "--", p.Prompt)
	default:
		argv = append(argv, "--", "Read your instructions from "+plan.GuestPromptPath+" and follow them.")
	}
	return argv
}

// runClaude runs claude attached to this terminal and returns its exit
// code. SIGINT goes to claude (through the TTY), not to bottle.
func runClaude(ctx context.Context, rt *runtimeEnv, l *launcher.Launched) (int, error) {
	signal.Ignore(os.Interrupt)
	defer signal.Reset(os.Interrupt, syscall.SIGTERM)
	req := backends.ExecRequest{Argv: claudeArgv(l.Plan), Workdir: plan.GuestWorkspace}
	return rt.attach(ctx, l.Plan, req)
}
