package smolmachines

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const testImageID = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// fakeImages serves ImageInspect and ImageSave from memory. It stands in
// for the engine only to exercise SaveImage's cache, lock and checks; the
// real export is covered by the integration test.
type fakeImages struct {
	id       string
	tar      []byte
	saveErr  error
	delay    time.Duration
	saves    atomic.Int32
	inspects atomic.Int32
}

func (f *fakeImages) ImageInspect(ctx context.Context, ref string, _ ...client.ImageInspectOption) (client.ImageInspectResult, error) {
	f.inspects.Add(1)
	return client.ImageInspectResult{InspectResponse: image.InspectResponse{ID: f.id}}, nil
}

func (f *fakeImages) ImageSave(ctx context.Context, refs []string, _ ...client.ImageSaveOption) (client.ImageSaveResult, error) {
	f.saves.Add(1)
	if f.saveErr != nil {
		return nil, f.saveErr
	}
	time.Sleep(f.delay)
	return io.NopCloser(bytes.NewReader(f.tar)), nil
}

// savedTar builds a minimal `docker save` archive whose manifest names the
// given config file.
func savedTar(t *testing.T, config string, extra ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	write := func(name string, body []byte) {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}))
		_, err := tw.Write(body)
		require.NoError(t, err)
	}
	write("layer/layer.tar", bytes.Repeat([]byte("x"), 4096))
	m, err := json.Marshal([]map[string]any{{"Config": config, "RepoTags": []string{"agent:latest"}, "Layers": []string{"layer/layer.tar"}}})
	require.NoError(t, err)
	write("manifest.json", m)
	for _, e := range extra {
		write(e, nil)
	}
	require.NoError(t, tw.Close())
	return buf.Bytes()
}

func hexOf(id string) string { return strings.TrimPrefix(id, "sha256:") }

func TestSaveImageCachesByID(t *testing.T) {
	dir := t.TempDir()
	f := &fakeImages{id: testImageID, tar: savedTar(t, hexOf(testImageID)+".json")}
	ctx := context.Background()

	p, err := SaveImage(ctx, f, "agent:latest", dir)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, hexOf(testImageID)+".tar"), p)
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, f.tar, b)

	p2, err := SaveImage(ctx, f, "agent:other-tag", dir)
	require.NoError(t, err)
	assert.Equal(t, p, p2)
	assert.EqualValues(t, 1, f.saves.Load(), "the second call is served from the cache")
	assertNoTempFiles(t, dir)
}

func TestSaveImageOCILayout(t *testing.T) {
	f := &fakeImages{id: testImageID, tar: savedTar(t, "blobs/sha256/"+hexOf(testImageID))}
	_, err := SaveImage(context.Background(), f, "agent:latest", t.TempDir())
	require.NoError(t, err)
}

func TestSaveImageConcurrentCallersExportOnce(t *testing.T) {
	dir := t.TempDir()
	f := &fakeImages{id: testImageID, tar: savedTar(t, hexOf(testImageID)+".json"), delay: 200 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	paths := make([]string, 8)
	errs := make([]error, 8)
	for i := range paths {
		wg.Go(func() { paths[i], errs[i] = SaveImage(ctx, f, "agent:latest", dir) })
	}
	wg.Wait()
	for i := range paths {
		require.NoError(t, errs[i])
		assert.Equal(t, paths[0], paths[i])
	}
	assert.EqualValues(t, 1, f.saves.Load())
	assertNoTempFiles(t, dir)
}

func TestSaveImageRejectsBadExports(t *testing.T) {
	cases := map[string]*fakeImages{
		"image changed during save": {id: testImageID, tar: savedTar(t, strings.Repeat("f", 64)+".json")},
		"truncated":                 {id: testImageID, tar: savedTar(t, hexOf(testImageID)+".json")[:1024]},
		"no manifest":               {id: testImageID, tar: func() []byte { var b bytes.Buffer; tar.NewWriter(&b).Close(); return b.Bytes() }()},
		"engine error":              {id: testImageID, saveErr: errors.New("daemon gone")},
		"odd image ID":              {id: "sha256:../../etc"},
	}
	for name, f := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := SaveImage(context.Background(), f, "agent:latest", dir)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "agent:latest")
			_, err = os.Stat(filepath.Join(dir, hexOf(testImageID)+".tar"))
			assert.True(t, os.IsNotExist(err), "nothing cached")
			assertNoTempFiles(t, dir)
		})
	}
}

func TestSaveImageWaitsForLockWithinContext(t *testing.T) {
	dir := t.TempDir()
	unlock, err := lockFile(context.Background(), filepath.Join(dir, hexOf(testImageID)+".lock"))
	require.NoError(t, err)
	defer unlock()

	f := &fakeImages{id: testImageID, tar: savedTar(t, hexOf(testImageID)+".json")}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = SaveImage(ctx, f, "agent:latest", dir)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Zero(t, f.saves.Load())
}

func TestDefaultImageCacheDir(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", "/x/cache")
	assert.Equal(t, "/x/cache/bot-bottle/smolvm", DefaultImageCacheDir())
	t.Setenv("XDG_CACHE_HOME", "relative")
	t.Setenv("HOME", "/home/u")
	assert.Equal(t, "/home/u/.cache/bot-bottle/smolvm", DefaultImageCacheDir())
}

func assertNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		assert.False(t, strings.Contains(e.Name(), ".tmp-"), "leftover %s", e.Name())
	}
}
