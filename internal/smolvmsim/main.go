// Command smolvmsim stands in for the smolvm CLI in tests, on machines
// without /dev/kvm. It implements the `smolvm machine` subcommands the
// smolmachines backend drives (create, start, exec, cp, stop, delete, ls,
// status) on Docker containers through the Engine API, and fails and exits
// as smolvm does: its own errors print "Error: ..." on stderr and exit 1,
// command-line errors print "error: ..." and exit 2, and a guest exit code
// passes through.
//
// A machine is a JSON record in the state directory plus, once started, a
// container "smolvmsim-<name>" running the machine's image and command in
// the host network namespace (so the guest's 127.0.0.1 is the host's, as
// under TSI). Execs run as root and stream their output; -t is accepted
// but allocates no terminal.
//
// Environment:
//
//	SMOLVM_SIM_STATE    state directory (default $TMPDIR/smolvmsim-<uid>)
//	SMOLVM_SIM_RACE_P   probability in [0,1] that an exec or cp is killed
//	                    with exit 137, simulating the warm-up race
//	SMOLVM_SIM_RACE_MS  the race applies only this many milliseconds after
//	                    start (unset: at any time)
//	SMOLVM_SIM_SEED     seed of the race draws; each draw depends on the
//	                    seed, the machine and its exec/cp count, so runs
//	                    are reproducible
//	SMOLVM_SIM_LOG      file to which one JSON line per invocation is
//	                    appended: argv, machine, exit code, race injected
//
// The log never records -e values, which may be secrets.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// invocation is the record of one run, for SMOLVM_SIM_LOG.
type invocation struct {
	Time    time.Time `json:"time"`
	Argv    []string  `json:"argv"`
	Machine string    `json:"machine,omitempty"`
	Exit    int       `json:"exit"`
	Race    bool      `json:"race"`
}

// sim carries one invocation.
type sim struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	store          *store
	race           raceConfig
	eng            *engine
	inv            *invocation
}

// failure is an action error: "Error: msg" and exit 1.
type failure struct{ msg string }

func (f *failure) Error() string { return f.msg }

func failf(format string, a ...any) error { return &failure{fmt.Sprintf(format, a...)} }

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	inv := &invocation{Time: time.Now().UTC(), Argv: redact(args)}
	code := dispatch(ctx, args, &sim{stdin: stdin, stdout: stdout, stderr: stderr, inv: inv}, stderr)
	inv.Exit = code
	if p := os.Getenv("SMOLVM_SIM_LOG"); p != "" {
		if err := appendLog(p, inv); err != nil {
			fmt.Fprintf(stderr, "smolvmsim: log: %v\n", err)
		}
	}
	return code
}

func dispatch(ctx context.Context, args []string, s *sim, stderr io.Writer) int {
	code, err := s.command(ctx, args)
	var usage *usageError
	switch {
	case err == nil:
		return code
	case errors.As(err, &usage):
		fmt.Fprintf(stderr, "error: %s\n\nFor more information, try '--help'.\n", usage.msg)
		return 2
	default:
		fmt.Fprintf(stderr, "Error: %s\n", err)
		return 1
	}
}

func (s *sim) command(ctx context.Context, args []string) (int, error) {
	if len(args) < 2 || args[0] != "machine" {
		return 0, usagef("expected 'machine <subcommand>'")
	}
	var err error
	if s.store, err = openStore(); err != nil {
		return 0, failf("state: %v", err)
	}
	if s.race, err = raceFromEnv(); err != nil {
		return 0, failf("%v", err)
	}
	sub, rest := args[1], args[2:]
	switch sub {
	case "create":
		return s.create(ctx, rest)
	case "start":
		return s.start(ctx, rest)
	case "exec":
		return s.exec(ctx, rest)
	case "cp":
		return s.cp(ctx, rest)
	case "stop":
		return s.stop(ctx, rest)
	case "delete":
		return s.delete(ctx, rest)
	case "ls", "list":
		return s.list(ctx, rest)
	case "status":
		return s.status(ctx, rest)
	default:
		return 0, usagef("unrecognized subcommand '%s'", sub)
	}
}

func (s *sim) engine() (*engine, error) {
	if s.eng == nil {
		e, err := newEngine()
		if err != nil {
			return nil, err
		}
		s.eng = e
	}
	return s.eng, nil
}

