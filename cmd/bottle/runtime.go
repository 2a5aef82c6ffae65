package main

import (
	"context"
	"fmt"
	"os"

	"golang.org/x/term"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/backends/docker"
	"github.com/bot-bottle/bot-bottle/backends/smolmachines"
	"github.com/bot-bottle/bot-bottle/internal/launcher"
	"github.com/bot-bottle/bot-bottle/internal/plan"
	"github.com/bot-bottle/bot-bottle/steps"
)

// envUpstreamCA names a PEM file of extra roots egress trusts for upstream
// servers (a private or corporate CA).
const envUpstreamCA = "BOT_BOTTLE_UPSTREAM_CA"

// runtimeEnv is what commands that touch bottles need: the engine, the
// images, and (for smolmachines) the machines.
type runtimeEnv struct {
	engine   *launcher.DockerEngine
	images   steps.Images
	machines launcher.Machines
}

// openRuntime connects to the Docker Engine (sidecars run there on every
// backend) and, for smolmachines, to the smolvm CLI.
func openRuntime(ctx context.Context, backend, smolvmPath string) (*runtimeEnv, error) {
	eng, err := docker.New(ctx)
	if err != nil {
		return nil, err
	}
	rt := &runtimeEnv{engine: &launcher.DockerEngine{Engine: eng}}
	rt.images, err = newImageSource(rt.engine.Engine)
	if err != nil {
		_ = eng.Close()
		return nil, err
	}
	if backend == plan.BackendSmolmachines || smolvmPath != "" || os.Getenv("BOT_BOTTLE_SMOLVM") != "" {
		m, err := newMachines(rt.engine.Engine, smolvmPath)
		if err != nil {
			if backend == plan.BackendSmolmachines {
				_ = eng.Close()
				return nil, err
			}
		} else {
			rt.machines = m
		}
	}
	return rt, nil
}

// openLifecycleRuntime is openRuntime for ls/exec/stop/rm/gc: they act on
// bottles of either backend, and smolvm is optional.
func openLifecycleRuntime(ctx context.Context, smolvmPath string) (*runtimeEnv, error) {
	rt, err := openRuntime(ctx, plan.BackendDocker, smolvmPath)
	if err != nil {
		return nil, err
	}
	// A launch finds smolvm on PATH when neither --smolvm nor
	// $BOT_BOTTLE_SMOLVM names it; so must ls, exec, stop, rm and gc, or
	// they would not see the machines of the bottles it launched.
	if rt.machines == nil && smolvmPath == "" && os.Getenv(smolmachines.PathEnv) == "" {
		if m, err := newMachines(rt.engine.Engine, ""); err == nil {
			rt.machines = m
		}
	}
	return rt, nil
}

func (rt *runtimeEnv) Close() {
	if rt.engine != nil {
		_ = rt.engine.Close()
	}
}

// attach runs req in the bottle's agent with this process's stdio; with a
// terminal on stdin the terminal goes raw and a TTY is allocated.
func (rt *runtimeEnv) attach(ctx context.Context, p *plan.Plan, req backends.ExecRequest) (int, error) {
	tty := term.IsTerminal(int(os.Stdin.Fd())) && term.IsTerminal(int(os.Stdout.Fd()))
	if tty {
		old, err := term.MakeRaw(int(os.Stdin.Fd()))
		if err == nil {
			defer term.Restore(int(os.Stdin.Fd()), old)
		}
	}
	if p.Backend == plan.BackendSmolmachines {
		if rt.machines == nil {
			return 0, fmt.Errorf("%s runs on smolmachines, but smolvm is not available (pass --smolvm or set BOT_BOTTLE_SMOLVM)", p.Slug)
		}
		return attachMachine(ctx, rt.machines, p.Names.Machine, req, tty)
	}
	return rt.engine.ExecAttach(ctx, p.Names.Agent, req, os.Stdin, os.Stdout, os.Stderr, tty)
}
