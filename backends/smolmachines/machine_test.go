package smolmachines

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/internal/testskip"
)

func TestExecArgvReachesSmolvm(t *testing.T) {
	f := newFake(t, "FAKE_STDOUT=out", "FAKE_STDERR=err")
	m := NewMachine(f.cli, "bot-bottle-demo-abc12")
	res, err := m.Exec(context.Background(), backends.ExecRequest{
		Argv:    []string{"git", "config", "--global", "user.name", "A B; rm -rf /"},
		Env:     []string{"HOME=/home/node", "USER=node"},
		User:    "node",
		Workdir: "/home/node/workspace",
		Stdin:   strings.NewReader("payload\n"),
	})
	require.NoError(t, err)
	assert.Equal(t, backends.ExecResult{ExitCode: 0, Stdout: "out", Stderr: "err"}, res)
	calls := f.calls(t)
	require.Len(t, calls, 1)
	assert.Equal(t, []string{"machine", "exec", "--name", "bot-bottle-demo-abc12",
		"-e", "HOME=/home/node", "-e", "USER=node", "-w", "/home/node/workspace", "-i", "--",
		"runuser", "-u", "node", "--", "git", "config", "--global", "user.name", "A B; rm -rf /"}, calls[0].Args)
	assert.Equal(t, "payload\n", calls[0].Stdin)
}

func TestExecRootUserHasNoPrefix(t *testing.T) {
	for _, user := range []string{"", "root", "0"} {
		f := newFake(t)
		_, err := NewMachine(f.cli, "m").Exec(context.Background(), backends.ExecRequest{Argv: []string{"id"}, User: user})
		require.NoError(t, err)
		assert.Equal(t, []string{"machine", "exec", "--name", "m", "--", "id"}, f.calls(t)[0].Args, "user %q", user)
	}
}

func TestExecErrors(t *testing.T) {
	cases := []struct {
		name       string
		env        []string
		wantExit   int  // non-zero: a *backends.ExitError with this code
		wantCLI    bool // a *CLIError
		wantRace   bool
		wantStderr string
	}{
		{name: "guest exit", env: []string{"FAKE_EXIT=3", "FAKE_STDERR=fatal: boom\n"}, wantExit: 3, wantStderr: "fatal: boom\n"},
		{name: "guest exit 1", env: []string{"FAKE_EXIT=1", "FAKE_STDERR=usage: x\n"}, wantExit: 1, wantStderr: "usage: x\n"},
		{name: "guest SIGKILL", env: []string{"FAKE_EXIT=137"}, wantExit: 137, wantRace: true},
		{name: "not running", env: []string{"FAKE_EXIT=1", "FAKE_STDERR=Error: machine \"m\" is not running\n"},
			wantCLI: true, wantRace: true, wantStderr: "Error: machine \"m\" is not running\n"},
		{name: "not found", env: []string{"FAKE_EXIT=1", "FAKE_STDERR=Error: machine \"m\" not found\n"},
			wantCLI: true, wantStderr: "Error: machine \"m\" not found\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, tc.env...)
			res, err := NewMachine(f.cli, "m").Exec(context.Background(), backends.ExecRequest{Argv: []string{"false"}, User: "node"})
			require.Error(t, err)
			assert.Equal(t, tc.wantStderr, res.Stderr)
			assert.Equal(t, tc.wantRace, IsWarmupRace(err))
			var exitErr *backends.ExitError
			var cliErr *CLIError
			if tc.wantCLI {
				require.ErrorAs(t, err, &cliErr)
				assert.False(t, errors.As(err, &exitErr))
				assert.Equal(t, "exec", cliErr.Subcommand)
				assert.Equal(t, "m", cliErr.Machine)
				return
			}
			require.ErrorAs(t, err, &exitErr)
			assert.False(t, errors.As(err, &cliErr))
			assert.Equal(t, tc.wantExit, exitErr.Result.ExitCode)
			assert.Equal(t, []string{"runuser", "-u", "node", "--", "false"}, exitErr.Argv)
		})
	}
}

func TestExecRejectsEmptyArgv(t *testing.T) {
	f := newFake(t)
	_, err := NewMachine(f.cli, "m").Exec(context.Background(), backends.ExecRequest{})
	require.Error(t, err)
	assert.Empty(t, f.calls(t))
}

func TestExecMissingBinary(t *testing.T) {
	cli := NewCLI(filepath.Join(t.TempDir(), "no-smolvm"))
	_, err := NewMachine(cli, "m").Exec(context.Background(), backends.ExecRequest{Argv: []string{"true"}})
	require.Error(t, err)
	var exitErr *backends.ExitError
	var cliErr *CLIError
	assert.False(t, errors.As(err, &exitErr))
	assert.False(t, errors.As(err, &cliErr))
	assert.False(t, IsWarmupRace(err))
}

