package smolmachines

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/backends"
)

func TestCreateMakesTarPathAbsolute(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "agent.tar"), []byte("x"), 0o644))
	t.Chdir(dir)

	f := newFake(t)
	err := f.cli.Create(context.Background(), MachineSpec{
		Name: "bot-bottle-s", ImageTar: "agent.tar", Env: []string{"TERM=xterm"},
		Labels: backends.Labels{backends.LabelSlug: "s"},
	})
	require.NoError(t, err)
	assert.Equal(t, []string{"machine", "create", "--name", "bot-bottle-s", "--image", filepath.Join(dir, "agent.tar"),
		"-e", "TERM=xterm", "--label", "bot-bottle.slug=s", "--net", "--", "sleep", "infinity"}, f.calls(t)[0].Args)
}

func TestCreateValidates(t *testing.T) {
	tarPath := filepath.Join(t.TempDir(), "agent.tar")
	require.NoError(t, os.WriteFile(tarPath, []byte("x"), 0o644))
	f := newFake(t)
	cases := map[string]MachineSpec{
		"no name":     {ImageTar: tarPath},
		"bad name":    {Name: "a:b", ImageTar: tarPath},
		"no tar":      {Name: "m"},
		"missing tar": {Name: "m", ImageTar: tarPath + ".nope"},
		"tar is dir":  {Name: "m", ImageTar: filepath.Dir(tarPath)},
		"bad env":     {Name: "m", ImageTar: tarPath, Env: []string{"NOEQUALS"}},
		"bad label":   {Name: "m", ImageTar: tarPath, Labels: backends.Labels{"a=b": "c"}},
	}
	for name, spec := range cases {
		assert.Error(t, f.cli.Create(context.Background(), spec), name)
	}
	assert.Empty(t, f.calls(t))
}

func TestCreateDuplicateIsCLIError(t *testing.T) {
	tarPath := filepath.Join(t.TempDir(), "agent.tar")
	require.NoError(t, os.WriteFile(tarPath, []byte("x"), 0o644))
	f := newFake(t, "FAKE_EXIT=1", "FAKE_STDERR=Error: machine \"m\" already exists\n")
	err := f.cli.Create(context.Background(), MachineSpec{Name: "m", ImageTar: tarPath})
	var cliErr *CLIError
	require.ErrorAs(t, err, &cliErr)
	assert.Equal(t, `smolvm machine create m: machine "m" already exists`, err.Error())
}

func TestLifecycleArgv(t *testing.T) {
	f := newFake(t)
	ctx := context.Background()
	require.NoError(t, f.cli.Start(ctx, "m"))
	require.NoError(t, f.cli.Stop(ctx, "m"))
	require.NoError(t, f.cli.Delete(ctx, "m"))
	var got [][]string
	for _, c := range f.calls(t) {
		got = append(got, c.Args)
	}
	assert.Equal(t, [][]string{startArgs("m"), stopArgs("m"), deleteArgs("m")}, got)
}

func TestDeleteMissingIsNil(t *testing.T) {
	f := newFake(t, "FAKE_EXIT=1", "FAKE_STDERR=Error: machine \"m\" not found\n")
	assert.NoError(t, f.cli.Delete(context.Background(), "m"))

	f = newFake(t, "FAKE_EXIT=1", "FAKE_STDERR=Error: permission denied\n")
	assert.Error(t, f.cli.Delete(context.Background(), "m"))
}

func TestStartFailureIsCLIError(t *testing.T) {
	f := newFake(t, "FAKE_EXIT=1", "FAKE_STDERR=Error: guest agent did not answer within 30s\n")
	err := f.cli.Start(context.Background(), "m")
	var cliErr *CLIError
	require.ErrorAs(t, err, &cliErr)
	assert.Equal(t, "start", cliErr.Subcommand)
	assert.False(t, IsWarmupRace(err))
}

func TestStatus(t *testing.T) {
	f := newFake(t, `FAKE_STDOUT={"name":"m","state":"running","pid":7}`)
	info, err := f.cli.Status(context.Background(), "m")
	require.NoError(t, err)
	assert.Equal(t, MachineInfo{Name: "m", State: StateRunning, PID: 7}, info)
	assert.Equal(t, statusArgs("m"), f.calls(t)[0].Args)

	f = newFake(t, "FAKE_EXIT=1", "FAKE_STDERR=Error: machine \"m\" not found\n")
	_, err = f.cli.Status(context.Background(), "m")
	assert.ErrorIs(t, err, backends.ErrNotFound)
}

func TestListAndResources(t *testing.T) {
	list := `[
	 {"name":"bot-bottle-a","state":"running","labels":{"bot-bottle.slug":"a","bot-bottle.agent":"x"}},
	 {"name":"bot-bottle-b","state":"stopped","labels":{"bot-bottle.slug":"b","bot-bottle.agent":"y"}},
	 {"name":"bot-bottle-orphan","state":"stopped"},
	 {"name":"renamed","state":"created","labels":{"bot-bottle.slug":"c","bot-bottle.agent":"x"}},
	 {"name":"someone-else","state":"running","labels":{"team":"z"}}
	]`
	f := newFake(t, "FAKE_STDOUT="+list)
	ctx := context.Background()

	infos, err := f.cli.List(ctx)
	require.NoError(t, err)
	assert.Len(t, infos, 5)
	assert.Equal(t, listArgs(), f.calls(t)[0].Args)

	names := func(rs []backends.Resource) []string {
		var out []string
		for _, r := range rs {
			assert.Equal(t, "machine", r.Kind)
			assert.Equal(t, r.Name, r.ID)
			out = append(out, r.Name)
		}
		return out
	}
	all, err := f.cli.Resources(ctx, nil)
	require.NoError(t, err)
	assert.Equal(t, []string{"bot-bottle-a", "bot-bottle-b", "bot-bottle-orphan", "renamed"}, names(all))

	byAgent, err := f.cli.Resources(ctx, backends.Labels{backends.LabelAgent: "x"})
	require.NoError(t, err)
	assert.Equal(t, []string{"bot-bottle-a", "renamed"}, names(byAgent))
	assert.Equal(t, "running", byAgent[0].State)

	none, err := f.cli.Resources(ctx, backends.Labels{backends.LabelSlug: "zzz"})
	require.NoError(t, err)
	assert.Empty(t, none)
}

func TestMachineName(t *testing.T) {
	assert.Equal(t, "bot-bottle-demo-abc12", MachineName("demo-abc12"))
}
