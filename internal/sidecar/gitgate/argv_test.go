package gitgate

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// gitRecorderScript stands in for git: it appends its arguments, each
// followed by NUL and the whole call by a newline, to $BBT_GIT_ARGV_LOG,
// then runs the real git. It is constant; the values are arguments.
const gitRecorderScript = "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\0' \"$a\"; done >> \"$BBT_GIT_ARGV_LOG\"\nprintf '\\n' >> \"$BBT_GIT_ARGV_LOG\"\nexec \"$BBT_REAL_GIT\" \"$@\"\n"

// Every git command the gate runs on behalf of a repository (the mirror's
// init, the fetch, ls-remote, the relayed push, the daemon itself) gets
// the upstream and the mirror paths after "--", so neither could be read
// as an option whatever they hold; and nothing in a hostile path runs.
func TestGateGivesGitPathsAfterDashDash(t *testing.T) {
	realGit, err := exec.LookPath("git")
	require.NoError(t, err)
	root := t.TempDir()
	wrapper := filepath.Join(root, "git")
	require.NoError(t, os.WriteFile(wrapper, []byte(gitRecorderScript), 0o755))
	argvLog := filepath.Join(root, "argv.log")
	t.Setenv("BBT_GIT_ARGV_LOG", argvLog)
	t.Setenv("BBT_REAL_GIT", realGit)

	marker := filepath.Join(root, "pwned")
	up := filepath.Join(root, "up-$(touch${IFS}"+marker+");'q\"`id`", "proj.git")
	require.NoError(t, ValidUpstream(up), "the gate accepts the hostile path")
	require.NoError(t, os.MkdirAll(filepath.Dir(up), 0o755))
	gitRun(t, root, false, "init", "--bare", "-b", "main", up)
	seed := filepath.Join(root, "seed")
	gitRun(t, root, false, "clone", up, seed)
	commitFile(t, seed, "README", "hello\n", "initial")
	gitRun(t, seed, false, "push", "origin", "main")

	cfg := Config{Listen: "127.0.0.1:0", BasePath: filepath.Join(root, "mirrors"), Git: wrapper,
		Repos: []Repo{{Name: "proj", Upstream: up}}}
	require.NoError(t, os.MkdirAll(cfg.BasePath, 0o755))
	srv, err := New(cfg, Options{Logger: slog.New(slog.NewJSONHandler(&bytes.Buffer{}, nil)), Self: os.Args[0]})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, srv.Start(ctx))
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })

	work := filepath.Join(root, "work")
	gitRun(t, root, false, "clone", "git://"+srv.Addr()+"/proj.git", work)
	commitFile(t, work, "a.txt", "a\n", "from the agent")
	gitRun(t, work, false, "push", "origin", "main")
	assert.Equal(t, revParse(t, work, "HEAD"), revParse(t, up, "main"), "the push reached the upstream")

	b, err := os.ReadFile(argvLog)
	require.NoError(t, err)
	mirror := cfg.MirrorPath("proj")
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		argv := strings.Split(strings.TrimSuffix(line, "\x00"), "\x00")
		if len(argv) == 0 {
			continue
		}
		dashdash := -1
		for i, a := range argv {
			if a == "--" && dashdash < 0 {
				dashdash = i
			}
			if a == up || a == mirror {
				assert.True(t, dashdash >= 0 && dashdash < i, "git %q: %q before any --", argv, a)
				seen[argv[0]] = true
			}
		}
	}
	for _, cmd := range []string{"init", "fetch", "ls-remote", "push", "daemon"} {
		assert.True(t, seen[cmd], "git %s was run with a repository path (seen: %v)", cmd, seen)
	}
	assert.NoFileExists(t, marker)
}
