package manifest

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func envOf(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func touch(t *testing.T, path string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte("{}"), 0o600))
}

func TestCandidates(t *testing.T) {
	assert.Equal(t, []string{
		"/w/bottle.yaml", "/w/bottle.yml", "/w/bottle.json",
		"/h/.config/bot-bottle/manifest.yaml", "/h/.config/bot-bottle/manifest.json",
	}, Candidates("/w", envOf(map[string]string{"HOME": "/h"})))

	assert.Equal(t, []string{
		"/w/bottle.yaml", "/w/bottle.yml", "/w/bottle.json",
		"/x/bot-bottle/manifest.yaml", "/x/bot-bottle/manifest.json",
	}, Candidates("/w", envOf(map[string]string{"HOME": "/h", "XDG_CONFIG_HOME": "/x"})))

	// A relative XDG_CONFIG_HOME is invalid per the XDG spec and ignored.
	assert.Equal(t, "/h/.config/bot-bottle/manifest.yaml",
		Candidates("/w", envOf(map[string]string{"HOME": "/h", "XDG_CONFIG_HOME": "rel"}))[3])

	assert.Len(t, Candidates("/w", envOf(nil)), 3)
}

func TestFindInOrder(t *testing.T) {
	cwd, home := t.TempDir(), t.TempDir()
	env := envOf(map[string]string{"HOME": home})
	files := []string{
		filepath.Join(home, ".config", "bot-bottle", "manifest.json"),
		filepath.Join(home, ".config", "bot-bottle", "manifest.yaml"),
		filepath.Join(cwd, "bottle.json"),
		filepath.Join(cwd, "bottle.yml"),
		filepath.Join(cwd, "bottle.yaml"),
	}
	// Adding files from lowest to highest precedence, each new one wins.
	for _, f := range files {
		touch(t, f)
		got, err := FindIn(cwd, env)
		require.NoError(t, err)
		assert.Equal(t, f, got)
	}
}

func TestFindInXDG(t *testing.T) {
	cwd, xdg := t.TempDir(), t.TempDir()
	want := filepath.Join(xdg, "bot-bottle", "manifest.yaml")
	touch(t, want)
	got, err := FindIn(cwd, envOf(map[string]string{"HOME": t.TempDir(), "XDG_CONFIG_HOME": xdg}))
	require.NoError(t, err)
	assert.Equal(t, want, got)
}

func TestFindInNotFound(t *testing.T) {
	cwd := t.TempDir()
	_, err := FindIn(cwd, envOf(map[string]string{"HOME": "/nonexistent-home"}))
	require.Error(t, err)
	assert.True(t, errors.Is(err, ErrNotFound))
	for _, p := range Candidates(cwd, envOf(map[string]string{"HOME": "/nonexistent-home"})) {
		assert.Contains(t, err.Error(), p)
	}
	assert.Contains(t, err.Error(), "pass -f")
}

func TestFindInDirectoryIsAnError(t *testing.T) {
	cwd := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(cwd, "bottle.yaml"), 0o755))
	_, err := FindIn(cwd, envOf(nil))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not a regular file")
}

func TestFindExplicit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "custom.yaml")
	touch(t, path)
	got, err := Find(path)
	require.NoError(t, err)
	assert.Equal(t, path, got)

	_, err = Find(path + ".missing")
	require.ErrorIs(t, err, os.ErrNotExist)
	assert.Contains(t, err.Error(), "given with -f")
}

func TestFindUsesWorkingDirectory(t *testing.T) {
	cwd := t.TempDir()
	touch(t, filepath.Join(cwd, "bottle.yml"))
	t.Chdir(cwd)
	got, err := Find("")
	require.NoError(t, err)
	assert.Equal(t, "bottle.yml", filepath.Base(got))
}
