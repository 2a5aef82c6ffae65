// Package launcher runs a bottle's launch: plan, host checks, state dir,
// the step graph, and on any failure a full rollback plus a sweep by label
// so nothing the launch created is left behind. It also lists, removes and
// garbage-collects bottles, always by label: a crash can lose local files,
// never labels.
package launcher

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/dag"
	"github.com/bot-bottle/bot-bottle/internal/plan"
	"github.com/bot-bottle/bot-bottle/internal/sidecar/pipelock"
	"github.com/bot-bottle/bot-bottle/manifest"
	"github.com/bot-bottle/bot-bottle/steps"
)

// Options configure one launch.
type Options struct {
	Manifest *manifest.Manifest
	Agent    string
	Backend  string
	CopyCwd  bool
	Cwd      string
	Version  string
	// StateRoot holds bottle state dirs (statedir.Root()).
	StateRoot string
	Getenv    func(string) string
	Home      string
	Rand      io.Reader

	Engine   backends.Engine
	Images   steps.Images
	Machines Machines // smolmachines only
	Log      *slog.Logger

	MaxParallel int
	Observers   []dag.Observer
	UndoTimeout time.Duration
	Timeouts    steps.Timeouts
	// LookPath finds programs on the host (pipelock); exec.LookPath when
	// nil.
	LookPath func(string) (string, error)
	// UpstreamCA is a PEM file of extra roots egress trusts for upstream
	// servers ($BOT_BOTTLE_UPSTREAM_CA); empty means the system pool.
	UpstreamCA string
	// Wrap replaces steps before execution; tests use it to inject faults.
	Wrap func(dag.Step) dag.Step
	// OnPlanned is called once the plan exists, before any side effect
	// (the CLI prints the slug early so Ctrl-C users know what to gc).
	OnPlanned func(*plan.Plan)
}

// Machines is what the smolmachines backend adds to a launch.
type Machines interface {
	steps.Machines
	// GuestRetry is the retry policy for the exec warm-up race.
	GuestRetry() *dag.RetryPolicy
	// Remove deletes every machine of a slug; missing is fine.
	RemoveSlug(ctx context.Context, slug string) error
	// List returns the machines created by bottles.
	List(ctx context.Context) ([]backends.Resource, error)
	// Stop stops a machine, keeping it.
	Stop(ctx context.Context, name string) error
	// Guest returns the guest of a machine.
	Guest(name string) backends.Guest
}

// PreflightError reports a problem found before the launch created
// anything: the user's to fix (a missing identity file, skill or token).
type PreflightError struct{ Err error }

func (e *PreflightError) Error() string { return e.Err.Error() }
func (e *PreflightError) Unwrap() error { return e.Err }

// Launched is a bottle that reached ready.
type Launched struct {
	Plan   *plan.Plan
	Launch *steps.Launch
	Result *dag.Result
}

// Files in a bottle's state dir.
const (
	launchFile = "launch.json" // who launched it, and when
	readyFile  = "ready"       // written once every step succeeded
)

