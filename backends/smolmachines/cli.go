// Package smolmachines runs the agent of a bottle in a smolvm microVM. It
// drives the smolvm command-line tool (the stable contract; see argv.go for
// the only place that knows its syntax): machine lifecycle (Create, Start,
// Stop, Delete, List, Status), a backends.Guest (Machine) that turns exec
// and copy requests into `smolvm machine exec|cp`, the classification of
// smolvm's exec warm-up race (IsWarmupRace, WarmupRetryPolicy) and the
// conversion of the agent image into the tar smolvm boots (SaveImage).
//
// Sidecars stay in Docker; the guest reaches them on host loopback through
// smolvm's TSI networking.
package smolmachines

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/bot-bottle/bot-bottle/backends"
)

// PathEnv names the environment variable that overrides the smolvm binary
// when no --smolvm flag is given.
const PathEnv = "BOT_BOTTLE_SMOLVM"

// NamePrefix starts the name of every machine a launch creates; gc uses it
// to find machines whose labels it cannot read.
const NamePrefix = backends.NamePrefix

// MachineName returns the machine name for a bottle slug.
func MachineName(slug string) string { return NamePrefix + slug }

// maxInFlight bounds the exec/cp calls running at once against one machine.
// The guest agent serves 8 connections; more queue there and can flip the
// machine to "unreachable", so stay below with a margin.
const maxInFlight = 6

// waitDelay bounds how long a cancelled smolvm process may keep its output
// pipes open after being killed.
const waitDelay = 5 * time.Second

// ResolvePath returns the smolvm binary to run: flagValue when set, else
// $BOT_BOTTLE_SMOLVM, else "smolvm" looked up on PATH. A bare name is looked
// up on PATH; the error says where the name came from so a user knows what
// to fix.
func ResolvePath(flagValue string) (string, error) {
	name, source := flagValue, "--smolvm"
	if name == "" {
		name, source = os.Getenv(PathEnv), "$"+PathEnv
	}
	if name == "" {
		name, source = "smolvm", "default"
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("smolvm binary %q (%s) not usable: %w; install smolvm or point --smolvm / %s at it", name, source, err, PathEnv)
	}
	return path, nil
}

// CLI runs one smolvm binary. It is safe for concurrent use; it also holds
// the per-machine limit on concurrent exec/cp calls, so every Machine made
// from the same CLI for the same name shares one limit.
type CLI struct {
	path string
	// Env is added to the environment of every smolvm invocation (tests
	// point the simulator at its state directory with it).
	Env []string

	mu    sync.Mutex
	slots map[string]chan struct{}
}

// NewCLI returns a CLI running the smolvm binary at path (see ResolvePath).
func NewCLI(path string) *CLI {
	return &CLI{path: path, slots: map[string]chan struct{}{}}
}

// Path returns the smolvm binary the CLI runs.
func (c *CLI) Path() string { return c.path }

// machineSlots returns the semaphore bounding in-flight exec/cp calls for a
// machine.
func (c *CLI) machineSlots(name string) chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.slots == nil {
		c.slots = map[string]chan struct{}{}
	}
	s, ok := c.slots[name]
	if !ok {
		s = make(chan struct{}, maxInFlight)
		c.slots[name] = s
	}
	return s
}

// outcome is one finished smolvm invocation.
type outcome struct {
	stdout, stderr string
	code           int
}

// run executes smolvm with args, buffering its output. It returns an error
// only when the process could not be run or did not exit normally (killed,
// cancelled); a non-zero exit is reported in outcome.code for the caller to
// classify.
func (c *CLI) run(ctx context.Context, args []string, stdin io.Reader) (outcome, error) {
	var stdout, stderr bytes.Buffer
	code, err := c.runStreams(ctx, args, stdin, &stdout, &stderr)
	return outcome{stdout: stdout.String(), stderr: stderr.String(), code: code}, err
}

