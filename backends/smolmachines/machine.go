package smolmachines

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"

	"github.com/bot-bottle/bot-bottle/backends"
)

// Machine is a smolvm machine seen as a backends.Guest: every call becomes
// one or two `smolvm machine exec|cp` invocations. At most six of them run
// at once per machine, however many goroutines call (see maxInFlight).
//
// Calls made right after Start can hit smolvm's warm-up race; Machine does
// not retry them itself (a retry belongs to the step that knows whether its
// work is idempotent): steps attach WarmupRetryPolicy.
type Machine struct {
	cli   *CLI
	name  string
	slots chan struct{}
}

var _ backends.Guest = (*Machine)(nil)

// NewMachine returns the Guest for the machine called name. Machines made
// from the same CLI for the same name share the in-flight limit.
func NewMachine(cli *CLI, name string) *Machine {
	return &Machine{cli: cli, name: name, slots: cli.machineSlots(name)}
}

// Name returns the machine name.
func (m *Machine) Name() string { return m.name }

// acquire takes one of the machine's in-flight slots, or gives up when ctx
// ends first.
func (m *Machine) acquire(ctx context.Context) (release func(), err error) {
	select {
	case m.slots <- struct{}{}:
		return func() { <-m.slots }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("smolvm machine %s: waiting for a free exec slot: %w", m.name, ctx.Err())
	}
}

// Exec runs req.Argv in the guest.
//
// smolvm's exec runs as root and has no user flag, so a non-root req.User
// is expressed by prefixing `runuser -u USER --`; HOME and USER are not
// changed by that, so callers that need them pass them in req.Env. The
// provisioning steps already put `runuser -u node --` in their argv and
// leave User empty: User is for callers that don't.
//
// A guest process that exits non-zero yields its result and a
// *backends.ExitError; a failure of smolvm itself (stopped or unknown
// machine, guest agent unreachable) yields a *CLIError.
func (m *Machine) Exec(ctx context.Context, req backends.ExecRequest) (backends.ExecResult, error) {
	if len(req.Argv) == 0 {
		return backends.ExecResult{}, fmt.Errorf("smolvm machine exec %s: empty argv", m.name)
	}
	argv := guestArgv(req)
	args := execArgs(m.name, execSpec{
		Env:         req.Env,
		Workdir:     req.Workdir,
		Interactive: req.Stdin != nil,
	}, argv)

	release, err := m.acquire(ctx)
	if err != nil {
		return backends.ExecResult{}, err
	}
	out, err := m.cli.run(ctx, args, req.Stdin)
	release()
	res := backends.ExecResult{ExitCode: out.code, Stdout: out.stdout, Stderr: out.stderr}
	switch {
	case err != nil:
		return res, err
	case out.code == 0:
		return res, nil
	case isSmolvmFailure(out):
		return res, newCLIError(args, out)
	default:
		return res, &backends.ExitError{Argv: argv, Result: res}
	}
}

// attachStderrKeep is how much of an attached session's stderr is kept to
// recognise smolvm's own "Error: ..." failure; the rest only streams.
const attachStderrKeep = 4096

// Attach runs req in the guest with stdin, stdout and stderr streamed as
// they come, for an interactive session (`bottle exec`, the agent's
// terminal); with tty a terminal is allocated in the guest, and the caller
// puts its own terminal in raw mode. req.Stdin is ignored in favour of
// stdin; req.User is handled as in Exec. The session holds one of the
// machine's in-flight slots while it lasts.
//
// The guest's exit code is returned with a nil error, zero or not; a
// failure of smolvm itself is a *CLIError.
func (m *Machine) Attach(ctx context.Context, req backends.ExecRequest, stdin io.Reader, stdout, stderr io.Writer, tty bool) (int, error) {
	if len(req.Argv) == 0 {
		return 0, fmt.Errorf("smolvm machine exec %s: empty argv", m.name)
	}
	args := execArgs(m.name, execSpec{
		Env:         req.Env,
		Workdir:     req.Workdir,
		Interactive: stdin != nil,
		TTY:         tty,
		Stream:      true,
	}, guestArgv(req))
	release, err := m.acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer release()

	head := &prefixBuffer{max: attachStderrKeep}
	code, err := m.cli.runStreams(ctx, args, stdin, stdout, io.MultiWriter(stderr, head))
	if err != nil {
		return 0, err
	}
	if out := (outcome{code: code, stderr: head.String()}); isSmolvmFailure(out) {
		return code, newCLIError(args, out)
	}
	return code, nil
}

