package testenv_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/moby/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/internal/testenv"
)

func TestLabelsAreUniqueAndValid(t *testing.T) {
	a, b := testenv.Labels(t), testenv.Labels(t)
	require.Len(t, a, 1)
	assert.NotEqual(t, a[testenv.LabelTest], b[testenv.LabelTest])
	assert.True(t, strings.HasPrefix(a[testenv.LabelTest], "TestLabelsAreUniqueAndValid-"))
	t.Run("odd/name with spaces", func(t *testing.T) {
		v := testenv.Labels(t)[testenv.LabelTest]
		assert.NotContains(t, v, "/")
		assert.NotContains(t, v, " ")
	})
	assert.NotEqual(t, testenv.Name("x"), testenv.Name("x"))
}

func TestModuleRoot(t *testing.T) {
	root := testenv.ModuleRoot(t)
	data, err := os.ReadFile(filepath.Join(root, "go.mod"))
	require.NoError(t, err)
	assert.Contains(t, string(data), "module github.com/bot-bottle/bot-bottle")
}

func TestClaudeStubBinaryIsBuiltOnceAndStatic(t *testing.T) {
	p := testenv.ClaudeStubBinary(t)
	assert.Equal(t, p, testenv.ClaudeStubBinary(t), "built once per process")
	fi, err := os.Stat(p)
	require.NoError(t, err)
	assert.NotZero(t, fi.Mode().Perm()&0o111)

	cmd := exec.Command(p, "--version")
	cmd.Env = []string{"CLAUDE_STUB_LOG=" + filepath.Join(t.TempDir(), "log")}
	out, err := cmd.Output()
	require.NoError(t, err)
	assert.Contains(t, string(out), "stub")

	// Static: no ELF interpreter (no dynamic loader needed in the image).
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.NotContains(t, string(data[:min(len(data), 4096)]), "/lib64/ld-linux")
}

func TestCleanupRemovesEverythingLabelled(t *testing.T) {
	e := testenv.RequireDocker(t)
	labels := testenv.Labels(t)
	ctx := context.Background()

	t.Run("inner", func(t *testing.T) {
		testenv.Cleanup(t, e, labels)
		_, err := e.CreateNetwork(ctx, backends.NetworkSpec{Name: testenv.Name("bbt-net"), Internal: true, Labels: labels})
		require.NoError(t, err)
		_, err = e.Client().VolumeCreate(ctx, client.VolumeCreateOptions{Name: testenv.Name("bbt-vol"), Labels: labels})
		require.NoError(t, err)
		rs, err := e.List(ctx, labels)
		require.NoError(t, err)
		assert.Len(t, rs, 2)
	})
	rs, err := e.List(ctx, labels)
	require.NoError(t, err)
	assert.Empty(t, rs, "the inner test's cleanup removed its resources")
}
