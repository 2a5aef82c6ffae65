package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/internal/testskip"
)

// stubEnv is an isolated environment: its own HOME and log.
type stubEnv struct {
	home, log string
	environ   []string
}

func newStubEnv(t *testing.T, extra ...string) stubEnv {
	t.Helper()
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	require.NoError(t, os.Mkdir(home, 0o755))
	log := filepath.Join(dir, "stub.jsonl")
	return stubEnv{home: home, log: log, environ: append([]string{"HOME=" + home, "CLAUDE_STUB_LOG=" + log, "PATH=/usr/bin:/bin"}, extra...)}
}

func (s stubEnv) run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(append([]string{"claude"}, args...), s.environ, &out, &errb)
	return code, out.String(), errb.String()
}

func readRecords(t *testing.T, path string) []Record {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var recs []Record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r Record
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r), "line %q", sc.Text())
		recs = append(recs, r)
	}
	require.NoError(t, sc.Err())
	return recs
}

func TestRecordsEveryInvocationFaithfully(t *testing.T) {
	s := newStubEnv(t, "GH_TOKEN=ghp_secretvalue123", "WEIRD=a=b=c", "EMPTY=")
	code, out, _ := s.run(t, "-p", "do the thing", "--dangerously-skip-permissions")
	assert.Equal(t, 0, code)
	assert.Contains(t, out, "do the thing")
	code, _, _ = s.run(t, "--version")
	assert.Equal(t, 0, code)

	recs := readRecords(t, s.log)
	require.Len(t, recs, 2)
	r := recs[0]
	assert.Equal(t, []string{"claude", "-p", "do the thing", "--dangerously-skip-permissions"}, r.Argv)
	assert.Equal(t, "ghp_secretvalue123", r.Env["GH_TOKEN"], "the log must hold the full environment")
	assert.Equal(t, "a=b=c", r.Env["WEIRD"])
	v, ok := r.Env["EMPTY"]
	assert.True(t, ok)
	assert.Empty(t, v)
	assert.Equal(t, os.Getuid(), r.UID)
	assert.Equal(t, os.Getgid(), r.GID)
	cwd, _ := os.Getwd()
	assert.Equal(t, cwd, r.Cwd)
	assert.NotEmpty(t, r.Time)
	assert.Equal(t, []string{"claude", "--version"}, recs[1].Argv)

	info, err := os.Stat(s.log)
	require.NoError(t, err)
	assert.False(t, info.IsDir())
}

func TestVersion(t *testing.T) {
	s := newStubEnv(t)
	code, out, _ := s.run(t, "--version")
	assert.Equal(t, 0, code)
	assert.Equal(t, Version+"\n", out)
}

func TestUnwritableLogFails(t *testing.T) {
	s := newStubEnv(t)
	s.environ = append(s.environ, "CLAUDE_STUB_LOG="+filepath.Join(s.home, "missing-dir", "log.jsonl"))
	code, _, errOut := s.run(t, "hello")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "cannot record invocation")
}

func TestMCPAddUserScopeMergesExistingConfig(t *testing.T) {
	s := newStubEnv(t)
	cfg := filepath.Join(s.home, ".claude.json")
	require.NoError(t, os.WriteFile(cfg, []byte(`{"numStartups": 3, "mcpServers": {"other": {"type": "http", "url": "http://other:1/mcp"}}}`), 0o640))

	code, out, errOut := s.run(t, "mcp", "add", "--scope", "user", "--transport", "http", "supervise", "http://10.0.0.5:8090/mcp")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "supervise")

	data, err := os.ReadFile(cfg)
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(data, &doc))
	assert.EqualValues(t, 3, doc["numStartups"], "other keys survive")
	servers := doc["mcpServers"].(map[string]any)
	assert.Equal(t, map[string]any{"type": "http", "url": "http://10.0.0.5:8090/mcp"}, servers["supervise"])
	assert.Equal(t, map[string]any{"type": "http", "url": "http://other:1/mcp"}, servers["other"])

	fi, err := os.Stat(cfg)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o640), fi.Mode().Perm(), "mode kept")

	code, out, _ = s.run(t, "mcp", "list")
	assert.Equal(t, 0, code)
	assert.Equal(t, "other: http://other:1/mcp (HTTP)\nsupervise: http://10.0.0.5:8090/mcp (HTTP)\n", out)
}

