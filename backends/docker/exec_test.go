package docker_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/backends"
)

func TestExec(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	id := f.start(t, backends.ContainerSpec{Env: []string{"FROM_CONTAINER=c"}})
	g := f.e.Guest(id)
	ctx := ctxT(t)

	t.Run("stdout and stderr are separate", func(t *testing.T) {
		res, err := g.Exec(ctx, backends.ExecRequest{Argv: []string{"sh", "-c", `printf out1; printf err1 >&2; printf out2`}})
		require.NoError(t, err)
		assert.Equal(t, backends.ExecResult{ExitCode: 0, Stdout: "out1out2", Stderr: "err1"}, res)
	})

	t.Run("non-zero exit is an ExitError with the result", func(t *testing.T) {
		argv := []string{"sh", "-c", `echo partial; echo why >&2; exit 42`}
		res, err := g.Exec(ctx, backends.ExecRequest{Argv: argv})
		require.Error(t, err)
		var exit *backends.ExitError
		require.ErrorAs(t, err, &exit)
		assert.Equal(t, 42, exit.Result.ExitCode)
		assert.Equal(t, argv, exit.Argv)
		assert.Equal(t, "partial\n", exit.Result.Stdout)
		assert.Equal(t, "why\n", exit.Result.Stderr)
		assert.Equal(t, exit.Result, res)
		assert.Contains(t, err.Error(), "exited 42")
	})

	t.Run("missing program", func(t *testing.T) {
		_, err := g.Exec(ctx, backends.ExecRequest{Argv: []string{"/no/such/program"}})
		require.Error(t, err)
		var exit *backends.ExitError
		if errors.As(err, &exit) {
			assert.Contains(t, []int{126, 127}, exit.Result.ExitCode)
		}
	})

	t.Run("env user workdir", func(t *testing.T) {
		res, err := g.Exec(ctx, backends.ExecRequest{
			Argv:    []string{"sh", "-c", `echo "$(id -u) $(pwd) $EXTRA $FROM_CONTAINER"`},
			Env:     []string{"EXTRA=x y"},
			User:    "65534",
			Workdir: "/usr/share",
		})
		require.NoError(t, err)
		assert.Equal(t, "65534 /usr/share x y c\n", res.Stdout)
	})

	t.Run("argv is not a shell string", func(t *testing.T) {
		res, err := g.Exec(ctx, backends.ExecRequest{Argv: []string{"printf", "%s|", "$(id)", "a b", ";rm -rf /"}})
		require.NoError(t, err)
		assert.Equal(t, "$(id)|a b|;rm -rf /|", res.Stdout)
	})

	t.Run("stdin", func(t *testing.T) {
		payload := strings.Repeat("stdin line\n", 20000)
		res, err := g.Exec(ctx, backends.ExecRequest{Argv: []string{"sh", "-c", "cat; echo done >&2"}, Stdin: strings.NewReader(payload)})
		require.NoError(t, err)
		assert.Equal(t, len(payload), len(res.Stdout))
		assert.Equal(t, payload, res.Stdout)
		assert.Equal(t, "done\n", res.Stderr)
	})

	t.Run("large output", func(t *testing.T) {
		res, err := g.Exec(ctx, backends.ExecRequest{Argv: []string{"sh", "-c", "head -c 3000000 /dev/zero; head -c 1000000 /dev/zero >&2"}})
		require.NoError(t, err)
		assert.Len(t, res.Stdout, 3000000)
		assert.Len(t, res.Stderr, 1000000)
	})

	t.Run("empty argv", func(t *testing.T) {
		_, err := g.Exec(ctx, backends.ExecRequest{})
		assert.Error(t, err)
	})

	t.Run("cancel stops waiting", func(t *testing.T) {
		cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := g.Exec(cctx, backends.ExecRequest{Argv: []string{"sleep", "30"}})
		require.Error(t, err)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Less(t, time.Since(start), 10*time.Second)
	})
}

func TestExecInStoppedContainer(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	id := f.create(t, backends.ContainerSpec{})
	_, err := f.e.Exec(ctxT(t), id, backends.ExecRequest{Argv: []string{"true"}})
	require.Error(t, err)
	assert.NotErrorIs(t, err, backends.ErrNotFound)
}

func TestExecAttach(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	id := f.start(t, backends.ContainerSpec{})
	ctx := ctxT(t)

	var out, errb bytes.Buffer
	code, err := f.e.ExecAttach(ctx, id, backends.ExecRequest{Argv: []string{"sh", "-c", "tr a-z A-Z; echo e >&2; exit 3"}},
		strings.NewReader("hello attach\n"), &out, &errb, false)
	require.NoError(t, err, "a process that ran is not an error")
	assert.Equal(t, 3, code)
	assert.Equal(t, "HELLO ATTACH\n", out.String())
	assert.Equal(t, "e\n", errb.String())

	out.Reset()
	code, err = f.e.ExecAttach(ctx, id, backends.ExecRequest{Argv: []string{"sh", "-c", "test -t 0 && test -t 1 && echo is-a-tty; echo to-err >&2"}},
		nil, &out, nil, true)
	require.NoError(t, err)
	assert.Equal(t, 0, code)
	assert.Contains(t, out.String(), "is-a-tty")
	assert.Contains(t, out.String(), "to-err", "a tty merges the streams")
}
