package launcher

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/internal/plan"
)

// Bottle states shown by `bottle ls`.
const (
	StateReady     = "ready"     // launched; its agent runs
	StateLaunching = "launching" // its launch is still in progress
	StateBroken    = "broken"    // its launch died, or its agent is gone: gc removes it
	StateStopped   = "stopped"   // its agent was stopped with `bottle stop`
	// StateUnknown is a smolmachines bottle listed without smolvm: its
	// machine cannot be seen, so whether it runs is unknown, and gc must
	// not take the missing machine for a dead one.
	StateUnknown = "unknown"
)

// Bottle is one bottle as found by label.
type Bottle struct {
	Slug      string              `json:"slug"`
	Agent     string              `json:"agent"`
	Backend   string              `json:"backend"`
	State     string              `json:"state"`
	Reason    string              `json:"reason,omitempty"`
	Created   time.Time           `json:"created"`
	Resources []backends.Resource `json:"resources"`
	// Launcher is the process that launched it.
	Launcher Process `json:"launcher"`
}

// recordGrace is how long a state dir without a launch record counts as
// a launch that is starting rather than one that died.
const recordGrace = time.Minute

// Resource kinds.
const (
	KindContainer = "container"
	KindNetwork   = "network"
	KindVolume    = "volume"
	KindMachine   = "machine"
)

// List finds every bottle of stateRoot by label, plus state dirs whose
// launch died before it created anything, and classifies each. Resources
// labelled with another state root are not listed.
func List(ctx context.Context, eng backends.Engine, m Machines, stateRoot string) ([]Bottle, error) {
	res, err := eng.List(ctx, backends.Labels{backends.LabelSlug: ""})
	if err != nil {
		return nil, err
	}
	if m != nil {
		ms, err := m.List(ctx)
		if err != nil {
			return nil, err
		}
		res = append(res, ms...)
	}
	by := map[string]*Bottle{}
	for _, r := range res {
		// Another state root's bottle (another user's, another test's)
		// would look broken from here, for want of its ready marker.
		if root, ok := r.Labels[backends.LabelStateRoot]; ok && root != stateRoot {
			continue
		}
		slug := r.Labels[backends.LabelSlug]
		if slug == "" && r.Kind == KindMachine && strings.HasPrefix(r.Name, backends.NamePrefix) {
			slug = strings.TrimPrefix(r.Name, backends.NamePrefix)
		}
		if slug == "" {
			continue
		}
		b := by[slug]
		if b == nil {
			b = &Bottle{Slug: slug}
			by[slug] = b
		}
		b.Resources = append(b.Resources, r)
		if a := r.Labels[backends.LabelAgent]; a != "" {
			b.Agent = a
		}
		if be := r.Labels[backends.LabelBackend]; be != "" {
			b.Backend = be
		}
		if pid, err := strconv.Atoi(r.Labels[backends.LabelLauncherPID]); err == nil {
			st, _ := strconv.ParseUint(r.Labels[backends.LabelLauncherStart], 10, 64)
			b.Launcher = Process{PID: pid, Start: st}
		}
		if b.Created.IsZero() || (!r.Created.IsZero() && r.Created.Before(b.Created)) {
			b.Created = r.Created
		}
	}
	// State dirs without resources: a launch that died before its first
	// resource, or a removal interrupted after the resources went.
	starting := map[string]bool{}
	if entries, err := os.ReadDir(stateRoot); err == nil {
		for _, e := range entries {
			if !e.IsDir() || by[e.Name()] != nil || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			rec, err := readLaunchRecord(filepath.Join(stateRoot, e.Name()))
			if err != nil {
				// A launch records itself right after creating its dir;
				// one killed in between leaves a dir without a record,
				// which is a dead launch's once it is older than that
				// moment could last.
				fi, err := e.Info()
				if err != nil {
					continue
				}
				by[e.Name()] = &Bottle{Slug: e.Name(), Created: fi.ModTime()}
				starting[e.Name()] = time.Since(fi.ModTime()) < recordGrace
				continue
			}
			by[e.Name()] = &Bottle{Slug: e.Name(), Agent: rec.Agent, Backend: rec.Backend, Launcher: rec.Launcher, Created: rec.Started}
		}
	}
	out := make([]Bottle, 0, len(by))
	for _, b := range by {
		classify(b, stateRoot, m != nil)
		if starting[b.Slug] {
			b.State, b.Reason = StateLaunching, "its launch is starting"
		}
		out = append(out, *b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Slug < out[j].Slug })
	return out, nil
}

