package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseArgs(t *testing.T) {
	p, err := parseArgs(execFlags, []string{"--name", "m", "-e", "A=1", "--env=B=2", "-w", "/tmp", "-i", "--", "sh", "-c", "echo --name x"})
	require.NoError(t, err)
	assert.Equal(t, "m", p.value("name"))
	assert.Equal(t, []string{"A=1", "B=2"}, p.values["env"])
	assert.Equal(t, "/tmp", p.value("workdir"))
	assert.True(t, p.bools["interactive"])
	assert.Equal(t, []string{"sh", "-c", "echo --name x"}, p.trailing)

	p, err = parseArgs(cpFlags, []string{"/a", "m:/b:c"})
	require.NoError(t, err)
	assert.Equal(t, []string{"/a", "m:/b:c"}, p.positional)

	p, err = parseArgs(createFlags, []string{"--name", "m", "--image", "/t", "--net", "--label", "k=v", "-p", "1:2", "--", "sleep", "infinity"})
	require.NoError(t, err)
	assert.Equal(t, []string{"sleep", "infinity"}, p.trailing)
	assert.True(t, p.bools["net"])
}

func TestParseArgsUsageErrors(t *testing.T) {
	cases := []struct {
		spec flagSpec
		args []string
		want string
	}{
		{nameOnlyFlags, []string{}, "required arguments were not provided"},
		{nameOnlyFlags, []string{"--name"}, "a value is required"},
		{nameOnlyFlags, []string{"--name", "m", "--bogus"}, "unexpected argument '--bogus'"},
		{nameOnlyFlags, []string{"-n", "m"}, "unexpected argument '-n'"},
		{nameOnlyFlags, []string{"--name", "m", "--", "x"}, "unexpected argument '--'"},
		{cpFlags, []string{"/a"}, "expected 2 positional"},
		{deleteFlags, []string{"--name", "m", "-f=yes"}, "unexpected argument '-f=yes'"},
	}
	for _, tc := range cases {
		_, err := parseArgs(tc.spec, tc.args)
		var u *usageError
		require.ErrorAs(t, err, &u, "%v", tc.args)
		assert.Contains(t, err.Error(), tc.want)
	}
}

func TestRaceDrawsAreReproducible(t *testing.T) {
	c := raceConfig{P: 0.5, Unbounded: true, Seed: 8}
	now := time.Now()
	var first, second []bool
	for call := uint64(1); call <= 64; call++ {
		first = append(first, c.strikes("m", call, now, now))
		second = append(second, c.strikes("m", call, now, now))
	}
	assert.Equal(t, first, second)
	hits := 0
	for _, h := range first {
		if h {
			hits++
		}
	}
	assert.InDelta(t, 32, hits, 16, "about half lose at P=0.5")

	other := raceConfig{P: 0.5, Unbounded: true, Seed: 9}
	var differs bool
	for call := uint64(1); call <= 64; call++ {
		differs = differs || other.strikes("m", call, now, now) != first[call-1]
	}
	assert.True(t, differs, "another seed draws differently")
}

func TestRaceWindowAndBounds(t *testing.T) {
	start := time.Now()
	c := raceConfig{P: 1, Window: time.Second}
	assert.True(t, c.strikes("m", 1, start, start.Add(999*time.Millisecond)))
	assert.False(t, c.strikes("m", 2, start, start.Add(time.Second)))
	assert.False(t, raceConfig{P: 0, Unbounded: true}.strikes("m", 1, start, start))
	assert.True(t, raceConfig{P: 1, Unbounded: true}.strikes("m", 1, start, start.Add(time.Hour)))
	for range 1000 {
		d := draw(uint64(time.Now().UnixNano()), "m", 1)
		require.True(t, d >= 0 && d < 1)
	}
}

func TestRaceFromEnv(t *testing.T) {
	t.Setenv("SMOLVM_SIM_RACE_P", "0.25")
	t.Setenv("SMOLVM_SIM_RACE_MS", "1500")
	t.Setenv("SMOLVM_SIM_SEED", "42")
	c, err := raceFromEnv()
	require.NoError(t, err)
	assert.Equal(t, raceConfig{P: 0.25, Window: 1500 * time.Millisecond, Seed: 42}, c)

	for k, v := range map[string]string{"SMOLVM_SIM_RACE_P": "1.5", "SMOLVM_SIM_RACE_MS": "-1", "SMOLVM_SIM_SEED": "x"} {
		t.Run(k, func(t *testing.T) {
			t.Setenv(k, v)
			_, err := raceFromEnv()
			assert.Error(t, err)
		})
	}
}

func TestStoreCountsConcurrentCallsExactly(t *testing.T) {
	t.Setenv("SMOLVM_SIM_STATE", t.TempDir())
	s, err := openStore()
	require.NoError(t, err)
	require.NoError(t, s.put(&machine{Name: "m", State: "running"}))
	var wg sync.WaitGroup
	for range 40 {
		wg.Go(func() {
			assert.NoError(t, s.locked(func() error {
				m, err := s.get("m")
				if err != nil {
					return err
				}
				m.Calls++
				return s.put(m)
			}))
		})
	}
	wg.Wait()
	m, err := s.get("m")
	require.NoError(t, err)
	assert.EqualValues(t, 40, m.Calls, "no increment lost")
	all, err := s.all()
	require.NoError(t, err)
	assert.Len(t, all, 1)
	require.NoError(t, s.remove("m"))
	require.NoError(t, s.remove("m"))
	_, err = s.get("m")
	assert.ErrorIs(t, err, errNoMachine)
}

