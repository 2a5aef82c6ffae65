package gitgate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Environment variables that carry values to the wrapper scripts and to
// the re-invoked bottle binary.
const (
	EnvSelf          = "BOT_BOTTLE_SELF"
	EnvConfig        = "BOT_BOTTLE_GITGATE_CONFIG"
	EnvIdentity      = "BOT_BOTTLE_GIT_IDENTITY"
	EnvSSH           = "BOT_BOTTLE_SSH"
	EnvSSHKnownHosts = "BOT_BOTTLE_SSH_KNOWN_HOSTS"
	EnvSSHStrict     = "BOT_BOTTLE_SSH_STRICT"
)

// Wrapper scripts. They are constants: the values they need arrive as
// environment variables and positional arguments, so nothing from the
// config is ever parsed by a shell.
const (
	accessHookScript = "#!/bin/sh\nexec \"$" + EnvSelf + "\" sidecar git-gate-hook access \"$@\"\n"
	preReceiveScript = "#!/bin/sh\nexec \"$" + EnvSelf + "\" sidecar git-gate-hook pre-receive \"$@\"\n"
	gitSSHScript     = "#!/bin/sh\nexec \"$" + EnvSelf + "\" sidecar git-ssh \"$@\"\n"
)

// Timeouts for upstream operations; an unreachable upstream must not hang
// the agent's fetch or push forever.
const (
	fetchTimeout = 2 * time.Minute
	pushTimeout  = 5 * time.Minute
	localTimeout = 30 * time.Second
)

// gitEnv is the environment for git commands that may talk to repo's
// upstream: ssh goes through the git-ssh wrapper with repo's identity.
func (c *Config) gitEnv(r *Repo) []string {
	env := os.Environ()
	env = append(env,
		"GIT_TERMINAL_PROMPT=0",
		"GIT_SSH="+filepath.Join(c.gateDir(), "git-ssh"),
		"GIT_SSH_VARIANT=ssh",
		EnvSSH+"="+c.ssh(),
		EnvSSHStrict+"="+c.strict(),
	)
	if c.self != "" {
		env = append(env, EnvSelf+"="+c.self, EnvConfig+"="+c.cfgPath)
	}
	env = append(env, EnvSSHKnownHosts+"="+c.knownHosts())
	if r != nil && r.IdentityFile != "" {
		env = append(env, EnvIdentity+"="+r.IdentityFile)
	}
	return env
}

// knownHosts is the configured file, else one in the gate's private dir:
// never ~/.ssh, which a read-only root filesystem or an unnamed uid would
// make unwritable.
func (c *Config) knownHosts() string {
	if c.SSHKnownHostsFile != "" {
		return c.SSHKnownHostsFile
	}
	return filepath.Join(c.gateDir(), "known_hosts")
}

func (c *Config) strict() string {
	if c.SSHStrictHostKeyChecking == "" {
		return StrictYes
	}
	return c.SSHStrictHostKeyChecking
}

// gitResult is a finished git command's output.
type gitResult struct {
	stdout, stderr string
}

// GitError is a git command that failed; Stderr is git's own message.
type GitError struct {
	Args   []string
	Stderr string
	Err    error
}

func (e *GitError) Error() string {
	msg := strings.TrimSpace(e.Stderr)
	if msg == "" {
		msg = e.Err.Error()
	}
	return fmt.Sprintf("git %s: %s", strings.Join(e.Args, " "), msg)
}

func (e *GitError) Unwrap() error { return e.Err }

// runGit runs git with argv (no shell) in dir, bounded by timeout. The
// process group is killed on timeout so ssh children do not linger.
func runGit(ctx context.Context, git, dir string, env []string, timeout time.Duration, args ...string) (gitResult, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, git, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := gitResult{stdout: out.String(), stderr: errb.String()}
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("timed out after %s: %w", timeout, err)
		}
		return res, &GitError{Args: args, Stderr: res.stderr, Err: err}
	}
	return res, nil
}