// lookup returns a machine's record, or smolvm's not-found failure.
func (s *sim) lookup(name string) (*machine, error) {
	m, err := s.store.get(name)
	if errors.Is(err, errNoMachine) {
		return nil, failf("machine %q not found", name)
	}
	return m, err
}

func (s *sim) create(ctx context.Context, args []string) (int, error) {
	p, err := parseArgs(createFlags, args)
	if err != nil {
		return 0, err
	}
	name := p.value("name")
	s.inv.Machine = name
	if !validName(name) {
		return 0, failf("invalid machine name %q", name)
	}
	m := &machine{
		Name:     name,
		ImageTar: p.value("image"),
		Env:      p.values["env"],
		Cmd:      p.trailing,
		State:    "created",
		Created:  time.Now().UTC(),
	}
	for _, kv := range m.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return 0, usagef("invalid value '%s' for '-e <KEY=VALUE>'", kv)
		}
	}
	for _, kv := range p.values["label"] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return 0, usagef("invalid value '%s' for '--label <KEY=VALUE>'", kv)
		}
		if m.Labels == nil {
			m.Labels = map[string]string{}
		}
		m.Labels[k] = v
	}
	for flag, dst := range map[string]*int{"cpus": &m.CPUs, "mem": &m.MemMiB} {
		if v := p.value(flag); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return 0, usagef("invalid value '%s' for '--%s'", v, flag)
			}
			*dst = n
		}
	}
	if _, err := s.store.get(name); err == nil {
		return 0, failf("machine %q already exists", name)
	}
	st, err := os.Stat(m.ImageTar)
	if err != nil || !st.Mode().IsRegular() {
		return 0, failf("image %q: not a readable image archive", m.ImageTar)
	}
	eng, err := s.engine()
	if err != nil {
		return 0, failf("%v", err)
	}
	// Loading can take seconds; it runs outside the lock and the name is
	// checked again before the record is written.
	if m.Image, err = eng.loadImage(ctx, m.ImageTar); err != nil {
		return 0, failf("%v", err)
	}
	err = s.store.locked(func() error {
		if _, err := s.store.get(name); err == nil {
			return failf("machine %q already exists", name)
		}
		// A container left by a machine of the same name whose record is
		// gone (a crashed test) would block the first start.
		if err := eng.removeContainer(ctx, name); err != nil {
			return err
		}
		return s.store.put(m)
	})
	return 0, asFailure(err)
}

func (s *sim) start(ctx context.Context, args []string) (int, error) {
	return s.onMachine(args, func(eng *engine, m *machine) error {
		_, running, _, err := eng.containerState(ctx, m.Name)
		if err != nil {
			return err
		}
		if running && m.State == "running" {
			return nil
		}
		if err := eng.start(ctx, m, s.store.dir); err != nil {
			return err
		}
		m.State, m.StartedAt = "running", time.Now().UTC()
		return s.store.put(m)
	})
}

// onMachine runs fn, under the state lock, on the machine named by a
// subcommand that takes only --name (start, stop).
func (s *sim) onMachine(args []string, fn func(eng *engine, m *machine) error) (int, error) {
	p, err := parseArgs(nameOnlyFlags, args)
	if err != nil {
		return 0, err
	}
	name := p.value("name")
	s.inv.Machine = name
	eng, err := s.engine()
	if err != nil {
		return 0, failf("%v", err)
	}
	err = s.store.locked(func() error {
		m, err := s.lookup(name)
		if err != nil {
			return err
		}
		return fn(eng, m)
	})
	return 0, asFailure(err)
}

// running returns a machine that must be running, with smolvm's messages
// for an unknown or stopped one.
func (s *sim) running(ctx context.Context, name string) (*machine, error) {
	m, err := s.lookup(name)
	if err != nil {
		return nil, err
	}
	if m.State != "running" {
		return nil, failf("machine %q is not running", name)
	}
	eng, err := s.engine()
	if err != nil {
		return nil, err
	}
	if _, running, _, err := eng.containerState(ctx, name); err != nil {
		return nil, err
	} else if !running {
		return nil, failf("machine %q is not running", name)
	}
	return m, nil
}

// raceStrikes counts an exec/cp against the machine and draws whether the
// warm-up race kills it.
func (s *sim) raceStrikes(name string) (bool, error) {
	var hit bool
	err := s.store.locked(func() error {
		m, err := s.lookup(name)
		if err != nil {
			return err
		}
		m.Calls++
		hit = s.race.strikes(name, m.Calls, m.StartedAt, time.Now())
		return s.store.put(m)
	})
	s.inv.Race = hit
	return hit, err
}

