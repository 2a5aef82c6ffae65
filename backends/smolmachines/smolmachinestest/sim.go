// Package smolmachinestest runs the smolmachines backend against the smolvm
// simulator (internal/smolvmsim) in tests: it builds the simulator, gives
// each test its own simulator state and log, and removes the containers the
// simulator started when the test ends.
package smolmachinestest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// buildTimeout bounds the simulator's `go build`.
const buildTimeout = 5 * time.Minute

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// Simulator builds the simulator once per test process and returns the
// directory holding it under the name "smolvm", to prepend to PATH.
func Simulator(t testing.TB) (binDir string) {
	return filepath.Dir(Binary(t))
}

// Binary builds the simulator once per test process and returns its path,
// to pass as the smolvm path (smolmachines.NewCLI).
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() { builtBin, buildErr = build() })
	if buildErr != nil {
		t.Fatalf("build smolvm simulator: %v", buildErr)
	}
	return builtBin
}

// build compiles internal/smolvmsim into one fixed directory per user,
// reused by every test process so that runs leave no trail of binaries.
// Each process rebuilds (a build-cache hit when nothing changed) into a
// temporary name and renames it into place, which concurrent test
// processes can do safely.
func build() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("bot-bottle-smolvmsim-%d", os.Getuid()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, ".smolvm-*")
	if err != nil {
		return "", err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", tmp.Name(), "./internal/smolvmsim")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./internal/smolvmsim: %v\n%s", err, out)
	}
	bin := filepath.Join(dir, "smolvm")
	if err := os.Rename(tmp.Name(), bin); err != nil {
		return "", err
	}
	return bin, nil
}

// moduleRoot finds the repository from this file's location, so the
// helper works whatever the test's working directory.
func moduleRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("cannot locate the module root")
	}
	dir := filepath.Dir(file)
	for range 10 {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		dir = filepath.Dir(dir)
	}
	return "", fmt.Errorf("no go.mod above %s", file)
}

// Sim is one test's simulator: its own state directory and invocation
// log. Pass Env to smolmachines.CLI.Env.
type Sim struct {
	Bin      string
	StateDir string
	LogPath  string
	// Env points the simulator at StateDir and LogPath, plus what New was
	// given.
	Env []string
}

// New returns a simulator with fresh state for t. extraEnv (KEY=VALUE,
// e.g. SMOLVM_SIM_RACE_P=1) is added to Env. When t ends, every container
// the simulator started for this state is removed through api.
func New(t testing.TB, api *client.Client, extraEnv ...string) *Sim {
	t.Helper()
	dir := t.TempDir()
	s := &Sim{
		Bin:      Binary(t),
		StateDir: filepath.Join(dir, "state"),
		LogPath:  filepath.Join(dir, "invocations.jsonl"),
	}
	s.Env = append([]string{"SMOLVM_SIM_STATE=" + s.StateDir, "SMOLVM_SIM_LOG=" + s.LogPath}, extraEnv...)
	t.Cleanup(func() { RemoveContainers(t, api, s.StateDir) })
	return s
}

// RemoveContainers force-removes the simulator's containers for a state
// directory, reporting (not failing on) what it could not remove.
func RemoveContainers(t testing.TB, api *client.Client, stateDir string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	list, err := api.ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: make(client.Filters).Add("label", "smolvmsim.state="+stateDir),
	})
	if err != nil {
		t.Logf("list simulator containers: %v", err)
		return
	}
	for _, c := range list.Items {
		if _, err := api.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true}); err != nil {
			t.Logf("remove simulator container %s: %v", c.ID, err)
		}
	}
}

// Invocation is one line of the simulator's log.
type Invocation struct {
	Time    time.Time `json:"time"`
	Argv    []string  `json:"argv"`
	Machine string    `json:"machine"`
	Exit    int       `json:"exit"`
	Race    bool      `json:"race"`
}

// Subcommand returns the machine subcommand invoked ("exec", "cp", ...).
func (i Invocation) Subcommand() string {
	if len(i.Argv) >= 2 && i.Argv[0] == "machine" {
		return i.Argv[1]
	}
	return strings.Join(i.Argv, " ")
}

// Log returns the simulator invocations so far, oldest first.
func (s *Sim) Log(t testing.TB) []Invocation {
	t.Helper()
	f, err := os.Open(s.LogPath)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("open simulator log: %v", err)
	}
	defer f.Close()
	var out []Invocation
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	for sc.Scan() {
		var inv Invocation
		if err := json.Unmarshal(sc.Bytes(), &inv); err != nil {
			t.Fatalf("simulator log line %q: %v", sc.Text(), err)
		}
		out = append(out, inv)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read simulator log: %v", err)
	}
	return out
}
