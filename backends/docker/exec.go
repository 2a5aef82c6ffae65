package docker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"

	"github.com/bot-bottle/bot-bottle/backends"
)

// The engine can report an exec as running for a moment after its output
// stream closed; exit codes are polled within these bounds.
const (
	execInspectInterval = 20 * time.Millisecond
	execInspectTimeout  = 10 * time.Second
)

// Guest execs and copies into one container.
type Guest struct {
	e         *Engine
	container string
}

// Guest returns the Guest for a container.
func (e *Engine) Guest(nameOrID string) backends.Guest {
	return &Guest{e: e, container: nameOrID}
}

// Exec runs req in the container; see Engine.Exec.
func (g *Guest) Exec(ctx context.Context, req backends.ExecRequest) (backends.ExecResult, error) {
	return g.e.Exec(ctx, g.container, req)
}

// CopyFile copies a host file into the container; see Engine.CopyFile.
func (g *Guest) CopyFile(ctx context.Context, hostPath, guestPath string) error {
	return g.e.CopyFile(ctx, g.container, hostPath, guestPath)
}

// CopyDir copies a host tree into the container; see Engine.CopyDir.
func (g *Guest) CopyDir(ctx context.Context, hostDir, guestPath string) error {
	return g.e.CopyDir(ctx, g.container, hostDir, guestPath)
}

// Exec runs req.Argv in a running container, capturing stdout and stderr
// separately. A process that exits non-zero yields its result together with
// a *backends.ExitError. A missing container yields an error wrapping
// backends.ErrNotFound.
func (e *Engine) Exec(ctx context.Context, nameOrID string, req backends.ExecRequest) (backends.ExecResult, error) {
	var stdout, stderr bytes.Buffer
	code, err := e.runExec(ctx, nameOrID, req, req.Stdin, &stdout, &stderr, false)
	res := backends.ExecResult{ExitCode: code, Stdout: stdout.String(), Stderr: stderr.String()}
	if err != nil {
		return res, err
	}
	if code != 0 {
		return res, &backends.ExitError{Argv: req.Argv, Result: res}
	}
	return res, nil
}

// ExecAttach runs req.Argv in a running container with its streams wired to
// the given reader and writers (req.Stdin is ignored in favour of stdin), for
// interactive use. With tty the process gets a terminal and its output
// arrives on stdout only. The exit code is returned with a nil error whenever
// the process ran, whatever the code; err reports only failures to run it or
// to carry its streams.
func (e *Engine) ExecAttach(ctx context.Context, nameOrID string, req backends.ExecRequest, stdin io.Reader, stdout, stderr io.Writer, tty bool) (int, error) {
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	return e.runExec(ctx, nameOrID, req, stdin, stdout, stderr, tty)
}

func (e *Engine) runExec(ctx context.Context, nameOrID string, req backends.ExecRequest, stdin io.Reader, stdout, stderr io.Writer, tty bool) (int, error) {
	if len(req.Argv) == 0 {
		return 0, errors.New("exec: empty argv")
	}
	prog := req.Argv[0]
	created, err := e.cli.ExecCreate(ctx, nameOrID, client.ExecCreateOptions{
		User:         req.User,
		TTY:          tty,
		AttachStdin:  stdin != nil,
		AttachStdout: true,
		AttachStderr: true,
		Env:          req.Env,
		WorkingDir:   req.Workdir,
		Cmd:          req.Argv,
	})
	if err != nil {
		return 0, wrapErr(err, "exec %s in %s", prog, nameOrID)
	}
	att, err := e.cli.ExecAttach(ctx, created.ID, client.ExecAttachOptions{TTY: tty})
	if err != nil {
		return 0, wrapErr(err, "exec %s in %s: attach", prog, nameOrID)
	}
	defer att.Close()
	// Closing the connection is the only way to unblock the stream copy
	// when the caller gives up.
	stop := context.AfterFunc(ctx, att.Close)
	defer stop()

	if stdin != nil {
		go func() {
			_, _ = io.Copy(att.Conn, stdin)
			// Half-close so the process sees EOF on its stdin while its
			// output keeps flowing back.
			_ = att.CloseWrite()
		}()
	}
	if tty {
		_, err = io.Copy(stdout, att.Reader)
	} else {
		_, err = stdcopy.StdCopy(stdout, stderr, att.Reader)
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return 0, fmt.Errorf("exec %s in %s: %w", prog, nameOrID, ctxErr)
	}
	if err != nil {
		return 0, fmt.Errorf("exec %s in %s: reading output: %w", prog, nameOrID, err)
	}
	return e.execExitCode(ctx, created.ID, prog, nameOrID)
}

// execExitCode polls the finished exec for its exit code, bounded in time.
func (e *Engine) execExitCode(ctx context.Context, execID, prog, nameOrID string) (int, error) {
	deadline := time.Now().Add(execInspectTimeout)
	for {
		res, err := e.cli.ExecInspect(ctx, execID, client.ExecInspectOptions{})
		if err != nil {
			return 0, wrapErr(err, "exec %s in %s: inspect", prog, nameOrID)
		}
		if !res.Running {
			return res.ExitCode, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("exec %s in %s: still running %s after its output closed", prog, nameOrID, execInspectTimeout)
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("exec %s in %s: %w", prog, nameOrID, ctx.Err())
		case <-time.After(execInspectInterval):
		}
	}
}