// guestArgv is req.Argv, run as req.User: smolvm's exec runs as root and
// has no user flag, so another user is reached through runuser.
func guestArgv(req backends.ExecRequest) []string {
	if u := req.User; u != "" && u != "root" && u != "0" && u != "0:0" {
		return append([]string{"runuser", "-u", u, "--"}, req.Argv...)
	}
	return req.Argv
}

// prefixBuffer keeps the first max bytes written to it and accepts the
// rest without keeping it.
type prefixBuffer struct {
	max int
	buf bytes.Buffer
}

func (p *prefixBuffer) Write(b []byte) (int, error) {
	if room := p.max - p.buf.Len(); room > 0 {
		p.buf.Write(b[:min(room, len(b))])
	}
	return len(b), nil
}

func (p *prefixBuffer) String() string { return p.buf.String() }

// CopyFile copies one regular host file to an absolute guest path with
// `smolvm machine cp`, which creates parent directories and leaves the file
// owned by root.
func (m *Machine) CopyFile(ctx context.Context, hostPath, guestPath string) error {
	if !path.IsAbs(guestPath) {
		return fmt.Errorf("smolvm machine cp %s: guest path %q is not absolute", m.name, guestPath)
	}
	st, err := os.Stat(hostPath)
	if err != nil {
		return fmt.Errorf("smolvm machine cp %s: %w", m.name, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("smolvm machine cp %s: %s is not a regular file (use CopyDir for directories)", m.name, hostPath)
	}
	return m.cp(ctx, hostPath, guestPath)
}

func (m *Machine) cp(ctx context.Context, hostPath, guestPath string) error {
	args := cpArgs(hostPath, m.name, guestPath)
	release, err := m.acquire(ctx)
	if err != nil {
		return err
	}
	out, err := m.cli.run(ctx, args, nil)
	release()
	if err != nil {
		return err
	}
	if out.code != 0 {
		// cp runs no guest program: every failure is smolvm's.
		return newCLIError(args, out)
	}
	return nil
}

// unpackScript extracts a copied tar and removes it in one exec, which
// halves the execs exposed to the warm-up race. It is a constant; the paths
// travel as positional arguments ($1 the tar, $2 the parent directory) and
// are never parsed by the shell. tar's exit status is kept across the rm.
const unpackScript = `mkdir -p -- "$2" && tar -xf "$1" -C "$2"; rc=$?; rm -f -- "$1"; exit $rc`

// CopyDir copies a host directory tree to an absolute guest path: the tree
// is archived on the host (see writeTree) with its top directory renamed to
// guestPath's base name, copied into the guest's /tmp and unpacked in
// guestPath's parent. Existing guest files are overwritten, others kept;
// everything lands owned by root. Symlinks are copied as links; sockets,
// pipes and devices are skipped.
func (m *Machine) CopyDir(ctx context.Context, hostDir, guestPath string) error {
	guestPath = path.Clean(guestPath)
	if !path.IsAbs(guestPath) || guestPath == "/" {
		return fmt.Errorf("smolvm CopyDir %s: guest path %q must be absolute and not /", m.name, guestPath)
	}
	tmp, err := os.CreateTemp("", "bot-bottle-copydir-*.tar")
	if err != nil {
		return fmt.Errorf("smolvm CopyDir %s: %w", m.name, err)
	}
	defer os.Remove(tmp.Name())
	werr := writeTree(tmp, hostDir, path.Base(guestPath))
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("smolvm CopyDir %s: archive %s: %w", m.name, hostDir, werr)
	}

	guestTar := "/tmp/bot-bottle-" + randomHex(8) + ".tar"
	if err := m.cp(ctx, tmp.Name(), guestTar); err != nil {
		return fmt.Errorf("smolvm CopyDir %s: copy archive for %s: %w", m.name, guestPath, err)
	}
	_, err = m.Exec(ctx, backends.ExecRequest{
		Argv: []string{"sh", "-c", unpackScript, "sh", guestTar, path.Dir(guestPath)},
	})
	if err != nil {
		return fmt.Errorf("smolvm CopyDir %s: unpack into %s: %w", m.name, guestPath, err)
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}