// Run launches a bottle to ready. On failure (or cancellation) every
// resource carrying the bottle's slug is gone and its state dir removed
// before Run returns; the error names the step that failed. The returned
// *dag.Result is non-nil whenever the graph ran, even on failure.
func Run(ctx context.Context, o Options) (*Launched, *dag.Result, error) {
	getenv := o.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	// The CLI validates what it loads; checking here too means no caller
	// can hand the steps a value validation exists to keep from them.
	if o.Manifest != nil {
		if err := manifest.Validate(o.Manifest); err != nil {
			return nil, nil, &PreflightError{Err: err}
		}
	}
	p, err := plan.New(plan.Input{
		Manifest: o.Manifest, Agent: o.Agent, Backend: o.Backend, CopyCwd: o.CopyCwd, UserCwd: o.Cwd,
		Version: o.Version, StateRoot: o.StateRoot, Rand: o.Rand, Getenv: getenv, Home: o.Home,
	})
	if err != nil {
		return nil, nil, &PreflightError{Err: err}
	}
	if p.Backend == plan.BackendSmolmachines && o.Machines == nil {
		return nil, nil, fmt.Errorf("the smolmachines backend is not configured")
	}
	// Host checks before any side effect: identity files, skill dirs and
	// token variables. Nothing is created when one fails.
	hostEnv := manifest.HostEnv{Getenv: getenv}
	if o.Home != "" {
		hostEnv.HomeDir = func() (string, error) { return o.Home, nil }
	}
	if err := manifest.CheckHost(o.Manifest, o.Agent, hostEnv); err != nil {
		return nil, nil, &PreflightError{Err: err}
	}
	secrets := readSecrets(p, getenv)
	// pipelock is the user's to supply: find it before creating anything.
	var pl pipelock.Location
	if p.Firewall == manifest.FirewallPipelock {
		var exists pipelock.ImageExists
		if o.Engine != nil {
			exists = o.Engine.ImageExists
		}
		if pl, err = pipelock.Locate(ctx, exists, getenv, o.LookPath); err != nil {
			return nil, nil, &PreflightError{Err: fmt.Errorf("bottles.%s.firewall: %w", p.Bottle, err)}
		}
	}
	if o.UpstreamCA != "" {
		if _, err := os.Stat(o.UpstreamCA); err != nil {
			return nil, nil, &PreflightError{Err: fmt.Errorf("$BOT_BOTTLE_UPSTREAM_CA: %w", err)}
		}
	}
	if p.CopyCwdGit != "" {
		if fi, err := os.Stat(p.CopyCwdGit); err != nil || !fi.IsDir() {
			o.logger().Warn("--copy-cwd: no .git in the current directory; the workspace starts empty", "cwd", o.Cwd)
			p.CopyCwdGit = ""
		}
	}
	if o.OnPlanned != nil {
		o.OnPlanned(p)
	}
	me, err := Self()
	if err != nil {
		return nil, nil, err
	}
	if err := claimSlug(ctx, o, p); err != nil {
		return nil, nil, err
	}
	if err := writeLaunchRecord(p, me); err != nil {
		_ = os.RemoveAll(p.StateDir)
		return nil, nil, err
	}
	l := &steps.Launch{
		KnownHosts: knownHosts(o.Home),
		UpstreamCA: o.UpstreamCA,
		Pipelock:   pl,
		Plan:       p,
		Engine:     o.Engine,
		Images:     o.Images,
		Log:        o.logger(),
		Secrets:    secrets,
		Timeouts:   o.Timeouts,
		ExtraLabels: map[string]string{
			backends.LabelLauncherPID:   strconv.Itoa(me.PID),
			backends.LabelLauncherStart: strconv.FormatUint(me.Start, 10),
			backends.LabelStateRoot:     o.StateRoot,
		},
	}
	if o.Machines != nil && p.Backend == plan.BackendSmolmachines {
		l.Machines = o.Machines
		l.GuestRetry = o.Machines.GuestRetry()
	}
	g, err := steps.BuildGraph(l)
	if err != nil {
		_ = os.RemoveAll(p.StateDir)
		return nil, nil, err
	}
	res, err := g.Execute(ctx, dag.Options{
		MaxParallel: o.MaxParallel,
		Observers:   o.Observers,
		UndoTimeout: o.UndoTimeout,
		Wrap:        o.Wrap,
	})
	if err != nil {
		// The graph undid what its steps created; the sweep catches what
		// a failed undo or a half-run step left, by label.
		sweepCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		if rmErr := RemoveSlug(sweepCtx, o.Engine, o.Machines, o.StateRoot, p.Slug); rmErr != nil {
			err = fmt.Errorf("%w; cleanup: %v", err, rmErr)
		}
		return nil, res, err
	}
	if err := os.WriteFile(filepath.Join(p.StateDir, readyFile), []byte(time.Now().UTC().Format(time.RFC3339Nano)+"\n"), 0o600); err != nil {
		return nil, res, fmt.Errorf("marking the bottle ready: %w", err)
	}
	return &Launched{Plan: p, Launch: l, Result: res}, res, nil
}

func (o Options) logger() *slog.Logger {
	if o.Log == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return o.Log
}

// readSecrets reads each route's token from the host environment.
// manifest.CheckHost has already refused a token variable that is unset or
// empty, naming it.
func readSecrets(p *plan.Plan, getenv func(string) string) map[string]string {
	out := map[string]string{}
	for _, r := range p.Routes {
		if r.TokenEnv != "" {
			out[r.TokenEnv] = getenv(r.TokenEnv)
		}
	}
	return out
}

// knownHosts is the user's ssh known_hosts, which the git gate uses to
// check upstream host keys.
func knownHosts(home string) string {
	if home == "" {
		return ""
	}
	return filepath.Join(home, ".ssh", "known_hosts")
}