func TestExecHonoursContext(t *testing.T) {
	f := newFake(t, "FAKE_SLEEP_MS=10000")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := NewMachine(f.cli, "m").Exec(ctx, backends.ExecRequest{Argv: []string{"sleep"}})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 5*time.Second)
}

func TestCopyFile(t *testing.T) {
	host := filepath.Join(t.TempDir(), "prompt.txt")
	require.NoError(t, os.WriteFile(host, []byte("hi"), 0o600))

	f := newFake(t)
	m := NewMachine(f.cli, "m")
	require.NoError(t, m.CopyFile(context.Background(), host, "/home/node/.claude-bottle-prompt.txt"))
	assert.Equal(t, []string{"machine", "cp", host, "m:/home/node/.claude-bottle-prompt.txt"}, f.calls(t)[0].Args)

	assert.Error(t, m.CopyFile(context.Background(), host, "relative/path"))
	assert.Error(t, m.CopyFile(context.Background(), filepath.Dir(host), "/x"), "a directory")
	assert.Error(t, m.CopyFile(context.Background(), host+".missing", "/x"))
	assert.Len(t, f.calls(t), 1, "invalid copies never reach smolvm")
}

func TestCopyFileFailures(t *testing.T) {
	host := filepath.Join(t.TempDir(), "f")
	require.NoError(t, os.WriteFile(host, nil, 0o644))

	f := newFake(t, "FAKE_EXIT=137")
	err := NewMachine(f.cli, "m").CopyFile(context.Background(), host, "/f")
	var cliErr *CLIError
	require.ErrorAs(t, err, &cliErr)
	assert.Equal(t, "cp", cliErr.Subcommand)
	assert.True(t, IsWarmupRace(err))

	f = newFake(t, "FAKE_EXIT=1", "FAKE_STDERR=Error: disk full\n")
	err = NewMachine(f.cli, "m").CopyFile(context.Background(), host, "/f")
	require.ErrorAs(t, err, &cliErr)
	assert.Equal(t, "smolvm machine cp m: disk full", err.Error())
	assert.False(t, IsWarmupRace(err))
}

func TestCopyDirSendsTarAndUnpacks(t *testing.T) {
	src := t.TempDir()
	require.NoError(t, os.Chmod(src, 0o700))
	require.NoError(t, os.MkdirAll(filepath.Join(src, "sub"), 0o750))
	require.NoError(t, os.WriteFile(filepath.Join(src, "SKILL.md"), []byte("# skill"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(src, "sub", "run.sh"), []byte("#!/bin/sh\n"), 0o755))

	capture := t.TempDir()
	f := newFake(t, "FAKE_CP_CAPTURE="+capture)
	m := NewMachine(f.cli, "m")
	require.NoError(t, m.CopyDir(context.Background(), src, "/home/node/.claude/skills/init-prd/"))

	calls := f.calls(t)
	require.Len(t, calls, 2, "one cp and one exec")
	cp, ex := calls[0].Args, calls[1].Args
	require.Len(t, cp, 4)
	assert.Equal(t, []string{"machine", "cp"}, cp[:2])
	guestTar := strings.TrimPrefix(cp[3], "m:")
	assert.Regexp(t, `^/tmp/bot-bottle-[0-9a-f]{16}\.tar$`, guestTar)
	assert.Equal(t, []string{"machine", "exec", "--name", "m", "--",
		"sh", "-c", unpackScript, "sh", guestTar, "/home/node/.claude/skills"}, ex)
	_, err := os.Stat(cp[2])
	assert.True(t, os.IsNotExist(err), "host temp tar removed")

	entries := readTar(t, filepath.Join(capture, filepath.Base(guestTar)))
	assert.Equal(t, map[string]tarEntry{
		"init-prd/":           {mode: 0o700 | os.ModeDir},
		"init-prd/SKILL.md":   {mode: 0o644, body: "# skill"},
		"init-prd/sub/":       {mode: 0o750 | os.ModeDir},
		"init-prd/sub/run.sh": {mode: 0o755, body: "#!/bin/sh\n"},
	}, entries)
}

func TestCopyDirRejects(t *testing.T) {
	f := newFake(t)
	m := NewMachine(f.cli, "m")
	file := filepath.Join(t.TempDir(), "f")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	assert.Error(t, m.CopyDir(context.Background(), t.TempDir(), "rel"))
	assert.Error(t, m.CopyDir(context.Background(), t.TempDir(), "/"))
	assert.Error(t, m.CopyDir(context.Background(), file, "/x"))
	assert.Error(t, m.CopyDir(context.Background(), file+".missing", "/x"))
	assert.Empty(t, f.calls(t))
}

func TestCopyDirFailuresNamePathAndKeepClass(t *testing.T) {
	f := newFake(t, "FAKE_ONLY=exec", "FAKE_EXIT=2", "FAKE_STDERR=tar: Cannot open: No space left\n")
	err := NewMachine(f.cli, "m").CopyDir(context.Background(), t.TempDir(), "/home/node/x")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "/home/node/x")
	var exitErr *backends.ExitError
	require.ErrorAs(t, err, &exitErr)
	assert.Equal(t, 2, exitErr.Result.ExitCode)
	assert.False(t, IsWarmupRace(err))

	f = newFake(t, "FAKE_ONLY=cp", "FAKE_EXIT=137")
	err = NewMachine(f.cli, "m").CopyDir(context.Background(), t.TempDir(), "/home/node/x")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "/home/node/x")
	assert.True(t, IsWarmupRace(err), "a killed cp is still recognised through the wrapping")
	assert.Len(t, f.calls(t), 1, "no unpack after a failed copy")
}