// runStreams is run with the caller's streams.
func (c *CLI) runStreams(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	cmd := exec.CommandContext(ctx, c.path, args...)
	if len(c.Env) > 0 {
		cmd.Env = append(os.Environ(), c.Env...)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	cmd.WaitDelay = waitDelay
	err := cmd.Run()
	if err == nil {
		return 0, nil
	}
	if ctx.Err() != nil {
		return 0, fmt.Errorf("smolvm %s: %w", subcommand(args), ctx.Err())
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) && exitErr.Exited() {
		return exitErr.ExitCode(), nil
	}
	return 0, fmt.Errorf("smolvm %s: %w", subcommand(args), err)
}

// runCLI runs a lifecycle subcommand, where any non-zero exit is smolvm's
// own failure.
func (c *CLI) runCLI(ctx context.Context, args []string) (outcome, error) {
	out, err := c.run(ctx, args, nil)
	if err != nil {
		return out, err
	}
	if out.code != 0 {
		return out, newCLIError(args, out)
	}
	return out, nil
}

// CLIError is a failure of smolvm itself (bad flags, unknown or stopped
// machine, a guest agent that did not answer), as opposed to a guest
// process that ran and exited non-zero, which is a *backends.ExitError.
// smolvm reports its own failures as "Error: ..." on stderr with exit 1.
type CLIError struct {
	// Subcommand is the machine subcommand that failed ("exec", "cp", ...).
	Subcommand string
	// Machine is the machine named by the invocation, when there is one.
	Machine  string
	ExitCode int
	Stderr   string
}

func newCLIError(args []string, out outcome) *CLIError {
	return &CLIError{
		Subcommand: subcommand(args),
		Machine:    machineOf(args),
		ExitCode:   out.code,
		Stderr:     out.stderr,
	}
}

// Message is smolvm's error text: the first "Error: " line without its
// prefix, else the first non-empty stderr line, else a note of the exit
// code.
func (e *CLIError) Message() string {
	var first string
	for line := range strings.Lines(e.Stderr) {
		line = strings.TrimSpace(line)
		if msg, ok := strings.CutPrefix(line, "Error: "); ok {
			return msg
		}
		if first == "" {
			first = line
		}
	}
	if first != "" {
		return first
	}
	return fmt.Sprintf("exited %d with no message", e.ExitCode)
}

// Error deliberately leaves out the argv: it carries -e values, which may
// be secrets.
func (e *CLIError) Error() string {
	if e.Machine != "" {
		return fmt.Sprintf("smolvm machine %s %s: %s", e.Subcommand, e.Machine, e.Message())
	}
	return fmt.Sprintf("smolvm machine %s: %s", e.Subcommand, e.Message())
}

// NotFound reports whether smolvm said the machine does not exist.
func (e *CLIError) NotFound() bool { return strings.Contains(e.Message(), "not found") }

// NotRunning reports whether smolvm said the machine is not running.
func (e *CLIError) NotRunning() bool { return strings.Contains(e.Message(), "not running") }

// Is makes errors.Is(err, backends.ErrNotFound) true for an unknown
// machine.
func (e *CLIError) Is(target error) bool {
	return target == backends.ErrNotFound && e.NotFound()
}

// isSmolvmFailure tells smolvm's own failure from a guest exit in an exec's
// outcome. Both exit 1; smolvm's stderr begins with "Error: ". A guest
// program that exits 1 after printing a first stderr line beginning with
// "Error: " is indistinguishable and is classified as smolvm's.
func isSmolvmFailure(out outcome) bool {
	if out.code != 1 {
		return false
	}
	for line := range strings.Lines(out.stderr) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		return strings.HasPrefix(line, "Error: ")
	}
	return false
}

// subcommand returns the machine subcommand of an argv built in argv.go.
func subcommand(args []string) string {
	if len(args) >= 2 && args[0] == "machine" {
		return args[1]
	}
	return strings.Join(args, " ")
}

// machineOf returns the machine an argv built in argv.go acts on.
func machineOf(args []string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--" {
			break
		}
		if args[i] == "--name" {
			return args[i+1]
		}
	}
	if subcommand(args) == "cp" && len(args) == 4 {
		if name, _, ok := strings.Cut(args[3], ":"); ok {
			return name
		}
	}
	return ""
}