// exitKilled is smolvm's exit for a guest process killed by SIGKILL.
const exitKilled = 137

func (s *sim) exec(ctx context.Context, args []string) (int, error) {
	p, err := parseArgs(execFlags, args)
	if err != nil {
		return 0, err
	}
	name := p.value("name")
	s.inv.Machine = name
	if len(p.trailing) == 0 {
		return 0, usagef("the following required arguments were not provided:\n  <COMMAND>...")
	}
	for _, kv := range p.values["env"] {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return 0, usagef("invalid value '%s' for '-e <KEY=VALUE>'", kv)
		}
	}
	if _, err := s.running(ctx, name); err != nil {
		return 0, asFailure(err)
	}
	if hit, err := s.raceStrikes(name); err != nil {
		return 0, asFailure(err)
	} else if hit {
		return exitKilled, nil
	}
	if t := p.value("timeout"); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil || d <= 0 {
			return 0, usagef("invalid value '%s' for '--timeout <DURATION>'", t)
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	code, err := s.eng.exec(ctx, name, execRequest{
		Argv:        p.trailing,
		Env:         p.values["env"],
		Workdir:     p.value("workdir"),
		Interactive: p.bools["interactive"],
		Stdin:       s.stdin,
		Stdout:      s.stdout,
		Stderr:      s.stderr,
	})
	if errors.Is(err, context.DeadlineExceeded) {
		return 124, nil
	}
	if err != nil {
		return 0, failf("exec in machine %q: %v", name, err)
	}
	return code, nil
}

func (s *sim) cp(ctx context.Context, args []string) (int, error) {
	p, err := parseArgs(cpFlags, args)
	if err != nil {
		return 0, err
	}
	src, dst := p.positional[0], p.positional[1]
	if strings.Contains(src, ":") {
		return 0, failf("copying out of a machine is not supported by the simulator")
	}
	name, guestPath, ok := strings.Cut(dst, ":")
	if !ok {
		return 0, failf("destination %q must be MACHINE:/path", dst)
	}
	s.inv.Machine = name
	if !path.IsAbs(guestPath) {
		return 0, failf("guest path %q must be absolute", guestPath)
	}
	st, err := os.Stat(src)
	if err != nil {
		return 0, failf("%s: %v", src, errors.Unwrap(err))
	}
	if st.IsDir() {
		return 0, failf("%s is a directory: machine cp copies single regular files", src)
	}
	if !st.Mode().IsRegular() {
		return 0, failf("%s is not a regular file", src)
	}
	if _, err := s.running(ctx, name); err != nil {
		return 0, asFailure(err)
	}
	if hit, err := s.raceStrikes(name); err != nil {
		return 0, asFailure(err)
	} else if hit {
		return exitKilled, nil
	}
	if err := s.eng.copyIn(ctx, name, src, guestPath); err != nil {
		return 0, failf("copy to machine %q: %v", name, err)
	}
	return 0, nil
}

func (s *sim) stop(ctx context.Context, args []string) (int, error) {
	return s.onMachine(args, func(eng *engine, m *machine) error {
		if err := eng.stop(ctx, m.Name); err != nil {
			return err
		}
		if m.State == "running" {
			m.State = "stopped"
		}
		return s.store.put(m)
	})
}

func (s *sim) delete(ctx context.Context, args []string) (int, error) {
	p, err := parseArgs(deleteFlags, args)
	if err != nil {
		return 0, err
	}
	name := p.value("name")
	s.inv.Machine = name
	if _, err := s.lookup(name); err != nil {
		return 0, err
	}
	if !p.bools["force"] {
		// smolvm asks; without an answer (no terminal, empty stdin) it
		// cancels and still exits 0.
		fmt.Fprintf(s.stderr, "Delete machine %q? [y/N] ", name)
		if !confirmed(s.stdin) {
			fmt.Fprintln(s.stdout, "Cancelled")
			return 0, nil
		}
	}
	eng, err := s.engine()
	if err != nil {
		return 0, failf("%v", err)
	}
	err = s.store.locked(func() error {
		if err := eng.removeContainer(ctx, name); err != nil {
			return err
		}
		return s.store.remove(name)
	})
	return 0, asFailure(err)
}

