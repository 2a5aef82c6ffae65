package images

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFileHashFollowsContentChanges(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bin")
	require.NoError(t, os.WriteFile(p, []byte("one"), 0o755))
	h1, err := fileHash(p)
	require.NoError(t, err)
	again, err := fileHash(p)
	require.NoError(t, err)
	assert.Equal(t, h1, again)
	// A rebuilt binary (new content, new mtime) hashes anew.
	require.NoError(t, os.WriteFile(p, []byte("two"), 0o755))
	require.NoError(t, os.Chtimes(p, time.Now(), time.Now().Add(time.Second)))
	h2, err := fileHash(p)
	require.NoError(t, err)
	assert.NotEqual(t, h1, h2)
	direct, err := hashFile(p)
	require.NoError(t, err)
	assert.Equal(t, direct, h2)
}

func BenchmarkFileHash(b *testing.B) {
	p := filepath.Join(b.TempDir(), "bin")
	require.NoError(b, os.WriteFile(p, make([]byte, 20<<20), 0o755))
	b.Run("read", func(b *testing.B) {
		for b.Loop() {
			_, _ = hashFile(p)
		}
	})
	b.Run("memoised", func(b *testing.B) {
		for b.Loop() {
			_, _ = fileHash(p)
		}
	})
}
