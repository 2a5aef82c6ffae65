package smolmachines

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/backends"
)

func writeExecutable(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte("#!/bin/sh\nexit 0\n"), 0o755))
	return p
}

func TestResolvePath(t *testing.T) {
	dir := t.TempDir()
	flagBin := writeExecutable(t, dir, "from-flag")
	envBin := writeExecutable(t, dir, "from-env")
	pathDir := t.TempDir()
	pathBin := writeExecutable(t, pathDir, "smolvm")

	t.Run("flag wins", func(t *testing.T) {
		t.Setenv(PathEnv, envBin)
		got, err := ResolvePath(flagBin)
		require.NoError(t, err)
		assert.Equal(t, flagBin, got)
	})
	t.Run("env next", func(t *testing.T) {
		t.Setenv(PathEnv, envBin)
		got, err := ResolvePath("")
		require.NoError(t, err)
		assert.Equal(t, envBin, got)
	})
	t.Run("PATH last", func(t *testing.T) {
		t.Setenv(PathEnv, "")
		t.Setenv("PATH", pathDir)
		got, err := ResolvePath("")
		require.NoError(t, err)
		assert.Equal(t, pathBin, got)
	})
	t.Run("missing says where the name came from", func(t *testing.T) {
		t.Setenv(PathEnv, filepath.Join(dir, "nope"))
		_, err := ResolvePath("")
		require.Error(t, err)
		assert.Contains(t, err.Error(), "$"+PathEnv)
		assert.Contains(t, err.Error(), "nope")

		t.Setenv(PathEnv, "")
		t.Setenv("PATH", t.TempDir())
		_, err = ResolvePath("")
		require.Error(t, err)
		assert.Contains(t, err.Error(), `"smolvm" (default)`)
	})
}

func TestCLIError(t *testing.T) {
	e := &CLIError{Subcommand: "exec", Machine: "m", ExitCode: 1,
		Stderr: "warning: something\nError: machine \"m\" not found\n\nCaused by:\n  x\n"}
	assert.Equal(t, `machine "m" not found`, e.Message())
	assert.Equal(t, `smolvm machine exec m: machine "m" not found`, e.Error())
	assert.True(t, e.NotFound())
	assert.False(t, e.NotRunning())
	assert.True(t, errors.Is(e, backends.ErrNotFound))

	e = &CLIError{Subcommand: "ls", ExitCode: 2, Stderr: "error: unexpected argument '--x' found\n"}
	assert.Equal(t, "smolvm machine ls: error: unexpected argument '--x' found", e.Error())
	assert.False(t, errors.Is(e, backends.ErrNotFound))

	e = &CLIError{Subcommand: "cp", Machine: "m", ExitCode: 137}
	assert.Equal(t, "smolvm machine cp m: exited 137 with no message", e.Error())
}

func TestIsSmolvmFailure(t *testing.T) {
	cases := []struct {
		name string
		out  outcome
		want bool
	}{
		{"smolvm error", outcome{code: 1, stderr: "Error: machine \"m\" is not running\n"}, true},
		{"smolvm error after blank line", outcome{code: 1, stderr: "\n  Error: x\n"}, true},
		{"guest exit 1 with output", outcome{code: 1, stderr: "fatal: not a git repository\n"}, false},
		{"guest exit 1 silent", outcome{code: 1}, false},
		{"guest exit 2 with Error prefix", outcome{code: 2, stderr: "Error: usage\n"}, false},
		{"guest error line not first", outcome{code: 1, stderr: "hello\nError: x\n"}, false},
		{"success", outcome{code: 0, stderr: "Error: ignored\n"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, isSmolvmFailure(tc.out))
		})
	}
}

func TestCheckName(t *testing.T) {
	for _, ok := range []string{"bot-bottle-demo-abc12", "a", "x_y.z"} {
		assert.NoError(t, checkName(ok), ok)
	}
	for _, bad := range []string{"", "-f", "a:b", "a/b", "a b"} {
		assert.Error(t, checkName(bad), bad)
	}
}