// confirmed reads one answer line; only "y" or "yes" confirms.
func confirmed(r io.Reader) bool {
	if r == nil {
		return false
	}
	var line []byte
	buf := make([]byte, 1)
	for len(line) < 16 {
		n, err := r.Read(buf)
		if n == 1 {
			if buf[0] == '\n' {
				break
			}
			line = append(line, buf[0])
		}
		if err != nil {
			break
		}
	}
	a := strings.ToLower(strings.TrimSpace(string(line)))
	return a == "y" || a == "yes"
}

// machineJSON is how ls and status print a machine.
type machineJSON struct {
	Name    string            `json:"name"`
	State   string            `json:"state"`
	PID     *int              `json:"pid"`
	Image   string            `json:"image"`
	Labels  map[string]string `json:"labels"`
	CPUs    int               `json:"cpus,omitempty"`
	MemMiB  int               `json:"mem,omitempty"`
	Created time.Time         `json:"created"`
}

// describe reports a machine, reconciling the record with its container:
// a machine recorded as running whose container is gone or dead reads as
// stopped.
func (s *sim) describe(ctx context.Context, m *machine) (machineJSON, error) {
	out := machineJSON{
		Name: m.Name, State: m.State, Image: m.ImageTar, Labels: m.Labels,
		CPUs: m.CPUs, MemMiB: m.MemMiB, Created: m.Created,
	}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	if m.State != "running" {
		return out, nil
	}
	eng, err := s.engine()
	if err != nil {
		return out, err
	}
	_, running, pid, err := eng.containerState(ctx, m.Name)
	if err != nil {
		return out, err
	}
	if !running {
		out.State = "stopped"
		return out, nil
	}
	out.PID = &pid
	return out, nil
}

func (s *sim) list(ctx context.Context, args []string) (int, error) {
	p, err := parseArgs(lsFlags, args)
	if err != nil {
		return 0, err
	}
	ms, err := s.store.all()
	if err != nil {
		return 0, failf("%v", err)
	}
	out := make([]machineJSON, 0, len(ms))
	for _, m := range ms {
		d, err := s.describe(ctx, m)
		if err != nil {
			return 0, failf("%v", err)
		}
		out = append(out, d)
	}
	if p.bools["json"] {
		return 0, asFailure(writeJSON(s.stdout, out))
	}
	tw := tabwriter.NewWriter(s.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tIMAGE")
	for _, d := range out {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", d.Name, d.State, d.Image)
	}
	return 0, asFailure(tw.Flush())
}

func (s *sim) status(ctx context.Context, args []string) (int, error) {
	p, err := parseArgs(statusFlags, args)
	if err != nil {
		return 0, err
	}
	name := p.value("name")
	s.inv.Machine = name
	m, err := s.lookup(name)
	if err != nil {
		return 0, err
	}
	d, err := s.describe(ctx, m)
	if err != nil {
		return 0, failf("%v", err)
	}
	if p.bools["json"] {
		return 0, asFailure(writeJSON(s.stdout, d))
	}
	_, err = fmt.Fprintf(s.stdout, "%s: %s\n", d.Name, d.State)
	return 0, asFailure(err)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// asFailure keeps usage errors and failures as they are and turns any
// other error into a failure.
func asFailure(err error) error {
	if err == nil {
		return nil
	}
	var f *failure
	var u *usageError
	if errors.As(err, &f) || errors.As(err, &u) {
		return err
	}
	return &failure{err.Error()}
}

// redact drops the values of -e/--env flags from an argv for the log.
func redact(args []string) []string {
	out := make([]string, len(args))
	copy(out, args)
	for i := 0; i < len(out); i++ {
		if out[i] == "--" {
			break
		}
		switch {
		case (out[i] == "-e" || out[i] == "--env") && i+1 < len(out):
			out[i+1] = redactKV(out[i+1])
			i++
		case strings.HasPrefix(out[i], "--env="):
			out[i] = "--env=" + redactKV(strings.TrimPrefix(out[i], "--env="))
		}
	}
	return out
}

func redactKV(kv string) string {
	k, _, _ := strings.Cut(kv, "=")
	return k + "=<redacted>"
}

// appendLog appends one JSON line with a single write, which O_APPEND
// keeps whole when several simulator processes log at once.
func appendLog(p string, inv *invocation) error {
	b, err := json.Marshal(inv)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