// TestUnpackScriptRoundTrip runs the real unpack script with the host's sh
// and tar on an archive made by writeTree: the tree arrives whole under the
// requested path, missing parents are created, existing siblings survive
// and the tar is removed.
func TestUnpackScriptRoundTrip(t *testing.T) {
	_, err := exec.LookPath("tar")
	testskip.Unless(t, err == nil, "no tar on this host")
	src := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(src, "a", "b"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "a", "b", "f.txt"), []byte("deep"), 0o640))
	require.NoError(t, os.WriteFile(filepath.Join(src, "top"), []byte("top"), 0o600))
	require.NoError(t, os.Symlink("a/b/f.txt", filepath.Join(src, "link")))
	// A socket, as git's fsmonitor leaves in .git, is skipped.
	sock := filepath.Join(src, "fsmonitor.ipc")
	if l, err := net.Listen("unix", sock); err == nil {
		defer l.Close()
	}

	guest := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(guest, "workspace", "other"), 0o755))
	tarPath := filepath.Join(guest, "copy.tar")
	tf, err := os.Create(tarPath)
	require.NoError(t, err)
	require.NoError(t, writeTree(tf, src, ".git"))
	require.NoError(t, tf.Close())

	parent := filepath.Join(guest, "new", "workspace")
	out, err := exec.Command("sh", "-c", unpackScript, "sh", tarPath, parent).CombinedOutput()
	require.NoError(t, err, string(out))

	b, err := os.ReadFile(filepath.Join(parent, ".git", "a", "b", "f.txt"))
	require.NoError(t, err)
	assert.Equal(t, "deep", string(b))
	st, err := os.Stat(filepath.Join(parent, ".git", "top"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	link, err := os.Readlink(filepath.Join(parent, ".git", "link"))
	require.NoError(t, err)
	assert.Equal(t, "a/b/f.txt", link)
	_, err = os.Lstat(filepath.Join(parent, ".git", "fsmonitor.ipc"))
	assert.True(t, os.IsNotExist(err), "socket skipped")
	_, err = os.Stat(tarPath)
	assert.True(t, os.IsNotExist(err), "tar removed")

	// A failing extraction keeps tar's status and still removes the tar.
	require.NoError(t, os.WriteFile(tarPath, []byte("not a tar"), 0o644))
	err = exec.Command("sh", "-c", unpackScript, "sh", tarPath, parent).Run()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	assert.NotZero(t, ee.ExitCode())
	_, err = os.Stat(tarPath)
	assert.True(t, os.IsNotExist(err), "tar removed after failure")
}

func TestWriteTreeOwnersAreRoot(t *testing.T) {
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644))
	p := filepath.Join(t.TempDir(), "t.tar")
	tf, err := os.Create(p)
	require.NoError(t, err)
	require.NoError(t, writeTree(tf, src, "top"))
	require.NoError(t, tf.Close())
	tf, err = os.Open(p)
	require.NoError(t, err)
	defer tf.Close()
	tr := tar.NewReader(tf)
	n := 0
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		assert.Zero(t, hdr.Uid, hdr.Name)
		assert.Zero(t, hdr.Gid, hdr.Name)
		assert.Empty(t, hdr.Uname, hdr.Name)
		n++
	}
	assert.Equal(t, 2, n)
}

