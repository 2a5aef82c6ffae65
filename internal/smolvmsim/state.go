package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/bot-bottle/bot-bottle/internal/atomicfile"
)

// machine is the simulator's record of one machine, one JSON file per
// machine in the state directory.
type machine struct {
	Name     string `json:"name"`
	ImageTar string `json:"image_tar"`
	// Image is the Docker image the tar loaded as (an ID or repo tag).
	Image  string            `json:"image"`
	Env    []string          `json:"env,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	CPUs   int               `json:"cpus,omitempty"`
	MemMiB int               `json:"mem,omitempty"`
	Cmd    []string          `json:"cmd"`
	// State is created, running or stopped.
	State     string    `json:"state"`
	Created   time.Time `json:"created"`
	StartedAt time.Time `json:"started_at,omitzero"`
	// Calls counts exec and cp invocations; with the seed it makes the
	// race draw of each call reproducible.
	Calls uint64 `json:"calls"`
}

// store is the state directory. Every read-modify-write happens under an
// flock on its lock file, because several simulator processes run at once.
type store struct {
	dir string
}

func openStore() (*store, error) {
	dir := os.Getenv("SMOLVM_SIM_STATE")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), fmt.Sprintf("smolvmsim-%d", os.Getuid()))
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "machines"), 0o755); err != nil {
		return nil, err
	}
	return &store{dir: dir}, nil
}

// locked runs fn holding the store's exclusive lock.
func (s *store) locked(fn func() error) error {
	f, err := os.OpenFile(filepath.Join(s.dir, "lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		return err
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return fn()
}

func (s *store) path(name string) string {
	return filepath.Join(s.dir, "machines", name+".json")
}

// errNoMachine is returned by get for an unknown machine.
var errNoMachine = errors.New("no such machine")

func (s *store) get(name string) (*machine, error) {
	b, err := os.ReadFile(s.path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errNoMachine
	}
	if err != nil {
		return nil, err
	}
	var m machine
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("state of machine %q: %w", name, err)
	}
	return &m, nil
}

// put writes a record atomically (temp file and rename), so a reader that
// does not hold the lock never sees half a file.
func (s *store) put(m *machine) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(s.path(m.Name), b, 0o600)
}

func (s *store) remove(name string) error {
	err := os.Remove(s.path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

func (s *store) all() ([]*machine, error) {
	entries, err := os.ReadDir(filepath.Join(s.dir, "machines"))
	if err != nil {
		return nil, err
	}
	var out []*machine
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, ".") || !strings.HasSuffix(n, ".json") {
			continue
		}
		m, err := s.get(strings.TrimSuffix(n, ".json"))
		if errors.Is(err, errNoMachine) {
			continue // deleted since the listing
		}
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b *machine) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// validName keeps machine names usable as file and container names.
func validName(name string) bool {
	if name == "" || len(name) > 128 || name[0] == '.' || name[0] == '-' {
		return false
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
		if !ok {
			return false
		}
	}
	return true
}
