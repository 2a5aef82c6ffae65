package smolmachines

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The unit tests run this test binary as a fake smolvm: TestMain turns into
// the fake when fakeEnv is set. The fake records its argv (and stdin),
// prints and exits as told, and can measure how many fakes run at once.
const fakeEnv = "SMOLMACHINES_FAKE_SMOLVM"

func TestMain(m *testing.M) {
	if os.Getenv(fakeEnv) == "1" {
		os.Exit(fakeSmolvm())
	}
	os.Exit(m.Run())
}

// fakeCall is one fake invocation as recorded in FAKE_LOG.
type fakeCall struct {
	Args  []string `json:"args"`
	Stdin string   `json:"stdin"`
}

// fakeSmolvm is configured by environment:
//
//	FAKE_LOG         file to append a fakeCall JSON line to
//	FAKE_STDOUT      printed on stdout
//	FAKE_STDERR      printed on stderr
//	FAKE_EXIT        exit code
//	FAKE_SLEEP_MS    time to stay running
//	FAKE_COUNT_DIR   directory of per-machine in-flight counters
//	FAKE_ONLY        apply FAKE_STDERR and FAKE_EXIT only to this subcommand
//	FAKE_CP_CAPTURE  directory into which cp copies its source file, named
//	                 after the guest path's base
func fakeSmolvm() int {
	args := os.Args[1:]
	call := fakeCall{Args: args}
	if contains(args, "-i") {
		b, _ := io.ReadAll(os.Stdin)
		call.Stdin = string(b)
	}
	if p := os.Getenv("FAKE_LOG"); p != "" {
		b, _ := json.Marshal(call)
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			fmt.Fprintln(os.Stderr, "fake:", err)
			return 99
		}
		f.Write(append(b, '\n'))
		f.Close()
	}
	if dir := os.Getenv("FAKE_CP_CAPTURE"); dir != "" && len(args) == 4 && args[1] == "cp" {
		_, guest, _ := strings.Cut(args[3], ":")
		b, err := os.ReadFile(args[2])
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, filepath.Base(guest)), b, 0o644)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "fake:", err)
			return 99
		}
	}
	if dir := os.Getenv("FAKE_COUNT_DIR"); dir != "" {
		name := machineOf(args)
		counterAdd(filepath.Join(dir, name), 1)
		counterAdd(filepath.Join(dir, "ALL"), 1)
		defer counterAdd(filepath.Join(dir, name), -1)
		defer counterAdd(filepath.Join(dir, "ALL"), -1)
	}
	if ms, _ := strconv.Atoi(os.Getenv("FAKE_SLEEP_MS")); ms > 0 {
		time.Sleep(time.Duration(ms) * time.Millisecond)
	}
	fmt.Fprint(os.Stdout, os.Getenv("FAKE_STDOUT"))
	if only := os.Getenv("FAKE_ONLY"); only != "" && only != subcommand(args) {
		return 0
	}
	fmt.Fprint(os.Stderr, os.Getenv("FAKE_STDERR"))
	code, _ := strconv.Atoi(os.Getenv("FAKE_EXIT"))
	return code
}

// counterAdd adds delta to the "current max" pair stored in file p under
// an flock, raising max when current exceeds it.
func counterAdd(p string, delta int) {
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		panic(err)
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	b, _ := io.ReadAll(f)
	var cur, max int
	fmt.Sscan(string(b), &cur, &max)
	cur += delta
	if cur > max {
		max = cur
	}
	f.Truncate(0)
	f.WriteAt([]byte(fmt.Sprintf("%d %d", cur, max)), 0)
}

func contains(args []string, s string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == s {
			return true
		}
	}
	return false
}

// fake is a CLI running this test binary as smolvm.
type fake struct {
	cli *CLI
	log string
}

func newFake(t *testing.T, env ...string) *fake {
	t.Helper()
	self, err := os.Executable()
	require.NoError(t, err)
	log := filepath.Join(t.TempDir(), "calls.jsonl")
	cli := NewCLI(self)
	cli.Env = append([]string{fakeEnv + "=1", "FAKE_LOG=" + log}, env...)
	return &fake{cli: cli, log: log}
}

func (f *fake) calls(t *testing.T) []fakeCall {
	t.Helper()
	b, err := os.ReadFile(f.log)
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	var out []fakeCall
	for line := range strings.Lines(string(b)) {
		var c fakeCall
		require.NoError(t, json.Unmarshal([]byte(line), &c))
		out = append(out, c)
	}
	return out
}

// readCounter returns the max recorded in a FAKE_COUNT_DIR counter.
func readCounter(t *testing.T, p string) (cur, max int) {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	_, err = fmt.Sscan(string(b), &cur, &max)
	require.NoError(t, err)
	return cur, max
}
