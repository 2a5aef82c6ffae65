package docker_test

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/backends"
)

// stat returns "uid:gid mode type" of a guest path, without following links.
func (f fixture) stat(t *testing.T, id, path string) string {
	t.Helper()
	return strings.TrimSpace(f.exec(t, id, "stat", "-c", "%u:%g %a %F", path).Stdout)
}

func TestCopyFileCreatesParentsAndKeepsMode(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	id := f.start(t, backends.ContainerSpec{})
	g := f.e.Guest(id)
	ctx := ctxT(t)

	src := filepath.Join(t.TempDir(), "prompt.txt")
	require.NoError(t, os.WriteFile(src, []byte("be helpful\n"), 0o640))
	require.NoError(t, g.CopyFile(ctx, src, "/opt/new/deeper/prompt.txt"))

	assert.Equal(t, "be helpful\n", f.exec(t, id, "cat", "/opt/new/deeper/prompt.txt").Stdout)
	assert.Equal(t, "0:0 640 regular file", f.stat(t, id, "/opt/new/deeper/prompt.txt"))
	assert.Equal(t, "0:0 755 directory", f.stat(t, id, "/opt/new"))
	assert.Equal(t, "0:0 755 directory", f.stat(t, id, "/opt/new/deeper"))

	// An existing parent keeps its owner and mode.
	f.exec(t, id, "sh", "-c", "mkdir -p /home/agent && chown 1000:1000 /home/agent && chmod 0700 /home/agent")
	require.NoError(t, g.CopyFile(ctx, src, "/home/agent/file"))
	assert.Equal(t, "1000:1000 700 directory", f.stat(t, id, "/home/agent"))
	assert.Equal(t, "0:0 640 regular file", f.stat(t, id, "/home/agent/file"))
	// Below an existing parent, only the missing directories are made.
	require.NoError(t, g.CopyFile(ctx, src, "/home/agent/a/b/file"))
	assert.Equal(t, "1000:1000 700 directory", f.stat(t, id, "/home/agent"))
	assert.Equal(t, "0:0 755 directory", f.stat(t, id, "/home/agent/a"))

	// Overwrite.
	require.NoError(t, os.WriteFile(src, []byte("v2"), 0o600))
	require.NoError(t, os.Chmod(src, 0o600))
	require.NoError(t, g.CopyFile(ctx, src, "/opt/new/deeper/prompt.txt"))
	assert.Equal(t, "v2", f.exec(t, id, "cat", "/opt/new/deeper/prompt.txt").Stdout)
	assert.Equal(t, "0:0 600 regular file", f.stat(t, id, "/opt/new/deeper/prompt.txt"))

	// An empty file is still copied.
	empty := filepath.Join(t.TempDir(), "empty")
	require.NoError(t, os.WriteFile(empty, nil, 0o644))
	require.NoError(t, g.CopyFile(ctx, empty, "/tmp/empty"))
	assert.Equal(t, "0:0 644 regular empty file", f.stat(t, id, "/tmp/empty"))

	for _, bad := range []string{"relative/path", "/", "/tmp/../etc/x", "/tmp//x"} {
		assert.Error(t, g.CopyFile(ctx, src, bad), bad)
	}
	assert.Error(t, g.CopyFile(ctx, filepath.Join(t.TempDir(), "missing"), "/tmp/x"))
	assert.Error(t, g.CopyFile(ctx, t.TempDir(), "/tmp/x"), "a directory is not a file")
	assert.Error(t, g.CopyFile(ctx, src, "/etc"), "a file does not replace a directory")
}

func TestCopyFileStreamsLargeFiles(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	id := f.start(t, backends.ContainerSpec{})
	src := filepath.Join(t.TempDir(), "big.bin")
	out, err := os.Create(src)
	require.NoError(t, err)
	h := sha256.New()
	_, err = io.CopyN(io.MultiWriter(out, h), rand.Reader, 64<<20)
	require.NoError(t, err)
	require.NoError(t, out.Close())

	require.NoError(t, f.e.CopyFile(ctxT(t), id, src, "/var/tmp/big/big.bin"))
	sum := strings.Fields(f.exec(t, id, "sha256sum", "/var/tmp/big/big.bin").Stdout)[0]
	assert.Equal(t, hex.EncodeToString(h.Sum(nil)), sum)
}