// TestInFlightLimitPerMachine runs many slow calls at once and checks,
// with counters kept by the fake smolvm processes themselves, that no more
// than six ran at once against one machine (whichever Machine value made
// them, exec and cp alike) while another machine was not held back.
func TestInFlightLimitPerMachine(t *testing.T) {
	counts := t.TempDir()
	host := filepath.Join(t.TempDir(), "f")
	require.NoError(t, os.WriteFile(host, []byte("x"), 0o644))
	f := newFake(t, "FAKE_SLEEP_MS=400", "FAKE_COUNT_DIR="+counts)
	a1, a2 := NewMachine(f.cli, "a"), NewMachine(f.cli, "a")
	b := NewMachine(f.cli, "b")

	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := range 14 {
		m := a1
		if i%2 == 1 {
			m = a2
		}
		wg.Go(func() {
			if i%3 == 0 {
				errs <- m.CopyFile(ctx, host, "/f")
				return
			}
			_, err := m.Exec(ctx, backends.ExecRequest{Argv: []string{"true"}})
			errs <- err
		})
	}
	for range 4 {
		wg.Go(func() {
			_, err := b.Exec(ctx, backends.ExecRequest{Argv: []string{"true"}})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	cur, maxA := readCounter(t, filepath.Join(counts, "a"))
	assert.Zero(t, cur)
	assert.Equal(t, maxInFlight, maxA, "machine a: the limit is reached and never exceeded")
	_, maxB := readCounter(t, filepath.Join(counts, "b"))
	assert.LessOrEqual(t, maxB, maxInFlight)
	_, maxAll := readCounter(t, filepath.Join(counts, "ALL"))
	assert.Greater(t, maxAll, maxInFlight, "the limit is per machine, not global")
	assert.Len(t, f.calls(t), 18)
}

func TestWaitingForASlotHonoursContext(t *testing.T) {
	f := newFake(t)
	m := NewMachine(f.cli, "m")
	for range maxInFlight {
		m.slots <- struct{}{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := m.Exec(ctx, backends.ExecRequest{Argv: []string{"true"}})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorIs(t, m.CopyFile(ctx, os.Args[0], "/x"), context.DeadlineExceeded)
	assert.Empty(t, f.calls(t))
}

type tarEntry struct {
	mode os.FileMode
	body string
}

func readTar(t *testing.T, p string) map[string]tarEntry {
	t.Helper()
	f, err := os.Open(p)
	require.NoError(t, err)
	defer f.Close()
	out := map[string]tarEntry{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		require.NoError(t, err)
		body, err := io.ReadAll(tr)
		require.NoError(t, err)
		out[hdr.Name] = tarEntry{mode: hdr.FileInfo().Mode(), body: string(body)}
	}
}

func TestAttach(t *testing.T) {
	f := newFake(t, "FAKE_STDOUT=screen", "FAKE_EXIT=5", "FAKE_STDERR=bye\n")
	m := NewMachine(f.cli, "m")
	var stdout, stderr strings.Builder
	code, err := m.Attach(context.Background(), backends.ExecRequest{
		Argv: []string{"claude", "--resume"}, Env: []string{"TERM=xterm"}, User: "node", Workdir: "/home/node/workspace",
	}, strings.NewReader("typed"), &stdout, &stderr, true)
	require.NoError(t, err, "a guest exit code is not an error")
	assert.Equal(t, 5, code)
	assert.Equal(t, "screen", stdout.String())
	assert.Equal(t, "bye\n", stderr.String())
	calls := f.calls(t)
	require.Len(t, calls, 1)
	assert.Equal(t, []string{"machine", "exec", "--name", "m", "-e", "TERM=xterm", "-w", "/home/node/workspace",
		"-i", "-t", "--stream", "--", "runuser", "-u", "node", "--", "claude", "--resume"}, calls[0].Args)
	assert.Equal(t, "typed", calls[0].Stdin)

	f = newFake(t, "FAKE_EXIT=1", "FAKE_STDERR=Error: machine \"m\" is not running\n")
	stderr.Reset()
	_, err = NewMachine(f.cli, "m").Attach(context.Background(), backends.ExecRequest{Argv: []string{"sh"}}, nil, io.Discard, &stderr, false)
	var cliErr *CLIError
	require.ErrorAs(t, err, &cliErr)
	assert.True(t, cliErr.NotRunning())
	assert.Contains(t, stderr.String(), "not running", "stderr still reaches the user")
	assert.Equal(t, []string{"machine", "exec", "--name", "m", "--stream", "--", "sh"}, f.calls(t)[0].Args)
}

func TestPrefixBuffer(t *testing.T) {
	p := &prefixBuffer{max: 5}
	n, err := p.Write([]byte("abc"))
	require.NoError(t, err)
	assert.Equal(t, 3, n)
	n, _ = p.Write([]byte("defgh"))
	assert.Equal(t, 5, n, "reports everything written")
	p.Write([]byte("ijk"))
	assert.Equal(t, "abcde", p.String())
}
