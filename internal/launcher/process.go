package launcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/dag"
	"github.com/bot-bottle/bot-bottle/internal/atomicfile"
	"github.com/bot-bottle/bot-bottle/internal/plan"
)

// Process identifies a process across pid reuse: its pid and its start
// time in clock ticks since boot (field 22 of /proc/<pid>/stat).
type Process struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start"`
}

// Self returns the identity of this process.
func Self() (Process, error) {
	pid := os.Getpid()
	st, err := processStart(pid)
	if err != nil {
		return Process{}, fmt.Errorf("reading this process's start time: %w", err)
	}
	return Process{PID: pid, Start: st}, nil
}

// Alive reports whether the process still runs (same pid, same start).
func (p Process) Alive() bool {
	if p.PID <= 0 {
		return false
	}
	st, err := processStart(p.PID)
	return err == nil && st == p.Start
}

func processStart(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is parenthesised and may hold spaces:
	// split after its closing parenthesis.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	fields := strings.Fields(s[i+1:])
	// fields[0] is field 3 (state); start time is field 22.
	if len(fields) < 20 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	// A zombie has exited: its launch is over.
	if fields[0] == "Z" {
		return 0, fmt.Errorf("process %d is a zombie", pid)
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// launchRecord is the state dir's record of who launched the bottle.
type launchRecord struct {
	Slug     string    `json:"slug"`
	Agent    string    `json:"agent"`
	Backend  string    `json:"backend"`
	Launcher Process   `json:"launcher"`
	Started  time.Time `json:"started"`
	Machine  string    `json:"machine,omitempty"`
}

func writeLaunchRecord(p *plan.Plan, me Process) error {
	rec := launchRecord{Slug: p.Slug, Agent: p.Agent, Backend: p.Backend, Launcher: me, Started: time.Now().UTC(), Machine: p.Names.Machine}
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	// Written aside and renamed, so a crash never leaves a torn record.
	if err := atomicfile.WriteFile(filepath.Join(p.StateDir, launchFile), b, 0o600); err != nil {
		return fmt.Errorf("writing the launch record: %w", err)
	}
	return nil
}

func readLaunchRecord(stateDir string) (launchRecord, error) {
	var rec launchRecord
	b, err := os.ReadFile(filepath.Join(stateDir, launchFile))
	if err != nil {
		return rec, err
	}
	return rec, json.Unmarshal(b, &rec)
}

// ErrSlugTaken is returned (wrapped) when the slug a launch drew belongs
// to a bottle that exists already.
var ErrSlugTaken = errors.New("slug taken by another bottle")

// claimSlug creates the launch's state dir, which must not exist, after
// making sure no resource or machine carries the slug. A launch's rollback
// sweeps everything labelled with its slug: had it drawn the slug of a
// bottle that exists (in this state root, or another one on the same
// engine), a failure would destroy that bottle. Nothing is created when
// the slug is taken.
func claimSlug(ctx context.Context, o Options, p *plan.Plan) error {
	taken := fmt.Errorf("%s: %w; launch again to draw another", p.Slug, ErrSlugTaken)
	if err := os.MkdirAll(filepath.Dir(p.StateDir), 0o700); err != nil {
		return fmt.Errorf("creating the state root: %w", err)
	}
	if err := os.Mkdir(p.StateDir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return taken
		}
		return fmt.Errorf("creating the state dir: %w", err)
	}
	var found []backends.Resource
	res, err := o.Engine.List(ctx, backends.Labels{backends.LabelSlug: p.Slug})
	found = append(found, res...)
	if err == nil && o.Machines != nil {
		res, err = o.Machines.List(ctx)
		for _, r := range res {
			if r.Labels[backends.LabelSlug] == p.Slug || (r.Name != "" && r.Name == p.Names.Machine) {
				found = append(found, r)
			}
		}
	}
	if err != nil || len(found) > 0 {
		_ = os.Remove(p.StateDir)
		if ctx.Err() != nil {
			// Ctrl-C before the first step: say so, as a cancelled graph does.
			return &dag.StepError{Cancelled: true, Err: context.Cause(ctx)}
		}
		if err != nil {
			return fmt.Errorf("checking that slug %s is free: %w", p.Slug, err)
		}
		return taken
	}
	return nil
}