// Copies work before a container first starts: the image builder relies on
// it.
func TestCopyIntoCreatedContainer(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	id := f.create(t, backends.ContainerSpec{})
	src := filepath.Join(t.TempDir(), "tool")
	require.NoError(t, os.WriteFile(src, []byte("#!/bin/sh\necho tool-ran\n"), 0o755))
	require.NoError(t, f.e.CopyFile(ctxT(t), id, src, "/usr/local/lib/bb/tool"))
	require.NoError(t, f.e.StartContainer(ctxT(t), id))
	assert.Equal(t, "tool-ran\n", f.exec(t, id, "/usr/local/lib/bb/tool").Stdout)
}

func TestCopyDirKeepsTreeModesAndLinks(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	id := f.start(t, backends.ContainerSpec{})
	g := f.e.Guest(id)
	ctx := ctxT(t)

	root := t.TempDir()
	tree := filepath.Join(root, "skill")
	secret := filepath.Join(root, "outside-secret.txt")
	require.NoError(t, os.WriteFile(secret, []byte("TOP SECRET"), 0o644))
	require.NoError(t, os.MkdirAll(filepath.Join(tree, "scripts", "private"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(tree, "empty"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "SKILL.md"), []byte("# skill\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "scripts", "run.sh"), []byte("#!/bin/sh\necho ran\n"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "scripts", "private", "key"), []byte("k"), 0o600))
	require.NoError(t, os.Chmod(filepath.Join(tree, "scripts", "private"), 0o700))
	require.NoError(t, os.Symlink("scripts/run.sh", filepath.Join(tree, "run")))
	require.NoError(t, os.Symlink(secret, filepath.Join(tree, "leak")))
	require.NoError(t, os.Symlink("../outside-secret.txt", filepath.Join(tree, "leak-rel")))

	require.NoError(t, g.CopyDir(ctx, tree, "/home/node/.claude/skills/skill"))
	base := "/home/node/.claude/skills/skill"
	for path, want := range map[string]string{
		"/home/node":                  "0:0 755 directory",
		base:                          "0:0 755 directory",
		base + "/SKILL.md":            "0:0 644 regular file",
		base + "/scripts":             "0:0 755 directory",
		base + "/scripts/run.sh":      "0:0 755 regular file",
		base + "/scripts/private":     "0:0 700 directory",
		base + "/scripts/private/key": "0:0 600 regular file",
		base + "/empty":               "0:0 755 directory",
		base + "/run":                 "0:0 777 symbolic link",
		base + "/leak":                "0:0 777 symbolic link",
	} {
		assert.Equal(t, want, f.stat(t, id, path), path)
	}
	assert.Equal(t, "ran\n", f.exec(t, id, base+"/run").Stdout, "relative links inside the tree work")
	assert.Equal(t, secret+"\n", f.exec(t, id, "readlink", base+"/leak").Stdout)
	assert.Equal(t, "../outside-secret.txt\n", f.exec(t, id, "readlink", base+"/leak-rel").Stdout)
	res := f.exec(t, id, "sh", "-c", "grep -rs 'TOP SECRET' /home/node || true")
	assert.Empty(t, res.Stdout, "nothing outside the tree is copied")

	// A tree given through a symlink is copied as the tree it names.
	link := filepath.Join(root, "link-to-skill")
	require.NoError(t, os.Symlink(tree, link))
	require.NoError(t, g.CopyDir(ctx, link, "/srv/via-link"))
	assert.Equal(t, "# skill\n", f.exec(t, id, "cat", "/srv/via-link/SKILL.md").Stdout)

	assert.Error(t, g.CopyDir(ctx, filepath.Join(tree, "SKILL.md"), "/srv/x"), "a file is not a directory")
	assert.Error(t, g.CopyDir(ctx, filepath.Join(root, "missing"), "/srv/y"))
}