func TestMCPAddCreatesConfigAndAcceptsEqualsForms(t *testing.T) {
	s := newStubEnv(t)
	code, _, errOut := s.run(t, "mcp", "add", "--scope=user", "-t", "http", "-H", "Authorization: Bearer x", "gate", "http://gate/mcp")
	require.Equal(t, 0, code, errOut)
	data, err := os.ReadFile(filepath.Join(s.home, ".claude.json"))
	require.NoError(t, err)
	var doc struct {
		MCPServers map[string]server `json:"mcpServers"`
	}
	require.NoError(t, json.Unmarshal(data, &doc))
	assert.Equal(t, server{Type: "http", URL: "http://gate/mcp", Headers: map[string]string{"Authorization": "Bearer x"}}, doc.MCPServers["gate"])
	fi, err := os.Stat(filepath.Join(s.home, ".claude.json"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
}

func TestMCPAddLocalScopeIsPerProject(t *testing.T) {
	s := newStubEnv(t)
	code, _, errOut := s.run(t, "mcp", "add", "-t", "sse", "events", "http://e/sse")
	require.Equal(t, 0, code, errOut)
	data, err := os.ReadFile(filepath.Join(s.home, ".claude.json"))
	require.NoError(t, err)
	cwd, _ := os.Getwd()
	var doc map[string]map[string]map[string]map[string]server
	require.NoError(t, json.Unmarshal(data, &doc))
	assert.Equal(t, server{Type: "sse", URL: "http://e/sse"}, doc["projects"][cwd]["mcpServers"]["events"])
}

func TestMCPAddStdio(t *testing.T) {
	s := newStubEnv(t)
	code, _, errOut := s.run(t, "mcp", "add", "-s", "user", "-e", "K=V", "fs", "--", "npx", "-y", "server-fs", "/tmp")
	require.Equal(t, 0, code, errOut)
	code, out, _ := s.run(t, "mcp", "list")
	assert.Equal(t, 0, code)
	assert.Equal(t, "fs: npx -y server-fs /tmp (STDIO)\n", out)
}

func TestMCPAddRejectsBadUsage(t *testing.T) {
	cases := map[string][]string{
		"missing url":     {"mcp", "add", "--transport", "http", "name"},
		"extra arg":       {"mcp", "add", "--transport", "http", "name", "url", "more"},
		"bad scope":       {"mcp", "add", "--scope", "galaxy", "--transport", "http", "n", "u"},
		"bad transport":   {"mcp", "add", "--transport", "carrier-pigeon", "n", "u"},
		"unknown option":  {"mcp", "add", "--frobnicate", "n", "u"},
		"dangling option": {"mcp", "add", "n", "u", "--scope"},
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			s := newStubEnv(t)
			code, _, errOut := s.run(t, args...)
			assert.Equal(t, 1, code)
			assert.Contains(t, errOut, "error:")
			_, err := os.Stat(filepath.Join(s.home, ".claude.json"))
			assert.True(t, os.IsNotExist(err), "nothing written")
		})
	}
}

func TestMCPAddRejectsCorruptConfig(t *testing.T) {
	s := newStubEnv(t)
	cfg := filepath.Join(s.home, ".claude.json")
	require.NoError(t, os.WriteFile(cfg, []byte("{not json"), 0o600))
	code, _, errOut := s.run(t, "mcp", "add", "--scope", "user", "--transport", "http", "n", "http://u")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, ".claude.json")
	data, _ := os.ReadFile(cfg)
	assert.Equal(t, "{not json", string(data), "a corrupt file is not clobbered")
}

func TestMCPListEmpty(t *testing.T) {
	s := newStubEnv(t)
	code, out, _ := s.run(t, "mcp", "list")
	assert.Equal(t, 0, code)
	assert.Equal(t, "No MCP servers configured.\n", out)
}

// TestBuiltBinary runs the real static binary: concurrent invocations must
// each leave one whole JSON line.
func TestBuiltBinary(t *testing.T) {
	testskip.Short(t, "builds a binary")
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if p, err := exec.LookPath("go"); err == nil {
		goBin = p
	}
	bin := filepath.Join(t.TempDir(), "claude")
	build := exec.Command(goBin, "build", "-trimpath", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	require.NoError(t, err, string(out))

	s := newStubEnv(t, "SECRET_TOKEN=s3cr3t")
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(bin, "run", strings.Repeat("x", 2000), string(rune('a'+i)))
			cmd.Env = s.environ
			cmd.Dir = s.home
			errs <- cmd.Run()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	recs := readRecords(t, s.log)
	require.Len(t, recs, n)
	seen := map[string]bool{}
	for _, r := range recs {
		require.Len(t, r.Argv, 4)
		seen[r.Argv[3]] = true
		assert.Equal(t, "s3cr3t", r.Env["SECRET_TOKEN"])
		assert.Equal(t, s.home, r.Cwd)
	}
	assert.Len(t, seen, n)

	cmd := exec.Command(bin, "mcp", "add", "--scope", "user", "--transport", "http", "supervise", "http://sv/mcp")
	cmd.Env = s.environ
	out, err = cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	cmd = exec.Command(bin, "mcp", "list")
	cmd.Env = s.environ
	out, err = cmd.CombinedOutput()
	require.NoError(t, err)
	assert.Equal(t, "supervise: http://sv/mcp (HTTP)\n", string(out))
}