// classify sets the bottle's state; machinesSeen says whether smolvm's
// machines were listed along with the engine's resources.
func classify(b *Bottle, stateRoot string, machinesSeen bool) {
	dir := filepath.Join(stateRoot, b.Slug)
	if b.Launcher.PID == 0 {
		if rec, err := readLaunchRecord(dir); err == nil {
			b.Launcher = rec.Launcher
		}
	}
	_, readyErr := os.Stat(filepath.Join(dir, readyFile))
	ready := readyErr == nil
	if !ready && b.Launcher.Alive() {
		b.State = StateLaunching
		return
	}
	if b.Backend == plan.BackendSmolmachines && !machinesSeen {
		b.State, b.Reason = StateUnknown, "its agent is a smolvm machine and smolvm is not available (set BOT_BOTTLE_SMOLVM or pass --smolvm)"
		return
	}
	if !ready {
		b.State, b.Reason = StateBroken, "its launch did not finish and the launching process is gone"
		return
	}
	var agent *backends.Resource
	for i, r := range b.Resources {
		role := r.Labels[backends.LabelRole]
		if role == plan.RoleAgent || role == plan.RoleMachine {
			agent = &b.Resources[i]
		}
	}
	switch {
	case agent == nil:
		b.State, b.Reason = StateBroken, "it has no agent container or machine"
	case agent.State == "running":
		b.State = StateReady
	case agent.State == "exited" || agent.State == "stopped" || agent.State == "created":
		b.State = StateStopped
	default:
		b.State, b.Reason = StateBroken, "its agent is "+agent.State
	}
}

// RemoveSlug removes every resource labelled with slug (containers first,
// then networks and volumes, and machines), then its state dir. Missing
// resources are not errors, so removals may race each other safely.
func RemoveSlug(ctx context.Context, eng backends.Engine, m Machines, stateRoot, slug string) error {
	var errs []error
	if m != nil {
		if err := m.RemoveSlug(ctx, slug); err != nil {
			errs = append(errs, err)
		}
	}
	if eng != nil {
		res, err := eng.List(ctx, backends.Labels{backends.LabelSlug: slug})
		if err != nil {
			return err
		}
		// Containers hold networks: remove them first.
		for _, kind := range []string{KindContainer, KindNetwork, KindVolume} {
			for _, r := range res {
				if r.Kind != kind {
					continue
				}
				var err error
				switch kind {
				case KindContainer:
					err = eng.RemoveContainer(ctx, r.ID)
				case KindNetwork:
					err = eng.RemoveNetwork(ctx, r.ID)
				case KindVolume:
					err = eng.RemoveVolume(ctx, r.Name)
				}
				if err != nil && !errors.Is(err, backends.ErrNotFound) {
					errs = append(errs, fmt.Errorf("removing %s %s: %w", kind, r.Name, err))
				}
			}
		}
	}
	if stateRoot != "" && slug != "" {
		if err := os.RemoveAll(filepath.Join(stateRoot, slug)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// GC removes every broken bottle and returns their slugs. It never touches
// a bottle whose launch is still alive, nor a ready or stopped one.
func GC(ctx context.Context, eng backends.Engine, m Machines, stateRoot string) ([]string, error) {
	all, err := List(ctx, eng, m, stateRoot)
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, b := range all {
		if b.State != StateBroken {
			continue
		}
		if err := RemoveSlug(ctx, eng, m, stateRoot, b.Slug); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", b.Slug, err))
			continue
		}
		removed = append(removed, b.Slug)
	}
	return removed, errors.Join(errs...)
}

// Stop stops a bottle's containers (and machine), keeping them.
func Stop(ctx context.Context, eng backends.Engine, m Machines, b Bottle) error {
	var errs []error
	for _, r := range b.Resources {
		switch r.Kind {
		case KindContainer:
			if err := eng.StopContainer(ctx, r.ID, 10*time.Second); err != nil && !errors.Is(err, backends.ErrNotFound) {
				errs = append(errs, err)
			}
		case KindMachine:
			if m == nil {
				errs = append(errs, fmt.Errorf("machine %s: smolvm is not available", r.Name))
			} else if err := m.Stop(ctx, r.Name); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