// TestCommandsWithoutDocker runs the subcommands whose answers come from
// the state alone, checking smolvm's messages and exit codes.
func TestCommandsWithoutDocker(t *testing.T) {
	state := t.TempDir()
	logPath := filepath.Join(t.TempDir(), "log.jsonl")
	t.Setenv("SMOLVM_SIM_STATE", state)
	t.Setenv("SMOLVM_SIM_LOG", logPath)
	t.Setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
	runSim := func(stdin string, args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
		return code, out.String(), errb.String()
	}

	code, _, stderr := runSim("", "machine", "exec", "--name", "ghost", "--", "true")
	assert.Equal(t, 1, code)
	assert.Equal(t, "Error: machine \"ghost\" not found\n", stderr)

	code, _, stderr = runSim("", "machine", "status", "--name", "ghost", "--json")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "not found")

	code, _, stderr = runSim("", "machine", "frobnicate")
	assert.Equal(t, 2, code)
	assert.True(t, strings.HasPrefix(stderr, "error: "))

	code, stdout, _ := runSim("", "machine", "ls", "--json")
	assert.Equal(t, 0, code)
	assert.JSONEq(t, "[]", stdout)

	s, err := openStore()
	require.NoError(t, err)
	require.NoError(t, s.put(&machine{Name: "stopped", State: "stopped", Labels: map[string]string{"a": "b"}}))

	code, _, stderr = runSim("", "machine", "exec", "--name", "stopped", "-e", "SECRET=hunter2", "--", "true")
	assert.Equal(t, 1, code)
	assert.Equal(t, "Error: machine \"stopped\" is not running\n", stderr)

	host := filepath.Join(t.TempDir(), "f")
	require.NoError(t, os.WriteFile(host, nil, 0o644))
	code, _, stderr = runSim("", "machine", "cp", host, "stopped:/x")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "is not running")
	code, _, stderr = runSim("", "machine", "cp", filepath.Dir(host), "stopped:/x")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "is a directory")
	code, _, stderr = runSim("", "machine", "cp", host, "stopped:relative")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "absolute")

	code, stdout, _ = runSim("", "machine", "status", "--name", "stopped", "--json")
	assert.Equal(t, 0, code)
	var st map[string]any
	require.NoError(t, json.Unmarshal([]byte(stdout), &st))
	assert.Equal(t, "stopped", st["state"])
	assert.Nil(t, st["pid"])
	assert.Equal(t, map[string]any{"a": "b"}, st["labels"])

	// Without -f, delete asks; no answer cancels with exit 0.
	code, stdout, _ = runSim("", "machine", "delete", "--name", "stopped")
	assert.Equal(t, 0, code)
	assert.Equal(t, "Cancelled\n", stdout)
	_, err = s.get("stopped")
	assert.NoError(t, err, "not deleted")
	code, _, _ = runSim("n\n", "machine", "delete", "--name", "stopped")
	assert.Equal(t, 0, code)
	_, err = s.get("stopped")
	assert.NoError(t, err, "not deleted")

	code, _, stderr = runSim("", "machine", "create", "--name", "stopped", "--image", host)
	assert.Equal(t, 1, code)
	assert.Equal(t, "Error: machine \"stopped\" already exists\n", stderr)

	log, err := os.ReadFile(logPath)
	require.NoError(t, err)
	assert.NotContains(t, string(log), "hunter2", "env values are never logged")
	lines := strings.Split(strings.TrimSpace(string(log)), "\n")
	var last struct {
		Argv    []string
		Machine string
		Exit    int
		Race    bool
	}
	require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &last))
	assert.Equal(t, "stopped", last.Machine)
	assert.Equal(t, 1, last.Exit)
	assert.Equal(t, []string{"machine", "create", "--name", "stopped", "--image", host}, last.Argv)
}

func TestRedact(t *testing.T) {
	assert.Equal(t,
		[]string{"machine", "exec", "-e", "TOKEN=<redacted>", "--env=K=<redacted>", "--", "env", "-e", "X=1"},
		redact([]string{"machine", "exec", "-e", "TOKEN=s3cret", "--env=K=v", "--", "env", "-e", "X=1"}))
}

func TestValidName(t *testing.T) {
	for _, ok := range []string{"bot-bottle-demo-abc12", "a", "A_b.c"} {
		assert.True(t, validName(ok), ok)
	}
	for _, bad := range []string{"", ".hidden", "-f", "a/b", "a:b", "a b", strings.Repeat("x", 129)} {
		assert.False(t, validName(bad), bad)
	}
}

func TestConfirmed(t *testing.T) {
	assert.True(t, confirmed(strings.NewReader("y\n")))
	assert.True(t, confirmed(strings.NewReader(" YES \n")))
	assert.False(t, confirmed(strings.NewReader("")))
	assert.False(t, confirmed(strings.NewReader("no\n")))
	assert.False(t, confirmed(nil))
}
