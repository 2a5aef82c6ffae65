package launcher

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

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
	if err := os.WriteFile(filepath.Join(p.StateDir, launchFile), b, 0o600); err != nil {
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
